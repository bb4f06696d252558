"""The judge layer ("AI feedback", TSO spec §3.5): one small interface, several real back ends.

TSO corrects its prior ordering ("bigger/later model is better") with a judge that compares two responses
to the same prompt, and the eval module needs gold rewards for win rates. Every back end answers the same
question -- how likely is `first` better than `second` -- so pair building, correction and evaluation never
care whether a verdict came from a reward model, a local LLM, an HTTP API or a Python function.

Here: `Verdict`, the `Judge` protocol, `RewardModelJudge`, `LocalLLMJudge`, `CallableJudge`, the built-in
gold reward `vader_sentiment`, and `build_judge` (config dict -> judge). `HTTPJudge` lives in
`http_judge.py`, the on-disk cache `CachedJudge` in `judge_cache.py`.

Prompts are chat message lists (`[{"role": "user", "content": ...}, ...]`); responses are plain strings.
torch and transformers are imported only by the model judges, so HTTP and callable judges start fast.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import logging
import math
import os
import string
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

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


# ----------------------------------------------------------------------------------------------------------
# Model judges (torch + transformers, imported lazily)


class _ModelJudgeBase:
    """Loading, rendering, tokenising and padding shared by the reward-model and local-LLM judges.

    `model` is a path / hub id (loaded with `dtype` onto `device`, default "cpu") or a loaded transformers
    model (kept in its dtype, on its device unless `device` is given). `tokenizer` is an object, a path, or
    None (loaded from the model's path). `name` overrides the derived cache identity: give it for in-memory
    models whose weights differ from their path.
    """

    kind = ""

    def _setup(self, model, tokenizer, auto_class: str, device, dtype, max_length, batch_size,
               trust_remote_code, name):
        import transformers

        from tokensift.models import parse_dtype, resolve_model

        self.dtype = parse_dtype(dtype)
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.truncated = 0  # how many inputs lost tokens to max_length; reported, never silent
        if isinstance(model, (str, os.PathLike)):
            # Aliases and GGUF files resolve to a local folder; the resolved path (hub snapshot, or GGUF cache
            # folder named by the file's sha256) is what identifies the weights in the judge's name.
            model_id = resolve_model(str(model))
            try:
                model_obj = getattr(transformers, auto_class).from_pretrained(
                    model_id, dtype=self.dtype, trust_remote_code=trust_remote_code)
            except (OSError, ValueError) as exc:
                raise UserError(f"{self.kind} judge: could not load model '{model}' ({exc})") from exc
        else:  # an already loaded model keeps its dtype (and, unless `device` is given, its device)
            model_obj = model
            self.dtype = next(model.parameters()).dtype
            device = device or next(model.parameters()).device
            model_id = getattr(model, "name_or_path", "") or ""
        if tokenizer is None or isinstance(tokenizer, str):
            source = tokenizer or model_id
            if not source:
                raise UserError(f"{self.kind} judge: pass a tokenizer with an in-memory model that has no path")
            try:
                tokenizer = transformers.AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
            except (OSError, ValueError) as exc:
                raise UserError(f"{self.kind} judge: could not load tokenizer '{source}' ({exc})") from exc
        self.device = device or "cpu"
        self.model = model_obj.to(self.device).eval()
        self.tokenizer = tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if self.pad_id is None:
            raise UserError(f"{self.kind} judge: tokenizer of '{model_id}' has neither a pad nor an eos token")
        self.uses_chat_template = bool(getattr(tokenizer, "chat_template", None))
        if not model_id and name is None:
            # An unsaved in-memory model has no stable identity: its cache entries only hit in this process.
            model_id = f"unsaved-{id(model_obj):x}"
            logger.warning("%s judge: in-memory model without a path; pass name= to reuse cached verdicts", self.kind)
        self.model_id = model_id
        return name

    def _encode(self, text: str) -> list[int]:
        # A chat template already writes the special tokens (BOS etc.); the plain fallback relies on the
        # tokenizer adding them.
        return self.tokenizer(text, add_special_tokens=not self.uses_chat_template)["input_ids"]

    def _truncate_left(self, ids: list[int]) -> list[int]:
        """Keep the end: the reward is read at the last token and the judge's question sits at the end."""
        if len(ids) <= self.max_length:
            return ids
        self.truncated += 1
        logger.warning("%s judge: input of %d tokens cut to its last %d (max_length); %d inputs cut so far",
                       self.kind, len(ids), self.max_length, self.truncated)
        return ids[-self.max_length:]

    def _pad(self, seqs: list[list[int]], side: str, pad_id: int):
        """Pad to a rectangle. With left padding the position ids are rebuilt from the mask so every real
        token keeps the position it has in an unpadded run (models default to 0..T-1 otherwise)."""
        import torch

        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, seq in enumerate(seqs):
            span = slice(width - len(seq), width) if side == "left" else slice(0, len(seq))
            ids[row, span] = torch.tensor(seq, dtype=torch.long)
            mask[row, span] = 1
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0) if side == "left" else None
        return ids.to(self.device), mask.to(self.device), (None if position_ids is None else position_ids.to(self.device))

    def _batches(self, seqs: list[list[int]]):
        """Yield (indices, sequences) in length-sorted batches so short inputs are not padded to long ones."""
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            yield idx, [seqs[i] for i in idx]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class RewardModelJudge(_ModelJudgeBase, ScoreJudge):
    """A sequence-classification reward model with one output logit (e.g. Skywork-Reward, or any
    `AutoModelForSequenceClassification` trained with a Bradley-Terry loss).

    score = the logit read at the last token of chat-template(prompt + [assistant: response]) (fallback
    "User: ...\\n\\nAssistant: ..." when the tokenizer has no template); p_first = sigmoid(s_first - s_second).
    Batches follow the tokenizer's padding side. transformers pools at the rightmost token that is not
    `config.pad_token_id`, so we pad with exactly that id (setting it to the tokenizer's pad, else eos, when
    the config has none); left padding also gets position ids from the mask. Batched and one-by-one scores
    therefore agree to float precision.
    """

    kind = "reward_model"

    def __init__(self, model_name_or_path, device: str | None = None, dtype: Any = "float32", max_length: int = 1024,
                 batch_size: int = 8, trust_remote_code: bool = False, tokenizer=None, name: str | None = None):
        name = self._setup(model_name_or_path, tokenizer, "AutoModelForSequenceClassification", device, dtype,
                           max_length, batch_size, trust_remote_code, name)
        config = self.model.config.get_text_config() if hasattr(self.model.config, "get_text_config") else self.model.config
        if self.model.config.num_labels != 1:
            raise UserError(f"reward model '{self.model_id}' has {self.model.config.num_labels} output logits; "
                            "a reward model judge needs a single-logit head (num_labels=1)")
        if config.pad_token_id is None:
            config.pad_token_id = self.pad_id
            self.model.config.pad_token_id = self.pad_id
        self.pad_id = config.pad_token_id
        self.padding_side = getattr(self.tokenizer, "padding_side", "right") or "right"
        template = "chat" if self.uses_chat_template else "plain"
        self.name = name or (f"reward_model:v1:model={self.model_id}:template={template}:"
                             f"max_length={self.max_length}:dtype={str(self.dtype).removeprefix('torch.')}")

    def render(self, prompt: list[dict], response: str) -> str:
        if self.uses_chat_template:
            return self.tokenizer.apply_chat_template(
                list(prompt) + [{"role": "assistant", "content": response}], tokenize=False)
        return f"{format_conversation(prompt)}\n\nAssistant: {response}"

    def score_many(self, items: list[tuple[list[dict], str]]) -> list[float]:
        import torch

        seqs = [self._truncate_left(self._encode(self.render(prompt, response))) for prompt, response in items]
        scores: list[float] = [0.0] * len(seqs)
        with torch.inference_mode():
            for idx, batch in self._batches(seqs):
                ids, mask, pos = self._pad(batch, self.padding_side, self.pad_id)
                extra = {} if pos is None else {"position_ids": pos}
                logits = self.model(input_ids=ids, attention_mask=mask, **extra).logits
                for i, value in zip(idx, logits[:, 0].float().tolist()):
                    scores[i] = value
        return scores


