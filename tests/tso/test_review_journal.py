"""The review page's pieces without a server: the safe Markdown renderer (expected HTML written out by hand) and
the decisions journal (append, fold, conflicts and their rule, undo, idempotent retries, torn lines, the
decisions file rewritten from it and read back by `read_decisions`, the file's own decisions imported)."""

from __future__ import annotations

import json

import pytest

from tokensift.errors import UserError
from tokensift.tso.markdown import render
from tokensift.tso.pairs import read_decisions
from tokensift.tso.review_journal import DecisionJournal, journal_path


def test_markdown_escapes_before_any_markup():
    assert render("<script>alert(1)</script>") == "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"
    assert render('<img src=x onerror="alert(1)">') == "<p>&lt;img src=x onerror=&quot;alert(1)&quot;&gt;</p>"
    # emphasis around escaped text, never inside code; a code span keeps its < > as text
    assert render("**a<b** and *c* and _d_ and `<i>*x*</i>`") == (
        "<p><strong>a&lt;b</strong> and <em>c</em> and <em>d</em> and <code>&lt;i&gt;*x*&lt;/i&gt;</code></p>")
    assert render("snake_case_name stays") == "<p>snake_case_name stays</p>"
    # a fence: verbatim, escaped, its language (up to the first space) reduced to safe characters
    assert render('```py"><img src=x>\n<b>\n  x = 1\n```\nafter') == (
        '<pre><code class="lang-pyimg">&lt;b&gt;\n  x = 1</code></pre><p>after</p>')
    assert render("```\nunclosed <x>") == "<pre><code>unclosed &lt;x&gt;</code></pre>"
    # lists, paragraphs, line breaks
    assert render("Steps:\n1. one\n2. **two**\n\n- a\n- b\n  wrapped\nnext line\n\nlast") == (
        "<p>Steps:</p><ol><li>one</li><li><strong>two</strong></li></ol><ul><li>a</li><li>b<br>wrapped</li></ul>"
        "<p>next line</p><p>last</p>")
    assert render("") == "" and render("a\r\nb") == "<p>a<br>b</p>"
    assert render("[link](javascript:alert(1)) ![i](x)") == "<p>[link](javascript:alert(1)) ![i](x)</p>"


def journal(tmp_path, name="decisions.jsonl"):
    return DecisionJournal(tmp_path / name, {"p1": {"review_reason": "ambiguous", "round": 1},
                                             "p2": {"review_reason": "audit", "round": 2}})


def test_decisions_conflicts_resolution_and_undo(tmp_path):
    j = journal(tmp_path)
    assert not (tmp_path / "decisions.jsonl").read_text()  # an empty decisions file from the start
    j.decide("ana", "p1", "keep", "a", "", "r1")
    j.decide("ana", "p2", "flip", "b", "B is friendlier", "r2")
    assert {k: v.decision for k, v in read_decisions(tmp_path / "decisions.jsonl").items()} == {"p1": "keep",
                                                                                                "p2": "flip"}
    # a second reviewer disagrees on p1: both are kept; the rule writes drop and marks the conflict
    j.decide("ben", "p1", "flip", "b", "", "r3")
    state = j.state("p1")
    assert state["conflict"] and state["decision"] == "drop"
    assert [(v["reviewer"], v["decision"]) for v in state["votes"]] == [("ana", "keep"), ("ben", "flip")]
    rows = {r["pair_id"]: r for r in map(json.loads, (tmp_path / "decisions.jsonl").read_text().splitlines())}
    assert rows["p1"] == {"pair_id": "p1", "decision": "drop", "review_reason": "ambiguous", "round": 1,
                          "conflict": True, "votes": "ana=keep; ben=flip", "note": ""}
    assert rows["p2"]["note"] == "ana: B is friendlier"
    # the next decision on the conflicted pair resolves it (it replaces every earlier vote)
    resolved = j.decide("cy", "p1", "keep", "a", "A answers the question", "r4")
    assert resolved["resolves"] is True
    assert j.state("p1")["decision"] == "keep" and [v["reviewer"] for v in j.state("p1")["votes"]] == ["cy"]
    # undo: only your own, only once; undoing cy's resolution brings the conflict back
    with pytest.raises(LookupError):
        j.undo("ana", resolved["seq"], "r5")
    j.undo("cy", resolved["seq"], "r6")
    assert j.state("p1")["conflict"]
    with pytest.raises(LookupError):
        j.undo("cy", resolved["seq"], "r7")
    # a retried request (same id) is recorded once
    before = len(j.entries)
    assert j.decide("ana", "p2", "drop", "drop", "", "r2")["decision"] == "flip"  # the entry already recorded
    assert len(j.entries) == before
    # a restart folds the same journal into the same states
    again = journal(tmp_path)
    assert {p: again.state(p) for p in ("p1", "p2")} == {p: j.state(p) for p in ("p1", "p2")}
    lines = journal_path(tmp_path / "decisions.jsonl").read_text().splitlines()
    assert [json.loads(x)["seq"] for x in lines] == [1, 2, 3, 4, 5]  # r1 r2 r3 r4 r6


def test_torn_last_line_is_cut_and_a_bad_line_is_named(tmp_path):
    j = journal(tmp_path)
    j.decide("ana", "p1", "keep", "a", "", None)
    path = journal_path(tmp_path / "decisions.jsonl")
    with open(path, "a") as f:
        f.write('{"seq": 2, "reviewer": "ana", "pair_id": "p2", "deci')  # killed while writing: never acknowledged
    again = journal(tmp_path)
    assert len(again.entries) == 1 and path.read_text().endswith("}\n")
    again.decide("ana", "p2", "drop", "drop", "", None)
    assert [json.loads(x)["seq"] for x in path.read_text().splitlines()] == [1, 2]
    path.write_text(path.read_text() + "garbage\n{}\n")
    with pytest.raises(UserError, match=r"decisions.journal.jsonl, line 3: not JSON"):
        journal(tmp_path)


def test_decisions_already_in_the_file_are_imported_not_lost(tmp_path):
    csv = tmp_path / "sheet.csv"
    csv.write_text("pair_id,decision,prompt\np1,flip,x\np9,drop,y\np2,,z\n")  # a filled-in `tso review` sheet
    j = journal(tmp_path, "sheet.csv")
    assert j.state("p1")["decision"] == "flip" and j.state("p9")["decision"] == "drop"
    assert j.state("p1")["votes"][0]["reviewer"] == "decisions-file"
    j.decide("ana", "p2", "keep", "a", "", None)
    assert {k: v.decision for k, v in read_decisions(csv).items()} == {"p1": "flip", "p9": "drop", "p2": "keep"}
    # a restart imports nothing twice
    assert len(journal(tmp_path, "sheet.csv").entries) == 3
