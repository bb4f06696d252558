"""benchmarks/gpu_proof.py --dry-run: every section of the GPU proof at toy size on the CPU, so that the one call
a lent GPU gets works the first time (flex attention's correctness check included)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import shared_data

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_proof_dry_run(tmp_path):
    shared_data("hh-rlhf-harmless-test.dev.jsonl.gz")
    shared_data("alpacaeval-gpt4turbo-pairs.dev.jsonl.gz")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_proof.py"), "--dry-run", "--bundle", str(tmp_path / "bundle"),
         "--work", str(tmp_path / "work"), "--out", str(out)],
        capture_output=True, text=True, timeout=900, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "gpu-proof.json").read_text())
    correct = results["a/correctness"]
    assert set(correct) == {"toy", "toy-window"} and all(v["ok"] for v in correct.values()), correct
    assert correct["toy-window"]["sliding_window"] and correct["toy-window"]["rows"] == 1
    for key in ("b/toy/alpaca/128/tokensift", "b/toy/alpaca/128/trl_shipped", "c/toy/alpaca/128/sepo",
                "e/toy/alpaca-long/128/tokensift", "b/toy/alpaca/128/tokensift_lora"):
        assert results[key]["step_s"] > 0 and results[key]["peak_mb"] > 0, results[key]
    # the same training state for both trainers (fp32 masters), so the memory above it compares like for like
    assert results["b/toy/alpaca/128/tokensift"]["state_mb"] == results["b/toy/alpaca/128/trl_shipped"]["state_mb"] > 0
    assert any("TRL's speed as shipped" in line and "above the training state" in line for line in results["summary"])
