"""What a run leaves behind: a checked output folder, the final model, and a run card."""

from __future__ import annotations

import dataclasses
import platform
import shutil
import sys
import uuid
from pathlib import Path

from tokensift.fsutil import replace_dir, write_json_atomic

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
