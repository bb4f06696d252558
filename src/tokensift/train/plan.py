"""The preflight of a training stage (`tokensift train|dpo|sft|oracle --check`, and each training stage of the SePO
pipeline): what the run would do, from the same checks it makes before its first step, with no weights loaded."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from tokensift.fsutil import check_writable
from tokensift.preflight import Plan, check_tokenizer, locate_model
from tokensift.train.config import TrainConfig
from tokensift.train.run_folder import folder_state


def world_size() -> int:
    """Processes a launcher started (accelerate launch, torchrun), 1 otherwise."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def describe_folder(config: TrainConfig) -> tuple[str, str]:
    """(state, what the run does with its output_dir): the run's own checks, without changing anything."""
    from tokensift.train.checkpoint import latest_checkpoint
    from tokensift.train.run_folder import has_run

    check_writable(config.output_dir)
    state = folder_state(config)
    folder = Path(config.output_dir)
    if state == "done":
        return state, f"{folder}: finished with these settings; kept, nothing is trained (overwrite=true trains again)"
    if state == "resume":
        found = latest_checkpoint(folder)
        return state, f"{folder}: continues the run there from {found.name if found else 'its start (no checkpoint yet)'}"
    if config.overwrite and folder.is_dir() and has_run(folder):
        return state, f"{folder}: overwrite=true: the run there is replaced"
    return state, f"{folder}: a new run"


def plan_training(config: TrainConfig, data: Callable | None = None, stage: str = "train") -> Plan:
    """The plan of a training run; `data(config, tokenizer) -> TrainData` is what the run trains on (default: the
    pairs of config.data). Raises the UserError the run would stop on."""
    from tokensift.models import same_tokenizer
    from tokensift.train.data import Schedule, load_training_data
    from tokensift.train.hub import check_hub

    plan = Plan(stage)
    spec = config.loss_spec
    selector = config.active_selector
    plan.add("loss", f"{config.loss}: {spec.summary}" + (f"; tokens from selector {selector}" if selector != "none"
                                                         else ""))
    state, folder_text = describe_folder(config)
    plan.add("output_dir", folder_text)
    check_hub(config)
    if state == "done":
        return plan
    model = locate_model(config.model)
    plan.add("model", f"{config.model}: {model.description}" + (f" ({model.shape()})" if model.shape() else ""))
    tokenizer = check_tokenizer(model, config.trust_remote_code)
    reference = None
    if spec.needs_reference and config.reference not in (None, config.model):
        reference = locate_model(config.reference)
        if not same_tokenizer(tokenizer, check_tokenizer(reference, config.trust_remote_code)):
            from tokensift.train.loop import check_reference_tokenizer

            check_reference_tokenizer(config, tokenizer)  # the run's own error
        plan.add("reference", f"{config.reference}: {reference.description}")
    elif spec.needs_reference:
        plan.add("reference", f"{config.model} itself (the starting model)")
    built = (data or load_training_data)(config, tokenizer)
    train, held = built.train.pairs, (built.eval.pairs if built.eval else [])
    plan.add("data", f"{built.train.source}: {len(train):,} training pairs, {len(held):,} held out")
    for note in built.train.notes:
        plan.add("", note)
    world = world_size()
    per_step = config.batch_size * config.grad_accum * world
    schedule = Schedule(len(train), per_step, config.seed, config.epochs, config.max_steps)
    epochs = schedule.total_steps / max(schedule.steps_per_epoch, 1)
    plan.add("steps", f"{schedule.total_steps:,} optimizer step{'s' if schedule.total_steps != 1 else ''} of "
                      f"{per_step} pairs (batch_size {config.batch_size}"
                      f" x grad_accum {config.grad_accum} x {world} process{'es' if world > 1 else ''}), "
                      f"{epochs:.3g} epoch{'s' if epochs != 1 else ''}")
    tokens = [_run_tokens(spec, config, p) for p in train]
    if tokens:
        plan.add("tokens", f"{sum(tokens):,} per epoch as the model runs them"
                           f"{' (each prompt once)' if spec.pairwise and config.share_prompt else ''}; longest pair "
                           f"{max(tokens):,}, mean {sum(tokens) / len(tokens):,.0f}")
    if spec.reference == "cached" or built.reference_tokens:
        plan.add("reference pass", _reference_cache(config, built, tokenizer, reference or model))
    elif spec.reference == "live":
        plan.add("reference", "a frozen copy runs beside the policy at every step (live reference)")
    return plan


def _run_tokens(spec, config: TrainConfig, pair) -> int:
    if not spec.pairwise:
        return len(pair.prompt_ids) + len(pair.chosen_ids)
    return pair.num_tokens - (len(pair.prompt_ids) if config.share_prompt else 0)


def _reference_cache(config: TrainConfig, built, tokenizer, location) -> str:
    """How many pairs the reference pass before step 1 computes, from the same cache key the run uses."""
    from tokensift.models import model_fingerprint
    from tokensift.train.loop import reference_meta
    from tokensift.train.ref_cache import ReferenceLogpCache

    pairs = [p for part in (built.train, built.eval) if part is not None for p in part.pairs]
    if location.folder is None:
        return f"{len(pairs):,} pairs computed once before step 1 (the model is fetched or converted first)"
    fp = model_fingerprint(location.folder)
    missing = 0
    for part in (built.train, built.eval):
        if part is not None and part.pairs:
            cache = ReferenceLogpCache(reference_meta(config, part, tokenizer, fp), config.ref_cache_dir)
            missing += len(cache.missing(part.pairs))
    if not missing:
        return f"all {len(pairs):,} pairs cached already ({cache.store.folder.parent}); nothing to compute"
    cached = len(pairs) - missing
    return (f"{missing:,} pairs computed once before step 1 (no-grad, ref_batch_size {config.ref_batch_size})"
            + (f"; {cached:,} cached already" if cached else ""))
