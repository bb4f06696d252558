"""Metric accumulation across micro-batches and processes, the JSONL log, and peak memory."""

from __future__ import annotations

import json
import os
import resource
import sys
from collections import defaultdict
from pathlib import Path

import torch

from tokensift.fsutil import write_text_atomic


class StepMetrics:
    """Sums of per-pair metric values and of the weighted loss over one optimizer step (or an eval pass)."""

    def __init__(self):
        self.sums: dict[str, float] = defaultdict(float)
        self.pairs = 0.0
        self.loss_sum = 0.0
        self.units = 0.0
        self.tokens = 0

    def add(self, out, num_pairs: int, tokens: int) -> None:
        self.loss_sum += float(out.loss.detach()) * out.count
        self.units += out.count
        self.pairs += num_pairs
        self.tokens += tokens
        for name, values in out.metrics.items():
            self.sums[name] += float(values.float().sum())

    def register(self, out) -> None:
        """A zero-weight pass (a process with no pairs left in this step): its metric names with nothing added, so
        every process all-reduces a tensor of the same length."""
        for name in out.metrics:
            self.sums[name] += 0.0

    def reduce(self, accelerator=None) -> dict[str, float]:
        """Average over everything added, on every process (sums are all-reduced first)."""
        names = sorted(self.sums)
        values = torch.tensor([self.loss_sum, self.units, self.pairs, self.tokens] + [self.sums[n] for n in names],
                              dtype=torch.float64)
        if accelerator is not None and accelerator.num_processes > 1:
            values = accelerator.reduce(values.to(accelerator.device), reduction="sum").cpu()
        loss_sum, units, pairs, tokens = values[:4].tolist()
        out = {"loss": loss_sum / max(units, 1e-12), "pairs": pairs, "tokens": tokens}
        for i, name in enumerate(names):
            out[name] = float(values[4 + i]) / max(pairs, 1e-12)
        return out


def _step_of(line: str) -> int | None:
    try:
        return json.loads(line).get("step", 0)
    except ValueError:
        return None


def peak_memory_mb(device: torch.device | None = None) -> float:
    """Peak GPU memory allocated on CUDA, else the process's peak resident set size."""
    if device is not None and device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


class MetricsLog:
    """Appends one JSON object per logged step to metrics.jsonl (flushed, so a killed run keeps its history)."""

    def __init__(self, path: Path, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled

    def truncate_after(self, step: int) -> None:
        """On resume, forget lines logged after the checkpoint so the log has no duplicates.

        Rewritten through a temporary file and a rename, so a kill here never leaves half a log; a torn last
        line (a kill in the middle of an append) is dropped.
        """
        if not (self.enabled and self.path.exists()):
            return
        kept = [line for line in self.path.read_text().splitlines() if _step_of(line) is not None and _step_of(line) <= step]
        write_text_atomic(self.path, "".join(line + "\n" for line in kept))

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())


def read_metrics(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
