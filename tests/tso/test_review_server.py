"""`tokensift tso review --serve` against a real small TSO run (tiny in-process models, stopped for review with
unresolved=stop): the real server over real HTTP, and the page in a real headless Chromium (tests/browser.py,
the DevTools protocol over a pipe).

- the keyboard: three pairs decided with a, b, d; a reload shows them; `run_tso(decisions=...)` applies them;
- model text holding <script> / <img onerror> is shown as text and runs nothing;
- refusals (no token, wrong token, wrong CSRF, unknown pair, bad decision, 10 MB body, bad Host, a path that
  looks like a file): each a 4xx, and the server keeps serving;
- SIGKILL after N acknowledged decisions: all N are in the decisions file after a restart;
- 20 concurrent clients posting 1,000 decisions: each recorded exactly once.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest
from browser import Browser, find_chromium
from conftest import CORPUS, build_model, build_tokenizer

from tokensift.config import build
from tokensift.errors import UserError
from tokensift.judges import CallableJudge
from tokensift.tso.config import ReviewConfig, TSOConfig, recorded_run_settings
from tokensift.tso.loop import ReviewNeeded, run_tso
from tokensift.tso.pairs import read_decisions
from tokensift.tso.review_journal import journal_path
from tokensift.tso.review_server import open_server

SRC = str(Path(__file__).resolve().parents[2] / "src")
needs_chromium = pytest.mark.skipif(find_chromium() is None, reason="no Chromium (apt-get install -y chromium, "
                                    "or set TOKENSIFT_CHROMIUM) -- the browser tests need one")
HUMAN = [
    "Sure! Here is code:\n```python\nprint('<b>hi</b>')\n```\n- one\n- **two**",
    "<script>window.pwned = 1</script> I love it, *truly*.",
    '<img src=x onerror="window.pwned = 2"> wonderful `<img src=y onerror=alert(1)>`',
]


def length_judge():
    return CallableJudge(lambda prompt, response: len(response), name="length", temperature=2.0)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A one-round TSO run on a tiny model, stopped for review; every pair reviewed (audit_fraction=1)."""
    root = tmp_path_factory.mktemp("review")
    tokenizer = build_tokenizer()
    model_dir = root / "tiny-model"
    build_model(len(tokenizer)).save_pretrained(model_dir, safe_serialization=True)
    tokenizer.save_pretrained(model_dir)
    prompts = root / "prompts.jsonl"
    rows = [{"prompt": [{"role": "system", "content": "You are terse."},
                        {"role": "user", "content": f"{CORPUS[i % len(CORPUS)][:30]} ({i})"}],
             "answer": HUMAN[i] if i < len(HUMAN) else CORPUS[(i + 1) % len(CORPUS)]} for i in range(4)]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    values = {
        "output_dir": str(root / "run"), "model": str(model_dir), "prompts": str(prompts), "human_column": "answer",
        "eval_prompts": 0, "rounds": 1, "max_new_tokens": 6, "block_prompts": 4, "generation_batch_size": 4,
        "progress": False, "backend": "transformers", "unresolved": "stop", "audit_fraction": 1.0,
        "generators": [{"name": "hot", "model": str(model_dir), "temperature": 1.5, "size": 1, "stage": 0},
                       {"name": "policy", "policy": True, "size": 1, "stage": 1}],
        "judge": {"type": "callable", "function": "tokensift.judges:vader_sentiment"},
        "train": {"max_steps": 1, "batch_size": 4, "max_length": 64, "max_prompt_length": 48},
    }
    with pytest.raises(ReviewNeeded, match="tokensift tso review --serve output_dir="):
        run_tso(build(TSOConfig, values), judge=length_judge())
    return root / "run"


def review_config(run_dir: Path, decisions: Path, **more) -> ReviewConfig:
    """What `tokensift tso review --serve output_dir=RUN` builds: the run's recorded settings + the review keys."""
    return build(ReviewConfig, {**recorded_run_settings(run_dir), "serve": True, "port": 0,
                                "decisions": str(decisions), **more})


