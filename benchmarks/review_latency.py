"""Latency of a decision on the TSO review page (`tokensift tso review --serve`), on a real small TSO review.

The review: the AlpacaEval model matrix (shared data: real prompts, real answers of four models), offline columns
only (no model is loaded), VADER as the judge, one round stopped for review (unresolved=stop). The real server
(stdlib ThreadingHTTPServer, in this process) is then hit over real HTTP:

- 1 client posting 200 decisions one after another (each fsynced to the journal and the decisions file
  rewritten before the answer), then
- 20 concurrent clients posting 1,000 decisions in all.

It prints the median and p99 latency (ms) of each, the throughput, and checks that every decision was recorded
exactly once. A decision's cost is dominated by two fsyncs (the journal line, the rewritten decisions file),
so the figures depend on the disk.

    python benchmarks/review_latency.py                       # prints the table
    python benchmarks/review_latency.py --screenshot docs/images/review-page.png   # also the docs' screenshot

The screenshot is taken with headless Chromium (tests/browser.py) on the same review.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from tokensift.config import build
from tokensift.tso.config import ReviewConfig, TSOConfig, recorded_run_settings
from tokensift.tso.loop import ReviewNeeded, run_tso
from tokensift.tso.review_journal import journal_path
from tokensift.tso.review_server import open_server

ROOT = Path(__file__).resolve().parents[1]
MATRIX = ROOT.parent / "shared" / "data" / "alpacaeval-model-matrix.dev.jsonl.gz"


def small_review(folder: Path, prompts: int) -> Path:
    """A real one-round TSO run on the AlpacaEval matrix, stopped for review. Returns its folder."""
    if not MATRIX.exists():
        sys.exit(f"{MATRIX} is absent: this benchmark needs the shared data folder beside the checkout")
    values = {
        "output_dir": str(folder / "run"), "matrix_file": str(MATRIX), "prompts": "", "limit": prompts,
        "eval_prompts": 0, "rounds": 1, "progress": False, "unresolved": "stop", "min_rank_gap": 1,
        "generators": [{"name": "gpt4-turbo", "column": "gpt4_1106_preview", "rank": 3},
                       {"name": "vicuna-7b", "column": "vicuna-7b-v1.5", "rank": 2},
                       {"name": "alpaca-7b", "column": "alpaca-7b", "rank": 1},
                       {"name": "pythia-12b-sft", "column": "pythia-12b-mix-sft", "rank": 0}],
        "judge": {"type": "callable", "function": "tokensift.judges:vader_sentiment", "temperature": 0.25},
        "ambiguous_band": 0.05, "audit_fraction": 0.05,
    }
    try:
        run_tso(build(TSOConfig, values))
    except ReviewNeeded as stop:
        print(f"[bench] {stop}".split(". Decide")[0])
    return folder / "run"


def post(port: int, token: str, csrf: str, body: dict) -> tuple[int, float]:
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", "/api/decide", body=json.dumps(body).encode(),
                 headers={"Content-Type": "application/json", "Authorization": f"token {token}",
                          "X-CSRF-Token": csrf})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response.status, time.perf_counter() - start


def clients(server, count: int, per_client: int, tag: str) -> tuple[list[float], float]:
    ids = [item["id"] for item in server.items]
    latencies, failures, lock = [], [], threading.Lock()

    def client(c: int):
        for i in range(per_client):
            body = {"pair_id": ids[(c * per_client + i) % len(ids)], "choice": ("a", "b", "drop")[i % 3],
                    "reviewer": f"{tag}{c}", "request_id": f"{tag}{c}-{i}"}
            status, seconds = post(server.port, server.token, server.csrf, body)
            with lock:
                (latencies if status == 200 else failures).append(seconds if status == 200 else status)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(count)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        sys.exit(f"{len(failures)} decisions failed: {failures[:5]}")
    return latencies, time.perf_counter() - start


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]


def screenshot(server, path: Path, profile: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from browser import Browser  # the tests' Chromium driver (DevTools protocol over a pipe)

    with Browser(profile, width=1280, height=860) as browser:
        page = browser.open(server.url)
        page.wait_for("document.getElementById('position').textContent.startsWith('pair')")
        page.key("j")  # the second pair, with the judge and the prior shown
        page.key("v")
        page.wait_for("!document.getElementById('reveal').hidden")
        page.screenshot(path, full_page=False)
    print(f"[bench] screenshot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--screenshot", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = small_review(Path(tmp), args.prompts)
        if args.screenshot:
            config = build(ReviewConfig, {**recorded_run_settings(run), "port": 0,
                                          "decisions": str(Path(tmp) / "shot-decisions.jsonl")})
            server = open_server(config)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            screenshot(server, args.screenshot, Path(tmp) / "profile")
            server.shutdown()
            server.server_close()
        decisions = Path(tmp) / "decisions.jsonl"
        config = build(ReviewConfig, {**recorded_run_settings(run), "port": 0, "decisions": str(decisions)})
        server = open_server(config)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        print(f"[bench] {len(server.items)} reviewed pairs on the page; decisions to a journal on {tmp}")
        one, one_wall = clients(server, 1, 200, "solo")
        many, many_wall = clients(server, 20, 50, "crowd")
        server.shutdown()
        server.server_close()
        entries = [json.loads(x) for x in journal_path(decisions).read_text().splitlines()]
        ids = [e["request_id"] for e in entries]
        assert len(ids) == len(set(ids)) == 200 + 1000, "a decision was lost or recorded twice"
        print(f"{'clients':>8} {'decisions':>9} {'median ms':>10} {'p99 ms':>8} {'decisions/s':>12}")
        for count, values, wall in ((1, one, one_wall), (20, many, many_wall)):
            print(f"{count:>8} {len(values):>9} {1000 * statistics.median(values):>10.1f} "
                  f"{1000 * p99(values):>8.1f} {len(values) / wall:>12.0f}")
        print(f"[bench] journal: {len(entries)} entries, each request id once")


if __name__ == "__main__":
    main()
