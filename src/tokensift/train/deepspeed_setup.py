"""DeepSpeed (ZeRO 1-3) under accelerate: the config values tokensift owns, and the LM head under ZeRO-3.

tokensift drives the DeepSpeed engine itself rather than through `accelerator.backward`, which would step the
engine after every micro-batch: each micro-batch's backward marks whether it ends the accumulation window,
its loss is already weighted by its share of the global batch (so DeepSpeed must not divide it again), and
`engine.step()` runs once per optimizer step. DeepSpeed clips the gradient norm and skips a step whose
gradients are not finite (it reports an infinite norm; the loop then stops or counts the skip).

ZeRO-3 partitions every weight and gathers a module's weights only around that module's forward. tokensift
evaluates the LM head outside the head module (only at the positions a loss reads, see logprobs.py), so the
head weight is registered as an "external parameter" of the module accelerate wraps: DeepSpeed then gathers
it for that module's whole forward and again for its backward. Only the trained model is partitioned: frozen
models run outside the engine, each process on its own rows, so they load whole (`models.load_model`).
"""

from __future__ import annotations

import math

from tokensift.errors import UserError


def is_deepspeed(accelerator) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.DEEPSPEED


def zero_stage(accelerator) -> int | None:
    return accelerator.state.deepspeed_plugin.zero_stage if is_deepspeed(accelerator) else None


def _fill(ds: dict, key: str, value, why: str) -> None:
    """Set a DeepSpeed value tokensift owns; a different number already there is a contradiction."""
    present = ds.get(key)
    if present in (None, "auto") or (isinstance(present, (int, float)) and math.isclose(present, value)):
        ds[key] = value
        return
    raise UserError(f"the DeepSpeed config sets {key}={present}, but tokensift's {why} gives {value}; set them "
                    f"equal (or '{key}: auto' in the DeepSpeed config)")


def configure(accelerator, config) -> None:
    """Write batch size, accumulation and clipping into the DeepSpeed config before `accelerator.prepare`."""
    if not is_deepspeed(accelerator):
        return
    ds = accelerator.state.deepspeed_plugin.deepspeed_config
    _fill(ds, "train_micro_batch_size_per_gpu", config.batch_size, "batch_size")
    _fill(ds, "gradient_accumulation_steps", config.grad_accum, "grad_accum")
    _fill(ds, "train_batch_size", config.batch_size * config.grad_accum * accelerator.num_processes,
          "batch_size x grad_accum x processes")
    _fill(ds, "gradient_clipping", float(max(config.max_grad_norm, 0.0)), "max_grad_norm (0 = no clipping)")
    ds.setdefault("zero_allow_untested_optimizer", True)  # torch's AdamW, which DeepSpeed wraps per stage
    if zero_stage(accelerator) == 3:
        # The final model is written once, gathered; without this accelerate refuses to gather ZeRO-3 weights.
        ds.setdefault("zero_optimization", {})["stage3_gather_16bit_weights_on_model_save"] = True


def register_head(wrapper, model) -> None:
    """Under ZeRO-3, let the module accelerate wraps gather the LM head weight (used outside the head module)."""
    from deepspeed.runtime.zero import register_external_parameter

    from tokensift.head import unwrap

    head = unwrap(model).get_output_embeddings()
    for param in head.parameters():
        register_external_parameter(wrapper, param)