class LocalLLMJudge(_ModelJudgeBase, Judge):
    """A local causal LM asked the pairwise question (`PAIRWISE_TEMPLATE`) in both orders.

    P(A) is read from the next-token distribution after the question: softmax over the logits of the "A" and
    "B" answer tokens only, i.e. sigmoid(logit_A - logit_B). Then p_first = (P(A | first, second) +
    1 - P(A | second, first)) / 2, which cancels position bias. `detail` keeps both orders, including
    `answer_mass` (how much of the full distribution the two letters get: low mass = the model is not
    really answering).

    The answer tokens are found per input by tokenising question+"A" and question+"B" and taking the first
    token where they differ; the model is fed exactly the tokens before it. That works for any tokenizer
    (leading-space letters, merges across the boundary). Inputs are left-padded (position ids rebuilt) so
    only the last position's logits are computed, not the full vocabulary over every position.
    """

    kind = "local_llm"

    def __init__(self, model, tokenizer=None, template: str = PAIRWISE_TEMPLATE, device: str | None = None,
                 dtype: Any = "float32", max_length: int = 2048, batch_size: int = 8,
                 trust_remote_code: bool = False, name: str | None = None):
        name = self._setup(model, tokenizer, "AutoModelForCausalLM", device, dtype, max_length, batch_size,
                           trust_remote_code, name)
        self.template = check_template(template)
        forward_params = inspect.signature(self.model.forward).parameters
        self._last_only = {"logits_to_keep": 1} if "logits_to_keep" in forward_params else {}
        template_kind = "chat" if self.uses_chat_template else "plain"
        self.name = name or (f"local_llm:v1:model={self.model_id}:question={template_id(self.template)}:"
                             f"template={template_kind}:max_length={self.max_length}:"
                             f"dtype={str(self.dtype).removeprefix('torch.')}")

    def render(self, prompt: list[dict], response_a: str, response_b: str) -> str:
        question = pairwise_question(self.template, prompt, response_a, response_b)
        if self.uses_chat_template:
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True)
        return f"User: {question}\n\nAssistant:"

    def encode_question(self, prompt: list[dict], response_a: str, response_b: str) -> tuple[list[int], int, int]:
        """(input ids, id of the "A" answer token, id of the "B" answer token)."""
        text = self.render(prompt, response_a, response_b)
        sep = "" if text[-1:].isspace() else " "
        with_a, with_b = self._encode(text + sep + "A"), self._encode(text + sep + "B")
        k = 0
        while k < min(len(with_a), len(with_b)) and with_a[k] == with_b[k]:
            k += 1
        if k == 0 or k >= min(len(with_a), len(with_b)):
            raise UserError(f"local_llm judge: tokenizer of '{self.model_id}' cannot tell the answers 'A' and 'B' apart")
        return self._truncate_left(with_a[:k]), with_a[k], with_b[k]

    def _p_a(self, questions: list[tuple[list[int], int, int]]) -> list[dict]:
        import torch

        out: list[dict] = [{}] * len(questions)
        with torch.inference_mode():
            for idx, batch in self._batches([q[0] for q in questions]):
                ids, mask, pos = self._pad(batch, "left", self.pad_id)
                logits = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, **self._last_only).logits
                logprobs = torch.log_softmax(logits[:, -1, :].double(), dim=-1)
                for row, i in enumerate(idx):
                    _, tok_a, tok_b = questions[i]
                    la, lb = logprobs[row, tok_a].item(), logprobs[row, tok_b].item()
                    out[i] = {"p_a": sigmoid(la - lb), "logprob_a": la, "logprob_b": lb,
                              "answer_mass": math.exp(la) + math.exp(lb)}
        return out

    def compare(self, prompt: list[dict], first: str, second: str) -> Verdict:
        return self.compare_many([(prompt, first, second)])[0]

    def compare_many(self, items: list[Item]) -> list[Verdict]:
        questions = []
        for prompt, first, second in items:
            questions.append(self.encode_question(prompt, first, second))
            questions.append(self.encode_question(prompt, second, first))
        answers = self._p_a(questions)
        verdicts = []
        for i in range(len(items)):
            forward, swapped = answers[2 * i], answers[2 * i + 1]
            verdicts.append(Verdict(combine_orders(forward["p_a"], swapped["p_a"]),
                                    {"first_as_a": forward, "first_as_b": swapped}))
        return verdicts


