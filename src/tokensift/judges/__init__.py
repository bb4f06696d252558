"""Judges: the interface (base.py) and its back ends, each declared once with `@register`: a reward model and
a local LLM (models.py), an OpenAI-compatible HTTP API (http.py), a Python function (functions.py); an on-disk
cache for any of them (cache.py). TSO and evaluation build them from the same config mapping (`build_judge`).
"""

from __future__ import annotations

import urllib.parse

from tokensift.errors import UserError
# Each module registers its judges when imported; this order is the order of JUDGES (and of the help texts).
from tokensift.judges import models  # noqa: F401, I001
from tokensift.judges import http  # noqa: F401
from tokensift.judges import functions  # noqa: F401
from tokensift.judges.base import JUDGES, Item, Judge, ScoreJudge, Verdict
from tokensift.judges.cache import CachedJudge
from tokensift.judges.functions import CallableJudge, vader_sentiment
from tokensift.judges.http import HTTPJudge
from tokensift.judges.models import LocalLLMJudge, RewardModelJudge

__all__ = ["JUDGES", "CachedJudge", "CallableJudge", "HTTPJudge", "Item", "Judge", "LocalLLMJudge",
           "RewardModelJudge", "ScoreJudge", "Verdict", "build_judge", "check_judge_spec", "vader_sentiment"]

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
    """Map a config dict to a judge: `type` (one of JUDGES), the back end's constructor arguments (see its
    `from_spec`: `model` for a reward model's `model_name_or_path`, `function: "package.module:function"` for a
    callable), and optional `cache: path/to/judge_cache.sqlite`, which wraps the judge in a `CachedJudge`."""
    if not isinstance(spec, dict):
        raise UserError(f"judge config must be a mapping with a 'type' key, got {type(spec).__name__}")
    check_judge_spec(spec)
    args = dict(spec)
    kind = args.pop("type", None)
    cache = args.pop("cache", None)
    if kind not in JUDGES:
        raise UserError(f"judge type must be one of {sorted(JUDGES)}, got {kind!r}")
    judge = JUDGES[kind].from_spec(args)
    return CachedJudge(judge, cache) if cache else judge