@contextmanager
def serving(config):
    server = open_server(config)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def request(port, method, path, body=None, headers=None, raw: bytes | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    head = {"Content-Type": "application/json", **(headers or {})}
    conn.request(method, path, body=data, headers=head)
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    return response.status, payload


def api(server, method, path, body=None, **headers):
    head = {"Authorization": f"token {server.token}", "X-CSRF-Token": server.csrf, **headers}
    status, payload = request(server.port, method, path, body, head)
    return status, json.loads(payload) if payload.startswith(b"{") else payload


def test_refusals_are_4xx_and_the_server_keeps_serving(run_dir, tmp_path):
    with pytest.raises(UserError, match="allow_remote=true"):
        open_server(review_config(run_dir, tmp_path / "d.jsonl", host="0.0.0.0"))
    with serving(review_config(run_dir, tmp_path / "d.jsonl")) as server:
        good = {"Authorization": f"token {server.token}", "X-CSRF-Token": server.csrf}
        pair = server.items[0]["id"]
        decide = {"pair_id": pair, "choice": "a"}
        refusals = {
            "no token (page)": ("GET", "/", None, {}),
            "no token (data)": ("GET", "/api/pairs", None, {}),
            "no token (post)": ("POST", "/api/decide", decide, {"X-CSRF-Token": server.csrf}),
            "wrong token": ("GET", "/api/pairs?token=" + "x" * 43, None, {}),
            "wrong CSRF": ("POST", "/api/decide", decide, {**good, "X-CSRF-Token": "nope"}),
            "no CSRF": ("POST", "/api/decide", decide, {"Authorization": good["Authorization"]}),
            "unknown pair": ("POST", "/api/decide", {**decide, "pair_id": "0123456789abcdef"}, good),
            "bad decision": ("POST", "/api/decide", {**decide, "choice": "maybe"}, good),
            "decision not a choice": ("POST", "/api/decide", {**decide, "choice": "keep"}, good),
            "bad reviewer": ("POST", "/api/decide", {**decide, "reviewer": "<b>"}, good),
            "not JSON": ("POST", "/api/decide", None, good),
            "undo of nothing": ("POST", "/api/undo", {"seq": 999}, good),
            "a file path": ("GET", "/../../etc/passwd", None, good),
            "a file path in the query": ("GET", "/api/pairs/../../tso-config.json", None, good),
            "bad Host": ("GET", "/api/pairs", None, {**good, "Host": "evil.example:80"}),
            "GET on a POST route": ("GET", "/api/decide", None, good),
        }
        for name, (method, path, body, headers) in refusals.items():
            raw = b"{not json" if name == "not JSON" else None
            status, payload = request(server.port, method, path, body, headers, raw=raw)
            assert 400 <= status < 500, (name, status, payload)
            assert b"pair_id" not in payload and b"tiny-model" not in payload, name  # nothing of the run leaks
        status, _ = request(server.port, "POST", "/api/decide", headers=good, raw=b"x" * (10 << 20))
        assert status == 413
        assert read_decisions(tmp_path / "d.jsonl") == {}  # none of the above recorded anything
        status, data = api(server, "GET", "/api/pairs")
        assert status == 200 and len(data["pairs"]) == len(server.items) > 0
        status, answer = api(server, "POST", "/api/decide", decide)
        assert status == 200 and answer["state"]["decision"] in ("keep", "flip")
        assert read_decisions(tmp_path / "d.jsonl")[pair].decision == answer["state"]["decision"]


def test_concurrent_clients_each_decision_recorded_once(run_dir, tmp_path):
    """20 clients post 1,000 decisions (each retried once with the same request id, as the page does after a
    lost answer): the journal holds each exactly once, in one sequence."""
    decisions = tmp_path / "d.jsonl"
    with serving(review_config(run_dir, decisions)) as server:
        ids = [item["id"] for item in server.items]
        jobs = [(f"client{c}", i) for c in range(20) for i in range(50)]
        errors = []

        def client(name, numbers):
            for i in numbers:
                body = {"pair_id": ids[i % len(ids)], "choice": ("a", "b", "drop")[i % 3], "reviewer": name,
                        "request_id": f"{name}-{i}"}
                for _ in range(2):
                    status, payload = api(server, "POST", "/api/decide", body)
                    if status != 200:
                        errors.append((status, payload))

        threads = [threading.Thread(target=client, args=(f"client{c}", range(50))) for c in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
    entries = [json.loads(x) for x in journal_path(decisions).read_text().splitlines()]
    assert len(entries) == len(jobs) == 1000
    assert sorted(e["request_id"] for e in entries) == sorted(f"{n}-{i}" for n, i in jobs)
    assert [e["seq"] for e in entries] == list(range(1, 1001))


def start_cli_server(run_dir: Path, decisions: Path):
    """The real command in a child process; returns (process, port, token)."""
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "tokensift", "tso", "review", "--serve",
                             f"output_dir={run_dir}", "port=0", f"decisions={decisions}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    for line in proc.stdout:
        found = re.search(r"http://127\.0\.0\.1:(\d+)/\?token=([\w-]+)", line)
        if found:
            return proc, int(found.group(1)), found.group(2)
    raise AssertionError(f"no URL printed: {proc.stderr.read()}")


def test_sigkill_loses_no_acknowledged_decision(run_dir, tmp_path):
    decisions = tmp_path / "d.csv"
    proc, port, token = start_cli_server(run_dir, decisions)
    try:
        status, page = request(port, "GET", f"/?token={token}")
        csrf = re.search(rb'name="csrf" content="([\w-]+)"', page).group(1).decode()
        head = {"Authorization": f"token {token}", "X-CSRF-Token": csrf}
        status, data = request(port, "GET", "/api/pairs", headers=head)
        ids = [p["id"] for p in json.loads(data)["pairs"]]
        acknowledged = {}
        for i, pair_id in enumerate(ids[:15]):
            status, answer = request(port, "POST", "/api/decide", {"pair_id": pair_id, "choice": "abd"[i % 3]
                                                                   .replace("d", "drop")}, head)
            assert status == 200
            acknowledged[pair_id] = json.loads(answer)["state"]["decision"]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # the decisions file is rewritten before each answer: already complete after the kill
    assert {k: v.decision for k, v in read_decisions(decisions).items()} == acknowledged
    # a torn line, as if the kill had hit the next append halfway
    with open(journal_path(decisions), "a") as f:
        f.write('{"seq": 16, "reviewer": "x", "pair_')
    proc, port, token = start_cli_server(run_dir, decisions)
    try:
        assert {k: v.decision for k, v in read_decisions(decisions).items()} == acknowledged
        status, data = request(port, "GET", "/api/pairs", headers={"Authorization": f"token {token}"})
        states = json.loads(data)["states"]
        assert {k: s["decision"] for k, s in states.items() if s["decision"]} == acknowledged
    finally:
        proc.terminate()
        proc.wait()


@needs_chromium
def test_keyboard_reload_and_run_applies_the_decisions(run_dir, tmp_path):
    decisions = tmp_path / "decisions.jsonl"
    with serving(review_config(run_dir, decisions)) as server, Browser(tmp_path / "profile") as browser:
        page = browser.open(server.url)
        page.wait_for("document.getElementById('position').textContent.startsWith('pair 1 of')")
        assert "token=" not in page.eval("location.href")  # dropped from the address bar; the cookie carries it
        first = page.eval("location.hash")
        shown = []
        for key in ("a", "b", "d"):
            shown.append(page.eval("location.hash.split('=')[1]"))
            page.key(key)
        assert page.eval("window.tsoReview.idle()") == 0
        assert page.eval("document.getElementById('progress').textContent").startswith("decided 3 of")
        page.reload()
        page.wait_for("document.getElementById('progress').textContent.startsWith('decided 3 of')")
        assert page.eval("location.hash") not in (first, "")  # opens where the reviewer left off: an undecided pair
        page.eval(f"location.hash = '#pair={shown[0]}'; location.reload()")
        page.wait_for("document.getElementById('current').textContent.indexOf('reviewer: A is better') >= 0")
        page.key("u")  # undo the last decision (the drop), then decide it again with b
        page.wait_for("document.getElementById('progress').textContent.startsWith('decided 2 of')")
        page.key("b")
        assert page.eval("window.tsoReview.idle()") == 0
    expected = {}
    for pair_id, choice in zip(shown, "abb"):
        a_chosen = server.sides[pair_id]
        expected[pair_id] = "keep" if (choice == "a") == a_chosen else "flip"
    assert {k: v.decision for k, v in read_decisions(decisions).items()} == expected
    config = build(TSOConfig, {**recorded_run_settings(run_dir), "decisions": str(decisions), "unresolved": "keep"})
    run_tso(config, judge=length_judge())
    applied = {r["pair_id"]: r for r in map(json.loads, (run_dir / "round-01" / "decisions-applied.jsonl")
                                            .read_text().splitlines())}
    assert {p: (applied[p]["action"], applied[p]["decided_by"]) for p in expected} == {
        p: (d, "human") for p, d in expected.items()}
    trained = {r["pair_id"]: r for r in map(json.loads, (run_dir / "round-01" / "pairs.jsonl").read_text().splitlines())}
    for pair_id, decision in expected.items():
        assert trained[pair_id]["flipped"] == (decision == "flip")


@needs_chromium
def test_model_text_is_shown_as_text(run_dir, tmp_path):
    with serving(review_config(run_dir, tmp_path / "d.jsonl")) as server, Browser(tmp_path / "profile") as browser:
        hostile = [i["id"] for i in server.items if "pwned" in i["a"]["html"] + i["b"]["html"]]
        code = [i["id"] for i in server.items if "print(" in i["a"]["html"] + i["b"]["html"]]
        assert hostile and code
        page = browser.open(server.url)
        page.wait_for("document.getElementById('position').textContent.startsWith('pair')")
        for pair_id in hostile:
            page.eval(f"location.hash = '#pair={pair_id}'; location.reload()")
            page.wait_for(f"document.getElementById('pairid').textContent === '{pair_id}'")
            text = page.eval("document.getElementById('texta').textContent + document.getElementById('textb')"
                             ".textContent")
            assert "<script>window.pwned = 1</script>" in text or '<img src=x onerror="window.pwned = 2">' in text
            assert page.eval("document.querySelectorAll('.md img, .md script').length") == 0
            assert page.eval("typeof window.pwned") == "undefined"
        page.eval(f"location.hash = '#pair={code[0]}'; location.reload()")
        page.wait_for(f"document.getElementById('pairid').textContent === '{code[0]}'")
        assert page.eval("document.querySelector('.md pre code').textContent") == "print('<b>hi</b>')"
        assert page.eval("[...document.querySelectorAll('.md li strong')].map(e => e.textContent)") == ["two"]
        # the system message is shown with the prompt, and the judge only on demand
        assert page.eval("document.getElementById('prompt').textContent").startswith("systemYou are terse.")
        assert page.eval("document.getElementById('reveal').hidden") is True
        page.key("v")
        assert "prior ladder:" in page.eval("document.getElementById('reveal').textContent")


@needs_chromium
def test_two_reviewers_conflict_is_shown_and_resolved_and_filters(run_dir, tmp_path):
    decisions = tmp_path / "d.jsonl"
    with serving(review_config(run_dir, decisions)) as server, Browser(tmp_path / "profile") as browser:
        pair = server.items[1]["id"]
        for reviewer, choice in (("ana", "a"), ("ben", "b")):
            assert api(server, "POST", "/api/decide", {"pair_id": pair, "choice": choice, "reviewer": reviewer})[0] == 200
        row = json.loads(decisions.read_text())
        assert (row["decision"], row["conflict"], row["votes"]) == ("drop", True, "ana=keep; ben=flip"
                                                                    if server.sides[pair] else "ana=flip; ben=keep")
        page = browser.open(server.url + f"#pair={pair}")
        page.wait_for(f"document.getElementById('pairid').textContent === '{pair}'")
        assert page.eval("document.getElementById('current').className") == "conflict"
        shown = page.eval("document.getElementById('current').textContent")
        assert "ana: A is better" in shown and "ben: B is better" in shown
        page.eval("var r = document.getElementById('reviewer'); r.value = 'cy'; "
                  "r.dispatchEvent(new Event('change'))")
        page.key("b")  # cy's decision on a pair in conflict resolves it
        assert page.eval("window.tsoReview.idle()") == 0
        row = json.loads(decisions.read_text())
        assert (row["decision"], row["conflict"]) == ("flip" if server.sides[pair] else "keep", False)
        assert row["votes"] == f"cy={row['decision']}"  # the resolution replaced ana's and ben's votes
        # filters: one reason, one round, undecided only
        reason = server.items[0]["reason"]
        page.eval(f"var f = document.getElementById('freason'); f.value = '{reason}'; "
                  "f.dispatchEvent(new Event('change'))")
        count = sum(i["reason"] == reason for i in server.items)
        assert page.eval("document.getElementById('position').textContent").endswith(f"of {count}")
        page.eval("var f = document.getElementById('freason'); f.value = ''; f.dispatchEvent(new Event('change'));"
                  "var o = document.getElementById('fopen'); o.checked = true; o.dispatchEvent(new Event('change'))")
        assert page.eval("document.getElementById('position').textContent").endswith(f"of {len(server.items) - 1}")
        assert page.eval("document.getElementById('progress').textContent").startswith(
            f"decided 1 of {len(server.items)}")


def test_heatmap_colours_are_the_ones_its_page_uses():
    from tokensift.viz.heatmap import NEGATIVE_RGB, POSITIVE_RGB
    from tokensift.viz.heatmap_template import TEMPLATE

    assert f"var NEG = {list(NEGATIVE_RGB)}, POS = {list(POSITIVE_RGB)};" in TEMPLATE


@needs_chromium
def test_token_scores_colour_the_answers(run_dir, tmp_path, capsys):
    """`tokensift score` over a review sheet of the run (a second tiny model as the oracle, so scores are not 0),
    then the page with token_scores=DIR: pressing t colours A's and B's tokens with the heatmap's colours."""
    from tokensift.cli import main
    from tokensift.scores import load_scores
    from tokensift.tso.loop import export_review
    from tokensift.tso.pairs import Pair
    from tokensift.tso.review_scores import review_token_scores
    from tokensift.viz.heatmap import NEGATIVE_RGB, POSITIVE_RGB

    oracle = tmp_path / "oracle"
    build_model(len(build_tokenizer()), seed=1).save_pretrained(oracle, safe_serialization=True)
    build_tokenizer().save_pretrained(oracle)
    sheet = tmp_path / "sheet.jsonl"
    export_review(build(ReviewConfig, recorded_run_settings(run_dir)), str(sheet), include_decided=True)
    scores = tmp_path / "scores"
    assert main(["score", f"data={sheet}", "columns=chosen=chosen_text,rejected=rejected_text", f"oracle={oracle}",
                 f"reference={run_dir.parent / 'tiny-model'}", f"output_dir={scores}", "max_length=64",
                 "max_prompt_length=48", "progress=false"]) == 0
    _, records = load_scores(scores)
    rows = [json.loads(x) for x in sheet.read_text().splitlines()]
    pairs = {p.pair_id: p for p in (Pair.from_row(r) for r in map(json.loads, (run_dir / "round-01" / "judged.jsonl")
                                                                   .read_text().splitlines()))}
    matched, scale, counts = review_token_scores(scores, pairs)
    assert counts["matched"] == len(rows) == len(records) and counts["text_differs"] == 0
    for row, record in records.items():  # each pair carries exactly its row's stored scores, side for side
        mine = matched[rows[row]["pair_id"]]
        assert mine["chosen"]["scores"] == pytest.approx(record["chosen_scores"].tolist())
        assert mine["rejected"]["scores"] == pytest.approx(record["rejected_scores"].tolist())
        assert len(mine["chosen"]["tokens"]) == len(record["chosen_ids"])
    capsys.readouterr()
    assert main(["tso", "review", "--serve", f"output_dir={run_dir}", f"token_scores={scores}", "--check"]) == 0
    assert f"token scores      {scores}: {len(records)} scored rows of {sheet}" in capsys.readouterr().out
    with serving(review_config(run_dir, tmp_path / "d.jsonl", token_scores=str(scores))) as server, \
            Browser(tmp_path / "profile") as browser:
        assert server.meta["token_scale"] == pytest.approx(scale) and scale > 0
        item = server.items[0]
        page = browser.open(server.url + f"#pair={item['id']}")
        page.wait_for(f"document.getElementById('pairid').textContent === '{item['id']}'")
        assert page.eval("document.querySelectorAll('#texta .tok').length") == 0  # Markdown until asked
        page.key("t")
        assert page.eval("document.querySelectorAll('#texta .tok').length") == len(item["a"]["tokens"])
        assert page.eval("document.getElementById('texta').textContent") == "".join(item["a"]["tokens"])
        shown = page.eval("[...document.querySelectorAll('#texta .tok')].map(e => getComputedStyle(e)"
                          ".backgroundColor)")
        for score, colour in zip(item["a"]["scores"], shown):  # the heatmap's formula, worked out here
            t = max(-1.0, min(1.0, score / scale))
            end = NEGATIVE_RGB if t < 0 else POSITIVE_RGB
            assert colour == "rgb({}, {}, {})".format(*(round(255 + (v - 255) * abs(t)) for v in end))
        assert len(set(shown)) > 1
