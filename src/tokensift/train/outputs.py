"""What a run leaves behind: a checked output folder, the final model, and a run card."""

from __future__ import annotations

import dataclasses
import platform
import shutil
import sys
import uuid
from pathlib import Path

from tokensift.errors import UserError
from tokensift.fsutil import replace_dir, write_json_atomic

MIN_FREE_BYTES = 256 << 20


def check_output_dir(path: Path, create: bool = True, min_free_bytes: int = MIN_FREE_BYTES) -> None:
    """Fail before any work starts when the output folder cannot be written or its disk is nearly full."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"output_dir {path} exists and is a file, not a folder")
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create output_dir {path}: {exc.strerror}") from None
    probe = path / f".write-test-{uuid.uuid4().hex}"
    try:
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"output_dir {path} is not writable: {exc.strerror}") from None
    free = shutil.disk_usage(path).free
    if free < min_free_bytes:
        raise UserError(
            f"output_dir {path} has only {free / 2**20:.0f} MiB free; at least {min_free_bytes / 2**20:.0f} MiB "
            "are needed for checkpoints and the final model"
        )


def versions() -> dict:
    import accelerate
    import torch
    import transformers

    from tokensift import __version__

    return {"tokensift": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "accelerate": accelerate.__version__, "python": sys.version.split()[0], "platform": platform.platform()}


def share_tied(state_dict: dict, model) -> dict:
    """Gathered shards arrive as separate tensors: alias tied weights again (embeddings and LM head), so that
    save_pretrained, which finds ties by shared storage, writes them once."""
    state_dict = dict(state_dict)
    first: dict[int, str] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        owner = first.setdefault(id(param), name)
        if owner != name and owner in state_dict and name in state_dict:
            state_dict[name] = state_dict[owner]
    return state_dict


def save_gathered(folder: Path, model, state_dict: dict, config) -> None:
    """The final model from a state dict gathered off FSDP / DeepSpeed shards (the live model stays sharded).

    LoRA: the adapter is written from the gathered weights, then merged into a whole copy of the base model
    loaded on this process, so that the folder holds what a one-process run writes (merged model + adapter/).
    """
    if not hasattr(model, "merge_and_unload"):
        model.save_pretrained(folder, safe_serialization=True, state_dict=share_tied(state_dict, model))
        return
    from peft import PeftModel

    from tokensift.models import load_model

    model.save_pretrained(folder / "adapter", safe_serialization=True, state_dict=state_dict)
    base = load_model(config.model, dtype=config.dtype, trust_remote_code=config.trust_remote_code)
    PeftModel.from_pretrained(base, folder / "adapter").merge_and_unload().save_pretrained(
        folder, safe_serialization=True)


def save_final(folder: Path, model, tokenizer, config, data, steps: int, train_metrics: dict, eval_metrics,
               seconds: float, state_dict: dict | None = None) -> None:
    """save_pretrained (safetensors) + tokenizer + run_card.json, written to a temp folder and renamed.

    LoRA runs save the merged model (so every later stage loads a plain model) and the adapter beside it.
    """
    folder = Path(folder)
    tmp = folder.with_name(f".tmp-{folder.name}-{uuid.uuid4().hex}")
    tmp.mkdir(parents=True)
    try:
        if state_dict is not None:  # gathered from FSDP / DeepSpeed shards
            save_gathered(tmp, model, state_dict, config)
        else:
            if hasattr(model, "merge_and_unload"):
                model.save_pretrained(tmp / "adapter", safe_serialization=True)
                model = model.merge_and_unload()
            model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        card = {
            "kind": "tokensift training run",
            "loss": config.loss,
            "steps": steps,
            "seconds": round(seconds, 2),
            "config": dataclasses.asdict(config),
            "data": {"train": data.train.source, "train_fingerprint": data.train.fingerprint,
                     "train_pairs": len(data.train.pairs), "notes": data.train.notes,
                     "eval_pairs": len(data.eval.pairs) if data.eval else 0, **data.extra_meta},
            "final_train_metrics": train_metrics,
            "final_eval_metrics": eval_metrics,
            "versions": versions(),
        }
        write_json_atomic(tmp / "run_card.json", card)
        replace_dir(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
