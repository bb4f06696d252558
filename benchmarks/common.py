"""Shared pieces of the benchmark scripts: real pairs, memory sampling, timing, child processes.

Benchmarks are scripts, never tests: they print ratios measured side by side in one run (each contender in
its own child process so its peak memory is its own), on the same model, pairs, batch and max length.
The machine is shared and noisy: every figure is a median over several steps.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class PeakMemory:
    """Peak memory while a block runs: CUDA max allocated, or resident set size sampled every 5 ms on CPU."""

    def __init__(self):
        self.peak = 0.0
        self.base = 0.0
        self.phases: dict[str, float] = {}  # the peak of each phase named with `mark` (CPU: sampled RSS)
        self._phase_peak = 0.0
        self._stop = threading.Event()

    def mark(self, name: str) -> None:
        """End a phase (set-up, step 1 ...): record its own peak, start the next one."""
        if device().type == "cuda":
            torch.cuda.synchronize()
            self.phases[name] = torch.cuda.max_memory_allocated() / 2**20
            self.peak = max(self.peak, self.phases[name])
            torch.cuda.reset_peak_memory_stats()
        else:
            self.phases[name] = max(self._phase_peak, rss_mb())
            self._phase_peak = 0.0

    def __enter__(self):
        if device().type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated() / 2**20
        else:
            self.base = self.peak = rss_mb()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            now = rss_mb()
            self.peak = max(self.peak, now)
            self._phase_peak = max(self._phase_peak, now)
            time.sleep(0.005)

    def __exit__(self, *exc):
        if device().type == "cuda":
            torch.cuda.synchronize()
            self.peak = max(self.peak, torch.cuda.max_memory_allocated() / 2**20)
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, rss_mb())
        return False


def sync():
    if device().type == "cuda":
        torch.cuda.synchronize()


def median(values) -> float:
    return statistics.median(values) if values else float("nan")


def preference_examples(n: int, source: str | None = None, sample_seed: int | None = None):
    """Real preference pairs: the first n of the file (the HH-RLHF dev file by default), or with `sample_seed` n
    drawn at random from the whole file (random batches: the file's own length spread)."""
    import random

    from tokensift.data.load import load_preferences

    path = Path(source) if source else SHARED / "hh-rlhf-harmless-test.dev.jsonl.gz"
    if not path.exists():
        sys.exit(f"benchmark data {path} not found; pass --data FILE (any preference file)")
    if sample_seed is None:
        return load_preferences(str(path), limit=n).examples
    examples = load_preferences(str(path)).examples
    return random.Random(sample_seed).sample(examples, min(n, len(examples)))


def tokenized_pairs(model: str, n: int, source: str | None, max_length: int):
    """(tokenizer, the first n pairs of `source` tokenised at max_length, prompts keeping max_length // 2)."""
    from tokensift.data.tokenize import TokenizeSettings, tokenize_examples
    from tokensift.models import load_tokenizer

    tokenizer = load_tokenizer(model)
    settings = TokenizeSettings(max_length, max_length // 2)
    pairs, _ = tokenize_examples(tokenizer, preference_examples(n, source), settings)
    return tokenizer, pairs


def run_child(script: Path, args: list[str], timeout: int = 3600, memory_limit_gb: float | None = None) -> dict:
    """Run `script --child ...` in a fresh interpreter; it prints one JSON line starting with RESULT.

    `memory_limit_gb` caps the child's address space (RLIMIT_AS): past it an allocation fails inside the child
    (torch raises, `out_of_memory` recognises it) instead of the machine's out-of-memory killer picking a victim."""
    env = dict(os.environ, HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1"), TOKENIZERS_PARALLELISM="false")

    def limit():
        import resource

        size = int(memory_limit_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (size, size))

    proc = subprocess.run([sys.executable, str(script), "--child", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, preexec_fn=limit if memory_limit_gb else None)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    killed = " (killed by SIGKILL: the machine's out-of-memory killer)" if proc.returncode == -9 else ""
    raise RuntimeError(f"child {args} failed with exit status {proc.returncode}{killed}:\n{proc.stdout[-3000:]}\n"
                       f"{proc.stderr[-3000:]}")


OUT_OF_MEMORY = ("can't allocate memory", "DefaultCPUAllocator", "CUDA out of memory", "OutOfMemoryError",
                 "MemoryError", "std::bad_alloc", "Cannot allocate memory")


def out_of_memory(error: str) -> str:
    """A failed child's error in one line: "out of memory (...)" when it was, else its last line."""
    if "out-of-memory killer" in error:
        return "out of memory (killed by the machine's out-of-memory killer)"
    lines = [line for line in error.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if any(marker in line for marker in OUT_OF_MEMORY):
            return "out of memory (" + line.strip()[:160] + ")"
    return lines[-1][:200] if lines else "failed"


def emit(result: dict) -> None:
    print("RESULT " + json.dumps(result), flush=True)


def machine() -> str:
    if device().type == "cuda":
        return f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda}), torch {torch.__version__}"
    return f"CPU, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
