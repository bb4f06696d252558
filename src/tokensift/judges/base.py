"""The judge interface ("AI feedback", TSO spec 3.5; gold rewards for evaluation): one small protocol, several
real back ends, each declared once.

Every back end answers the same question -- how likely is `first` better than `second` -- so pair building,
correction and evaluation never care whether a verdict came from a reward model, a local LLM, an HTTP API or a
Python function. Here: `Verdict`, the `Judge` protocol, `ScoreJudge` (judges that score one answer at a time),
the pairwise question helpers, and `JUDGES`, the registry every back end class joins with `@register`
(docs/contributing.md, "Add a judge").

Prompts are chat message lists (`[{"role": "user", "content": ...}, ...]`); responses are plain strings.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import math
import string
from dataclasses import dataclass, field
from typing import Protocol

from tokensift.errors import UserError

logger = logging.getLogger(__name__)

Item = tuple[list[dict], str, str]  # (prompt messages, first response, second response)

# The pairwise question both LLM judges ask. Judge names (and so cache keys) carry a hash of the template,
# so rewording it, or passing a custom one, never reuses verdicts cached under the old wording.
PAIRWISE_TEMPLATE = (
    "You are comparing two assistant responses to the same conversation.\n\n"
    "[Conversation]\n{conversation}\n\n"
    "[Response A]\n{response_a}\n\n"
    "[Response B]\n{response_b}\n\n"
    "Which response is better, A or B? Answer with a single letter."
)
_TEMPLATE_FIELDS = {"conversation", "response_a", "response_b"}


@dataclass
class Verdict:
    """One pairwise judgement.

    p_first: probability that `first` is better than `second`, in [0, 1].
    detail:  back-end specifics for reports (scores, both orders' answers, raw text); JSON-serialisable.
    """

    p_first: float
    detail: dict = field(default_factory=dict)


class Judge(Protocol):
    """What every judge offers. `name` identifies everything that changes verdicts (back end, model, prompt
    template version, settings) and is part of every cache key, so it must be stable across runs.

    Classes that subclass this explicitly inherit a `compare_many` that loops over `compare`; back ends
    that can batch override it.
    """

    name: str

    def compare(self, prompt: list[dict], first: str, second: str) -> Verdict: ...

    def compare_many(self, items: list[Item]) -> list[Verdict]:
        return [self.compare(prompt, first, second) for prompt, first, second in items]


def sigmoid(x: float) -> float:
    """Logistic function that does not overflow for large |x| (scores of real reward models reach +-30)."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def format_conversation(prompt: list[dict]) -> str:
    """Plain-text transcript ("User: ...", blank line, "Assistant: ...") for judge questions and for models
    without a chat template."""
    if not isinstance(prompt, list) or not prompt:
        raise UserError(f"a judge prompt must be a non-empty list of chat messages, got {type(prompt).__name__}")
    lines = []
    for message in prompt:
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise UserError(f"a judge prompt message must be a dict with 'role' and 'content', got {message!r:.100}")
        lines.append(f"{str(message['role']).capitalize()}: {message['content']}")
    return "\n\n".join(lines)


def check_template(template: str) -> str:
    """Fail at construction, not after an hour of judging, when a custom template lacks a field."""
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise UserError(f"judge template is not a valid format string ({exc}); write literal braces as {{{{ }}}}") from exc
    if fields != _TEMPLATE_FIELDS:
        raise UserError(
            f"judge template must use exactly the fields {sorted(_TEMPLATE_FIELDS)} (as {{conversation}} etc.), "
            f"found {sorted(fields)}"
        )
    return template


def pairwise_question(template: str, prompt: list[dict], response_a: str, response_b: str) -> str:
    return template.format(conversation=format_conversation(prompt), response_a=response_a, response_b=response_b)


def template_id(template: str) -> str:
    return hashlib.sha256(template.encode("utf-8")).hexdigest()[:12]


def combine_orders(p_a_forward: float, p_a_swapped: float) -> float:
    """Cancel position bias: in the forward question `first` is A, in the swapped one it is B, so
    p_first = (P(A | first, second) + 1 - P(A | second, first)) / 2. Swapping first and second gives exactly
    1 - p_first by construction."""
    return (p_a_forward + (1.0 - p_a_swapped)) / 2.0


class ScoreJudge(Judge):
    """Shared pairwise logic for judges that score one response at a time (reward model, callable):
    p_first = sigmoid((score_first - score_second) / temperature), i.e. the Bradley-Terry model the scores
    were trained (or are assumed) to follow. Subclasses provide `score_many`."""

    temperature: float = 1.0

    def score_many(self, items: list[tuple[list[dict], str]]) -> list[float]:
        raise NotImplementedError

    def score(self, prompt: list[dict], response: str) -> float:
        return self.score_many([(prompt, response)])[0]

    def compare(self, prompt: list[dict], first: str, second: str) -> Verdict:
        return self.compare_many([(prompt, first, second)])[0]

    def compare_many(self, items: list[Item]) -> list[Verdict]:
        flat = [(prompt, response) for prompt, first, second in items for response in (first, second)]
        scores = self.score_many(flat)
        verdicts = []
        for i in range(len(items)):
            s1, s2 = scores[2 * i], scores[2 * i + 1]
            p = sigmoid((s1 - s2) / self.temperature)
            verdicts.append(Verdict(p, {"score_first": s1, "score_second": s2}))
        return verdicts


JUDGES: dict[str, type] = {}


def register(cls):
    """Declare a judge back end: the class names itself with `kind` (the config's `type`), says whether it
    `pairwise` compares two answers (else it scores one at a time) and gives a one-line `summary`. A config
    (`type` plus constructor arguments) becomes a judge through `cls.from_spec`."""
    for attribute in ("kind", "pairwise", "summary"):
        if not hasattr(cls, attribute):
            raise TypeError(f"judge class {cls.__name__} must declare '{attribute}'")
    if cls.kind in JUDGES:
        raise TypeError(f"judge type '{cls.kind}' is declared twice")
    JUDGES[cls.kind] = cls
    return cls


def from_spec(cls, args: dict, **resolved):
    """Construct `cls` from config keys, refusing keys its constructor does not take (default `from_spec`).
    `resolved`: constructor arguments the class's own `from_spec` made from other keys (a callable's `fn`)."""
    allowed = set(inspect.signature(cls).parameters) - set(resolved)
    unknown = sorted(set(args) - allowed)
    if unknown:
        raise UserError(f"unknown key(s) {unknown} for a {cls.kind} judge; allowed: {sorted(allowed)}")
    return cls(**args, **resolved)
