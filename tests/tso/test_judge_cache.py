"""CachedJudge: reruns cost nothing, keys separate judges and orders, a killed writer leaves a valid file."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import pytest

from tokensift.errors import UserError
from tokensift.judges.cache import CachedJudge, cache_key
from tokensift.judges import CallableJudge, Judge, Verdict

PROMPT = [{"role": "user", "content": "Say something."}]
ITEMS = [(PROMPT, "a" * n, "b" * (5 - n)) for n in range(1, 5)]


class Counting:
    """A length reward that counts its calls: the number the cache must drive to zero."""

    def __init__(self):
        self.calls = 0

    def __call__(self, prompt, response):
        self.calls += 1
        return float(len(response))


def test_second_run_makes_no_backend_calls(tmp_path):
    fn = Counting()
    with CachedJudge(CallableJudge(fn, name="len"), tmp_path / "c.sqlite") as cached:
        first = cached.compare_many(ITEMS)
        assert (cached.hits, cached.misses, fn.calls) == (0, 4, 8)
    rerun = Counting()
    with CachedJudge(CallableJudge(rerun, name="len"), tmp_path / "c.sqlite") as cached:
        second = cached.compare_many(ITEMS)
        assert (cached.hits, cached.misses, rerun.calls) == (4, 0, 0)
    assert second == first
    assert [v.p_first for v in second] == pytest.approx([CallableJudge(lambda p, r: len(r), name="x").compare(*i).p_first for i in ITEMS])


def test_other_judge_name_misses(tmp_path):
    path = tmp_path / "c.sqlite"
    with CachedJudge(CallableJudge(Counting(), name="len"), path) as cached:
        cached.compare_many(ITEMS)
    other = Counting()
    with CachedJudge(CallableJudge(other, name="len-v2"), path) as cached:
        cached.compare_many(ITEMS)
        assert (cached.hits, cached.misses, other.calls) == (0, 4, 8)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT judge, COUNT(*) FROM verdicts GROUP BY judge ORDER BY judge").fetchall() == [
            ("len", 4), ("len-v2", 4)]


def test_order_is_part_of_the_key_and_duplicates_are_judged_once(tmp_path):
    fn = Counting()
    with CachedJudge(CallableJudge(fn, name="len"), tmp_path / "c.sqlite") as cached:
        forward = cached.compare(PROMPT, "long answer", "short")
        swapped, again, dup = cached.compare_many([(PROMPT, "short", "long answer"), (PROMPT, "long answer", "short"),
                                                   (PROMPT, "short", "long answer")])
        # misses count back-end judgements: the repeat inside the batch rides on the first one
        assert fn.calls == 4 and (cached.hits, cached.misses) == (2, 2)
    assert again == forward and dup == swapped
    assert swapped.p_first == pytest.approx(1 - forward.p_first)
    assert swapped.detail == {"score_first": 5.0, "score_second": 11.0}
    assert cache_key("compare", "len", PROMPT, "a", "b") != cache_key("compare", "len", PROMPT, "b", "a")
    # dict key order inside messages does not matter; content does
    reordered = [{"content": "Say something.", "role": "user"}]
    assert cache_key("compare", "len", PROMPT, "a", "b") == cache_key("compare", "len", reordered, "a", "b")


def test_scores_are_cached(tmp_path):
    fn = Counting()
    with CachedJudge(CallableJudge(fn, name="len"), tmp_path / "c.sqlite") as cached:
        assert cached.score_many([(PROMPT, "abc"), (PROMPT, "abcdef")]) == [3.0, 6.0]
        assert cached.score(PROMPT, "abc") == 3.0
        assert fn.calls == 2


def test_pairwise_only_judge_cannot_score(tmp_path):
    class Coin(Judge):
        name = "coin"

        def compare(self, prompt, first, second):
            return Verdict(0.5, {})

    with CachedJudge(Coin(), tmp_path / "c.sqlite") as cached:
        assert cached.compare(PROMPT, "a", "b") == Verdict(0.5, {})
        with pytest.raises(TypeError, match="judge 'coin' compares pairs only"):
            cached.score(PROMPT, "a")


def test_killed_writer_leaves_a_valid_cache(tmp_path):
    """A child process dies (os._exit, no cleanup) in the middle of its second chunk. The first chunk is on
    disk, the torn one is not, and the file opens cleanly."""
    path = tmp_path / "c.sqlite"
    child = textwrap.dedent(f"""
        import os
        from tokensift.judges.cache import CachedJudge
        from tokensift.judges import CallableJudge
        calls = 0
        def dies_on_seventh_call(prompt, response):
            global calls
            calls += 1
            if calls == 7:
                os._exit(3)
            return float(len(response))
        items = {ITEMS!r}
        CachedJudge(CallableJudge(dies_on_seventh_call, name="len"), {str(path)!r}, commit_every=2).compare_many(items)
    """)
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert result.returncode == 3, result.stderr
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    fn = Counting()
    with CachedJudge(CallableJudge(fn, name="len"), path, commit_every=2) as cached:
        cached.compare_many(ITEMS)
        # 2 pairs per chunk, 2 calls per pair: calls 1-4 committed the first chunk, call 7 killed the second
        assert (cached.hits, cached.misses, fn.calls) == (2, 2, 4)


def test_not_a_database_is_a_user_error(tmp_path):
    path = tmp_path / "c.sqlite"
    path.write_text("this is not sqlite " * 100)
    with pytest.raises(UserError, match="is not a usable SQLite file"):
        CachedJudge(CallableJudge(lambda p, r: 0.0, name="zero"), path)
