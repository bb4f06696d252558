"""Atomic, resumable checkpoints: trainable weights, optimizer, scheduler, RNG states and data position.

A checkpoint is written into a temporary folder beside its final name and renamed into place only when every
file is flushed, so a run killed at any moment leaves either the previous checkpoint set or a complete new one,
never a partial folder under a checkpoint name. Weights are safetensors; the other states are plain tensors
and numbers, read back with `torch.load(weights_only=True)` (no pickle execution).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import uuid
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from tokensift.errors import UserError
from tokensift.fsutil import remove_dir, replace_dir

NAME = re.compile(r"^checkpoint-(\d{8})$")


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    folder = Path(output_dir)
    if not folder.exists():
        return []
    return sorted((p for p in folder.iterdir() if p.is_dir() and NAME.match(p.name)), key=lambda p: p.name)


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    found = list_checkpoints(output_dir)
    return found[-1] if found else None


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}


def rng_state() -> dict:
    state = {
        "torch": torch.get_rng_state(),
        "python": json.dumps(random.getstate()),
        "numpy": json.dumps([np.random.get_state()[0], np.random.get_state()[1].tolist(), *np.random.get_state()[2:]]),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = json.loads(state["python"])
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = json.loads(state["numpy"])
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb") as f:
            os.fsync(f.fileno())


def save_checkpoint(output_dir, step: int, model, optimizer, scheduler, state: dict, keep: int = 2) -> Path:
    """Write checkpoint-<step> atomically; keep the `keep` newest. `state` is JSON (data position, metrics)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    final = output_dir / f"checkpoint-{step:08d}"
    tmp = output_dir / f".tmp-checkpoint-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        save_file(trainable_state(model), str(tmp / "model.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(rng_state(), tmp / "rng.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, **state}, indent=2))
        _fsync_tree(tmp)
        replace_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for old in list_checkpoints(output_dir)[:-keep]:
        remove_dir(old)
    return final


def load_checkpoint(folder: Path, model, optimizer, scheduler) -> dict:
    """Restore a checkpoint into live objects; returns its state.json.

    A checkpoint of another model, or one damaged after it was written, is a UserError naming the folder.
    """
    try:
        weights = load_file(str(folder / "model.safetensors"))
        states = [torch.load(folder / name, weights_only=True) for name in ("optimizer.pt", "scheduler.pt", "rng.pt")]
        state = json.loads((folder / "state.json").read_text())
    except Exception as exc:  # truncated or foreign files: safetensors, pickle-free torch.load and JSON errors
        raise UserError(f"checkpoint {folder} cannot be read ({type(exc).__name__}: {exc}); delete it to resume "
                        "from an earlier checkpoint") from None
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in weights]
    wrong = [n for n, v in weights.items() if n not in params or params[n].shape != v.shape]
    if missing or wrong:
        raise UserError(f"checkpoint {folder} does not fit this model (missing: {missing[:3]}, other shape or "
                        f"unknown: {wrong[:3]}); was it written by another model or LoRA setting? Resume with the "
                        "run's own settings or choose another output_dir")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    optimizer.load_state_dict(states[0])
    scheduler.load_state_dict(states[1])
    restore_rng(states[2])
    return state


def clean_temporaries(output_dir) -> None:
    for tmp in Path(output_dir).glob(".tmp-*"):
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)


def is_sharded(accelerator) -> bool:
    """FSDP and DeepSpeed shard weights and optimizer state across processes: accelerate must save them."""
    from accelerate.utils import DistributedType

    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


def save_sharded_checkpoint(accelerator, output_dir, step: int, scheduler, state: dict, keep: int = 2) -> Path:
    """The sharded counterpart of save_checkpoint: every process writes its shards through accelerate's
    save_state into one temporary folder, then the main process adds our state and renames it into place."""
    output_dir = Path(output_dir)
    tmp = output_dir / f".tmp-checkpoint-{step:08d}"  # the same name on every process
    final = output_dir / f"checkpoint-{step:08d}"
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, "sharded": True, **state}, indent=2))
        replace_dir(tmp, final)
        for old in list_checkpoints(output_dir)[:-keep]:
            remove_dir(old)
    accelerator.wait_for_everyone()
    return final


def load_sharded_checkpoint(accelerator, folder: Path, scheduler) -> dict:
    accelerator.load_state(str(folder))
    scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))
    return json.loads((folder / "state.json").read_text())
