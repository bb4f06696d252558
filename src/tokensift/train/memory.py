"""`gradient_checkpointing` left unset: on only when a step's stored activations would not fit without it.

Without checkpointing a step keeps, per position and layer, the tensors the backward pass reads (after selective
recomputation: the layer's input, queries, keys, values, the attention output, the MLP's input projections): about
1.15 MB per position at the Qwen2.5-0.5B shape in fp32 (measured, BENCHMARKS.md "Real model shapes"), so one pair of
two 4,096-token sequences stores about 9 GB. Whole-layer checkpointing keeps one hidden-size tensor per layer instead
and costs about a fifth of the step. Unset, the trainer estimates, before it loads the model, the activations of its
largest micro-batch and the memory the training state will take (weights, gradients, AdamW moments), and turns
checkpointing on when the activations would not fit in what the device has left (with a margin). `true` / `false`
decide without estimating. Sharded runs (FSDP, DeepSpeed) keep their own settings: unset means off there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

HEADROOM = 0.8  # the share of the memory left after the training state that activations may take
# A step's peak holds more than the tensors stored for backward: the activations' own gradients, the attention's
# and the head's temporaries, and the allocator's free blocks. Measured all-in at the Qwen2.5-0.5B shape on the
# CPU: 1.5 MB (1,024 tokens) and 1.8 MB (2,048 tokens) per position above the training state, where the stored
# tensors account for 1.39 MB (BENCHMARKS.md, "Real model shapes"): so the estimate is taken 1.5 times.
OVERHEAD = 1.5


@dataclass
class CheckpointingChoice:
    on: bool
    reason: str


def stored_floats_per_layer(config) -> int:
    """Activations one layer stores per position for its backward pass, in elements (an upper estimate)."""
    hidden = config.hidden_size
    heads = getattr(config, "num_attention_heads", 1) or 1
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    intermediate = getattr(config, "intermediate_size", None) or 4 * hidden
    # layer input, the MLP's input and output residual; queries and the attention output; keys and values;
    # the gated MLP's two input projections
    return 3 * hidden + 2 * heads * head_dim + 2 * kv_heads * head_dim + 2 * intermediate


def activation_bytes(config, positions: int, dtype: str) -> int:
    """What the stored tensors of `positions` positions take (no overhead)."""
    width = 2 if dtype in ("bfloat16", "float16") else 4
    return positions * config.num_hidden_layers * stored_floats_per_layer(config) * width


def largest_micro_batch(run_tokens: list[int], batch_size: int, max_tokens: int | None) -> int:
    """Positions of the largest micro-batch any step can draw (an upper bound)."""
    sizes = sorted(run_tokens, reverse=True)
    if not sizes:
        return 0
    if max_tokens:
        return max(max_tokens, sizes[0])
    return sum(sizes[:batch_size])


def available_bytes(device) -> int | None:
    """Memory the process can still take on `device`: free CUDA memory, or the machine's MemAvailable."""
    import torch

    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    free = _proc_field("/proc/meminfo", "MemAvailable:")
    if free is None:
        return None
    import resource

    limit = resource.getrlimit(resource.RLIMIT_AS)[0]  # an address-space limit (ulimit -v) binds first
    used = _proc_field("/proc/self/status", "VmSize:")
    if limit != resource.RLIM_INFINITY and used is not None:
        free = min(free, limit - used)
    return free


def _proc_field(path: str, name: str) -> int | None:
    """A `kB` field of a /proc file, in bytes."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(name):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def parameter_count(model_config) -> int:
    import torch
    import transformers

    with torch.device("meta"):
        return sum(p.numel() for p in transformers.AutoModelForCausalLM.from_config(model_config).parameters())


def choose_checkpointing(train_config, model_config, run_tokens: list[int], device, sharded: bool,
                         loaded_parameters: int | None = None) -> CheckpointingChoice:
    """What `gradient_checkpointing` unset means for this run (module doc). `loaded_parameters`: the policy is an
    object already in memory (the Python API): its weights are no longer to come."""
    setting = train_config.gradient_checkpointing
    if setting is not None:
        return CheckpointingChoice(bool(setting), "set")
    if sharded:
        return CheckpointingChoice(False, "unset under FSDP/DeepSpeed: off")
    text = getattr(model_config, "get_text_config", lambda: model_config)()
    if not hasattr(text, "num_hidden_layers") or not hasattr(text, "hidden_size"):
        return CheckpointingChoice(False, "unset: off (the model's configuration gives no layer sizes)")
    free = available_bytes(device)
    if free is None:
        return CheckpointingChoice(False, "unset: off (the device's free memory is unknown)")
    positions = largest_micro_batch(run_tokens, train_config.batch_size, train_config.max_tokens_per_batch)
    need = OVERHEAD * activation_bytes(text, positions, train_config.dtype)
    params = loaded_parameters if loaded_parameters is not None else parameter_count(model_config)
    adapters = train_config.lora or train_config.qlora
    # fp32 masters: gradients and two AdamW moments (12 bytes) per trained parameter, plus the weights to load
    state = 0 if adapters else 12 * params
    if loaded_parameters is None:
        state += params * (2 if adapters and train_config.dtype != "float32" else 4)
    budget = HEADROOM * (free - state)
    gib = 2**30
    detail = (f"largest micro-batch {positions:,} positions: about {need / gib:.1f} GiB of activations; "
              f"{free / gib:.1f} GiB free, {state / gib:.1f} GiB of it for the training state")
    if need > budget:
        return CheckpointingChoice(True, f"unset: on ({detail})")
    return CheckpointingChoice(False, f"unset: off ({detail})")


def checkpointing_for(train_config, model, run_tokens: list[int], device, sharded: bool) -> CheckpointingChoice:
    """choose_checkpointing for a run that loads `train_config.model` by name, or trains `model` (an object)."""
    if train_config.gradient_checkpointing is not None:
        return CheckpointingChoice(bool(train_config.gradient_checkpointing), "set")
    if model is not None:
        return choose_checkpointing(train_config, model.config, run_tokens, device, sharded,
                                    sum(p.numel() for p in model.parameters()))
    from tokensift.models import load_config

    model_config = load_config(train_config.model, trust_remote_code=train_config.trust_remote_code)
    return choose_checkpointing(train_config, model_config, run_tokens, device, sharded)
