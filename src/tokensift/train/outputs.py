"""What a run leaves behind: the final model, ready to publish as it is.

final/ holds the weights (safetensors; LoRA runs: merged, with the adapter in adapter/), the tokenizer, a
generation_config.json that stops at the chat template's turn end (so the published model stops where every
training response ended), the model card README.md (train/card.py) and run_card.json (the machine-readable record).
"""

from __future__ import annotations

import dataclasses
import platform
import shutil
import sys
import uuid
from pathlib import Path

from tokensift.data.chat_format import ChatFormat
from tokensift.fsutil import replace_dir, write_json_atomic
from tokensift.train.card import training_card

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


def save_gathered(folder: Path, model, state_dict: dict | None, config) -> None:
    """The final model from a state dict gathered off FSDP / DeepSpeed shards (the live model stays sharded), or
    of a QLoRA run (state_dict None).

    LoRA: the adapter is written from the gathered weights, then merged into a whole copy of the base model
    loaded on this process, so that the folder holds what a one-process run writes (merged model + adapter/).
    For QLoRA that copy is loaded unquantized, in the run's dtype: the published weights load without
    bitsandbytes (merging into the 4-bit base would write 4-bit weights).
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


def write_generation_config(folder: Path, tokenizer) -> list[int]:
    """generation_config.json whose eos_token_id lists the chat template's turn end (then EOS): transformers,
    vLLM and the hub's widgets stop there. Keeps what save_pretrained wrote from the model's own generation
    config (sampling defaults); returns the stop ids."""
    from transformers import GenerationConfig

    try:
        generation = GenerationConfig.from_pretrained(folder)
    except OSError:  # the model had no generation config
        generation = GenerationConfig()
    stop_ids = ChatFormat.of(tokenizer).stop_ids
    generation.eos_token_id = list(stop_ids)
    if tokenizer.pad_token_id is not None:
        generation.pad_token_id = tokenizer.pad_token_id
    if tokenizer.bos_token_id is not None:
        generation.bos_token_id = tokenizer.bos_token_id
    generation.save_pretrained(folder)
    return list(stop_ids)


def save_final(folder: Path, model, tokenizer, config, data, steps: int, train_metrics: dict, eval_metrics,
               seconds: float, state_dict: dict | None = None) -> None:
    """save_pretrained (safetensors) + tokenizer + generation_config.json + run_card.json + the model card
    README.md, written to a temp folder and renamed; then uploaded when the config asks (push_to_hub).

    LoRA runs save the merged model (so every later stage loads a plain model) and the adapter beside it.
    """
    folder = Path(folder)
    tmp = folder.with_name(f".tmp-{folder.name}-{uuid.uuid4().hex}")
    tmp.mkdir(parents=True)
    try:
        if state_dict is not None or getattr(config, "qlora", False):  # gathered shards, or a 4-bit base
            save_gathered(tmp, model, state_dict, config)
        else:
            if hasattr(model, "merge_and_unload"):
                model.save_pretrained(tmp / "adapter", safe_serialization=True)
                model = model.merge_and_unload()
            model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        stop_ids = write_generation_config(tmp, tokenizer)
        extra = {k: v for k, v in data.extra_meta.items() if k != "model_objects"}
        card = {
            "kind": "tokensift training run",
            "loss": config.loss,
            "steps": steps,
            "seconds": round(seconds, 2),
            "config": dataclasses.asdict(config),
            "data": {"train": data.train.source, "train_fingerprint": data.train.fingerprint,
                     "train_pairs": len(data.train.pairs), "notes": data.train.notes,
                     "eval_pairs": len(data.eval.pairs) if data.eval else 0, **extra},
            "final_train_metrics": train_metrics,
            "final_eval_metrics": eval_metrics,
            "versions": versions(),
        }
        if data.extra_meta.get("model_objects"):  # models handed over as Python objects (given.py)
            card["model_objects"] = data.extra_meta["model_objects"]
        write_json_atomic(tmp / "run_card.json", card)
        (tmp / "README.md").write_text(training_card(config, data, steps, train_metrics, eval_metrics, card["versions"],
                                                     stop_ids), encoding="utf-8")
        replace_dir(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if getattr(config, "push_to_hub", False):
        from tokensift.train.hub import push_final

        push_final(folder, config, f"{config.loss} training, {steps} steps")
