"""Python functions as judges (gold rewards for experiments), and the built-in VADER sentiment reward."""

from __future__ import annotations

import importlib
import math
from typing import Any, Callable

from tokensift.errors import UserError
from tokensift.judges.base import ScoreJudge, from_spec, register

@register
class CallableJudge(ScoreJudge):
    """Any `fn(prompt, response) -> float`; p_first = sigmoid((s_first - s_second) / temperature).

    The default name is the function's module and qualified name. Give `name=` for lambdas and closures
    (their names are not unique) and whenever the function's behaviour changes, or the cache serves stale
    verdicts.
    """

    kind = "callable"
    pairwise = False
    summary = "a Python function fn(prompt, response) -> score, named 'package.module:function'"

    @classmethod
    def from_spec(cls, args: dict):
        if "function" not in args:
            raise UserError("callable judge config needs 'function: package.module:function'")
        args = dict(args)
        fn = import_callable(args.pop("function"))
        return from_spec(cls, args, fn=fn)

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
