"""Process-group plumbing, all of it accelerate's: tokensift never runs its own distributed layer.

On a machine without an accelerator, accelerate only forms a multi-process (gloo) group when told the run is
on CPU; `on_cpu()` says so, so `accelerate launch --multi_gpu --num_processes N` (or torchrun) also works on
CPU-only hosts, which is how the CI checks multi-process training and scoring.
"""

from __future__ import annotations

import torch


def on_cpu() -> bool:
    if torch.cuda.is_available():
        return False
    if hasattr(torch, "xpu") and torch.xpu.is_available():
        return False
    mps = getattr(torch.backends, "mps", None)
    return not (mps is not None and mps.is_available())


def partial_state():
    from accelerate import PartialState

    return PartialState(cpu=on_cpu())