# ----------------------------------------------------------------------------------------------------------
# Python callables (gold rewards for experiments)


class CallableJudge(ScoreJudge):
    """Any `fn(prompt, response) -> float`; p_first = sigmoid((s_first - s_second) / temperature).

    The default name is the function's module and qualified name. Give `name=` for lambdas and closures
    (their names are not unique) and whenever the function's behaviour changes, or the cache serves stale
    verdicts.
    """

    def __init__(self, fn: Callable[[list[dict], str], float], name: str | None = None, temperature: float = 1.0):
        if not callable(fn):
            raise UserError(f"callable judge needs a function, got {type(fn).__name__}")
        if not temperature > 0:
            raise UserError(f"callable judge temperature must be > 0, got {temperature}")
        self.fn = fn
        self.temperature = float(temperature)
        label = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}"
        self.name = name or f"callable:{label}:temperature={self.temperature:g}"

    def score_many(self, items: list[tuple[list[dict], str]]) -> list[float]:
        scores = []
        for prompt, response in items:
            value = float(self.fn(prompt, response))
            if not math.isfinite(value):
                raise UserError(f"judge '{self.name}' returned {value} for a response; scores must be finite")
            scores.append(value)
        return scores

    def __repr__(self) -> str:
        return f"CallableJudge(name={self.name!r})"


