"""On-disk cache of judge verdicts and scores, so rerunning a pipeline (or resuming a killed one) never pays
for the same judgement twice -- HTTP judges cost money, model judges cost GPU time.

Storage is one SQLite file. Every batch of new results is written in one transaction, committed at least
every `commit_every` judgements, so a process killed at any moment leaves a valid file that holds every
committed batch and nothing half-written (SQLite's rollback journal undoes the torn transaction on the next
open). Several processes may share the file; SQLite serialises the writers.

Keys are sha256 over the JSON of (kind, judge.name, prompt messages, responses...). `judge.name` carries the
back end, model, template version and verdict-changing settings, so a different judge never reads another's
entries. Order matters: compare(a, b) and compare(b, a) are different keys. We do not answer one from the
other by inverting p_first, because the stored `detail` (raw answers per order) would then describe the
wrong order; a position-debiased judge gives p and 1 - p anyway.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

from tokensift.errors import UserError
from tokensift.judges.base import Item, Judge, Verdict

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, judge TEXT NOT NULL, p_first REAL NOT NULL,"
    " detail TEXT NOT NULL, created REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, judge TEXT NOT NULL, score REAL NOT NULL,"
    " created REAL NOT NULL)",
)
_LOOKUP_CHUNK = 500  # stays under SQLite's limit on bound parameters per statement


def cache_key(kind: str, judge_name: str, prompt: list[dict], *responses: str) -> str:
    """sha256 of a canonical JSON encoding (sorted dict keys, no whitespace), stable across processes."""
    payload = json.dumps([kind, judge_name, prompt, *responses], ensure_ascii=False, sort_keys=True,
                         separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class CachedJudge(Judge):
    """Wraps any judge; same interface, same `name` (so caches can be stacked or shared). `hits` and `misses`
    count judgements served from disk and from the back end since construction."""

    def __init__(self, judge: Judge, path: str | Path, commit_every: int = 64):
        self.judge = judge
        self.name = judge.name
        self.path = Path(path)
        self.commit_every = max(1, int(commit_every))
        self.hits = 0
        self.misses = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(str(self.path), timeout=60)
            with self._db:
                for statement in _SCHEMA:
                    self._db.execute(statement)
        except sqlite3.DatabaseError as exc:
            raise UserError(f"judge cache '{self.path}' is not a usable SQLite file ({exc}); "
                            "move it away to start a fresh cache") from exc

    # -- pairwise ------------------------------------------------------------------------------------------
    def compare(self, prompt: list[dict], first: str, second: str) -> Verdict:
        return self.compare_many([(prompt, first, second)])[0]

    def compare_many(self, items: list[Item]) -> list[Verdict]:
        keys = [cache_key("compare", self.name, prompt, first, second) for prompt, first, second in items]
        found = {key: Verdict(p, json.loads(detail))
                 for key, p, detail in self._select("SELECT key, p_first, detail FROM verdicts", keys)}
        missing = {key: item for key, item in zip(keys, items) if key not in found}  # duplicates judged once
        self.hits += len(items) - len(missing)
        self.misses += len(missing)
        pending = list(missing.items())
        for start in range(0, len(pending), self.commit_every):
            chunk = pending[start:start + self.commit_every]
            verdicts = self.judge.compare_many([item for _, item in chunk])
            rows = [(key, self.name, float(v.p_first), json.dumps(v.detail), time.time())
                    for (key, _), v in zip(chunk, verdicts)]
            with self._db:  # one transaction: all of the chunk or none of it
                self._db.executemany("INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?)", rows)
            # Hand back what a later cache hit will return (detail round-tripped through JSON), so the
            # first and the second run see identical verdicts.
            found.update({key: Verdict(p, json.loads(detail)) for key, _, p, detail, _ in rows})
        return [found[key] for key in keys]

    # -- single-response scores (reward model, callable) ---------------------------------------------------
    def score(self, prompt: list[dict], response: str) -> float:
        return self.score_many([(prompt, response)])[0]

    def score_many(self, items: list[tuple[list[dict], str]]) -> list[float]:
        if not hasattr(self.judge, "score_many"):
            raise TypeError(f"judge '{self.name}' compares pairs only; it cannot score single responses")
        keys = [cache_key("score", self.name, prompt, response) for prompt, response in items]
        found = dict(self._select("SELECT key, score FROM scores", keys))
        missing = {key: item for key, item in zip(keys, items) if key not in found}
        self.hits += len(items) - len(missing)
        self.misses += len(missing)
        pending = list(missing.items())
        for start in range(0, len(pending), self.commit_every):
            chunk = pending[start:start + self.commit_every]
            scores = self.judge.score_many([item for _, item in chunk])
            rows = [(key, self.name, float(s), time.time()) for (key, _), s in zip(chunk, scores)]
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?)", rows)
            found.update({key: s for key, _, s, _ in rows})
        return [found[key] for key in keys]

    # -- plumbing ------------------------------------------------------------------------------------------
    def _select(self, query: str, keys: list[str]) -> list[tuple]:
        unique = list(dict.fromkeys(keys))
        rows: list[tuple] = []
        for start in range(0, len(unique), _LOOKUP_CHUNK):
            chunk = unique[start:start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows += self._db.execute(f"{query} WHERE key IN ({marks})", chunk).fetchall()
        return rows

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "CachedJudge":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CachedJudge({self.judge!r}, path={str(self.path)!r})"