_vader = None


def vader_sentiment(prompt: list[dict], response: str) -> float:
    """Gold reward for sentiment experiments: VADER's compound score of the response, in [-1, 1]. The prompt
    is ignored. The analyser (lexicon load) is built once per process."""
    global _vader
    if _vader is None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        _vader = SentimentIntensityAnalyzer()
    return float(_vader.polarity_scores(response)["compound"])


def import_callable(path: str) -> Callable:
    """Resolve "package.module:function" (or "module:Class.method") with importlib; nothing is evaluated."""
    module_name, sep, attr_path = str(path).partition(":")
    if not sep or not module_name or not attr_path:
        raise UserError(f"function must be written 'package.module:function', got {path!r}")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"cannot import module '{module_name}' for judge function {path!r} ({exc})") from exc
    for part in attr_path.split("."):
        if not part.isidentifier() or not hasattr(obj, part):
            raise UserError(f"judge function {path!r}: '{part}' not found")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UserError(f"judge function {path!r} is not callable")
    return obj


_SECRET_NAMES = ("key", "token", "secret", "password", "passwd", "authorization", "auth", "sig", "signature")


def _looks_secret(name: str) -> bool:
    return str(name).lower().replace("-", "_").endswith(_SECRET_NAMES)


def check_judge_spec(spec: dict) -> None:
    """Refuse secrets in a judge config: configs are saved with every run (run folders, results files), so an
    API key must come from the environment variable named by `api_key_env`. Messages name the key, never its
    value."""
    if not isinstance(spec, dict):
        return
    advice = ("judge configs are saved with the run; put the key in an environment variable and name it with "
              "api_key_env")
    for name in spec:
        if _looks_secret(name):
            raise UserError(f"judge.{name}: a judge config must not hold secrets ({advice})")
    base_url = spec.get("base_url")
    if isinstance(base_url, str):
        parts = urllib.parse.urlsplit(base_url)
        query = [k for k, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)]
        if "@" in parts.netloc or any(_looks_secret(k) for k in query):
            raise UserError(f"judge.base_url holds credentials (user:password@ or a key in the query string); "
                            f"{advice}")


def build_judge(spec: dict) -> Judge:
    """Map a config dict to a judge. Keys: `type` (reward_model | local_llm | http | callable), the judge's
    constructor arguments (`model` is accepted for reward_model's `model_name_or_path`; callable takes
    `function: "package.module:function"`), and optional `cache: path/to/judge_cache.sqlite`, which wraps
    the judge in a `CachedJudge`."""
    from tokensift.tso.http_judge import HTTPJudge
    from tokensift.tso.judge_cache import CachedJudge

    if not isinstance(spec, dict):
        raise UserError(f"judge config must be a mapping with a 'type' key, got {type(spec).__name__}")
    check_judge_spec(spec)
    args = dict(spec)
    kind = args.pop("type", None)
    cache = args.pop("cache", None)
    classes = {"reward_model": RewardModelJudge, "local_llm": LocalLLMJudge, "http": HTTPJudge,
               "callable": CallableJudge}
    if kind not in classes:
        raise UserError(f"judge type must be one of {sorted(classes)}, got {kind!r}")
    if kind == "reward_model" and "model" in args:
        args["model_name_or_path"] = args.pop("model")
    if kind == "callable":
        if "function" not in args:
            raise UserError("callable judge config needs 'function: package.module:function'")
        args["fn"] = import_callable(args.pop("function"))
    allowed = set(inspect.signature(classes[kind]).parameters) - {"fn"}
    unknown = sorted(set(args) - allowed - {"fn"})
    if unknown:
        raise UserError(f"unknown key(s) {unknown} for a {kind} judge; allowed: {sorted(allowed)}")
    judge = classes[kind](**args)
    return CachedJudge(judge, cache) if cache else judge
