"""The model's own attention on tokensift's packed layouts.

A packed layout puts tokens that must not see each other in one sequence: `[prompt | chosen | rejected]`, where
the rejected response sees the prompt but not the chosen one and continues the prompt's positions as if the
chosen one were not there (data/positions.py gives every token its logical position and branch). What each layer
must compute is the model's own attention on the unpacked sequence: causal, or a sliding window, or chunks, or
whatever the architecture's mask code says, per layer type (Gemma-2/3 alternate local and global layers, Qwen2
windows only its upper layers, Mistral and Phi-3 window every layer).

We get exactly that by letting the model build its masks itself. During a packed forward, transformers' mask
builder for the model's attention implementation (`sdpa`, `eager` or `flex_attention`) is wrapped: the mask
function the model hands it, which encodes its own semantics for that layer type, is evaluated on the tokens'
logical positions instead of their places in the row, and combined with the layout's visibility rule. The
builder then produces the implementation's format as usual (boolean for sdpa, additive for eager, a BlockMask
for flex attention). Soft-capping, scaling and sinks live in the attention kernel, which is the model's own.

Refused, with one log line per model, so the unpacked path runs instead (never a different mask):
- attention implementations that take no mask (flash-attention: `position_ids` packing only);
- recurrent or state-space layers (Mamba, linear attention, short convolutions ...): their state runs through
  the packed order, which no mask can undo;
- layer types other than full, sliding or chunked attention;
- a model whose forward never asked the mask builder for a mask (checked on every packed forward).
"""

from __future__ import annotations

import contextlib
import logging
import weakref

import torch

log = logging.getLogger(__name__)

MASKED_IMPLEMENTATIONS = ("sdpa", "eager", "flex_attention")
ATTENTION_LAYER_TYPES = {"full_attention", "sliding_attention", "chunked_attention"}
RECURRENT_MARKERS = ("Mamba", "GatedDeltaNet", "LinearAttention", "ShortConv", "RecurrentBlock", "Rwkv", "SSM",
                     "Lightning", "DeltaNet")
_refusals: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class PackingRefused(RuntimeError):
    """A packed forward could not use the model's own attention; the caller runs the pairs unpacked."""


def text_config(model):
    config = model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def _refusal(model) -> str | None:
    config = text_config(model)
    implementation = getattr(config, "_attn_implementation", None)
    if implementation not in MASKED_IMPLEMENTATIONS:
        return f"attention implementation '{implementation}' takes no custom mask"
    unknown = sorted(set(getattr(config, "layer_types", None) or []) - ATTENTION_LAYER_TYPES)
    if unknown:
        return f"layer types {', '.join(unknown)} are not attention"
    recurrent = sorted({type(m).__name__ for m in model.modules()
                        if any(marker in type(m).__name__ for marker in RECURRENT_MARKERS)})
    if recurrent:
        return f"recurrent layers ({', '.join(recurrent[:3])}) carry state through the packed order"
    return None


def packing_refusal(model) -> str | None:
    """Why packed pairs cannot run on `model` (None: they can); the first refusal per model is logged."""
    try:
        if model in _refusals:
            return _refusals[model]
    except TypeError:
        return _refusal(model)
    reason = _refusal(model)
    refuse(model, reason)
    return reason


def refuse(model, reason: str | None) -> None:
    if reason is not None:
        log.info("shared-prompt packing is off for %s: %s; its pairs run unpacked (exact, slower)",
                 type(model).__name__, reason)
    with contextlib.suppress(TypeError):
        _refusals[model] = reason


def layout_mask(positions: torch.Tensor, branch: torch.Tensor, segment: torch.Tensor | None):
    """The layout's visibility composed with a model's mask function, on logical positions.

    positions, branch, segment: [B, T] (data/positions.py). Key k is visible to query q when both are in the same
    segment and k is in the prompt (branch 0) or in q's own branch; what else the layer allows (causality, its
    window ...) is the model's `mask_function`, evaluated on logical positions.
    """

    def compose(mask_function):
        def packed(batch_idx, head_idx, q_idx, kv_idx):
            q_branch, k_branch = branch[batch_idx, q_idx], branch[batch_idx, kv_idx]
            visible = (k_branch == 0) | (k_branch == q_branch)
            if segment is not None:
                visible = visible & (segment[batch_idx, q_idx] == segment[batch_idx, kv_idx])
            own = mask_function(batch_idx, head_idx, positions[batch_idx, q_idx], positions[batch_idx, kv_idx])
            return (visible & own) | (q_idx == kv_idx)  # every row keeps its own token: no all-masked rows

        return packed

    return compose


def additive_on_cpu(mask, dtype):
    """A boolean sdpa mask on CPU as the additive float mask sdpa would make of it, made once per forward.

    CPU sdpa converts a boolean mask to a float one in every layer and keeps each copy for the backward pass: 30
    layers of `[rows, 1, T, T]` floats (94 MB for 7 rows of 334 tokens, four times that at twice the length). Every
    row keeps its own token (layout_mask), so no row is all masked and the lowest float gives the same
    probabilities as -inf. Left as it is under autocast (sdpa would see another dtype than the queries') and on GPUs.
    """
    if (not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.device.type != "cpu"
            or dtype not in (torch.float32, torch.float64) or torch.is_autocast_enabled("cpu")):
        return mask
    return torch.zeros(mask.shape, dtype=dtype).masked_fill_(~mask, torch.finfo(dtype).min)


def _checkpointed(model) -> bool:
    """Whether whole layers are recomputed in the backward pass. The recomputation runs outside any context this
    module sets, so it would repeat the keys that the forward passed grouped (a CheckpointError on shapes); and
    checkpointed layers store no keys anyway."""
    flag = getattr(model, "is_activation_checkpointing", None)
    if flag is None:
        flag = getattr(model, "is_gradient_checkpointing", False)
    return bool(flag)


@contextlib.contextmanager
def grouped_keys_on_cpu(model):
    """While active, transformers' sdpa passes grouped-query keys and values to CPU sdpa as they are.

    With a mask, transformers repeats each key/value head for every query head it serves (`repeat_kv`) before
    sdpa, because the CUDA kernels that take a mask cannot group queries. CPU sdpa (flash) can: with
    `enable_gqa` it reads the shared heads directly, so the backward pass stores keys and values at their own
    head count (the default model: 3 heads, not 9) and no repeated copy is made. Same outputs; the keys' and
    values' gradients sum the groups inside the kernel (1e-6 apart in fp32). Only for a model on the CPU, and not
    under whole-layer gradient checkpointing (_checkpointed).
    """
    from transformers.integrations import sdpa_attention

    original = getattr(sdpa_attention, "use_gqa_in_sdpa", None)
    first = next(model.parameters(), None)
    if original is None or first is None or first.device.type != "cpu" or _checkpointed(model):
        yield
        return

    def grouped(attention_mask, key, value, *args, **kwargs):
        if key.device.type == "cpu" and key.shape[-1] == value.shape[-1]:
            return True
        return original(attention_mask, key, value, *args, **kwargs)

    sdpa_attention.use_gqa_in_sdpa = grouped
    try:
        yield
    finally:
        sdpa_attention.use_gqa_in_sdpa = original


@contextlib.contextmanager
def own_attention(model, positions: torch.Tensor, branch: torch.Tensor, segment: torch.Tensor | None = None):
    """While active, every mask `model` builds is its own, on the layout's logical positions (module doc).

    The forward must pass a 2D all-ones `attention_mask` (not None: transformers would then read the position
    jumps of the rejected branch as new sequences). Raises PackingRefused when no mask was built.
    """
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    implementation = text_config(model)._attn_implementation
    builder = ALL_MASK_ATTENTION_FUNCTIONS[implementation]
    had_local = implementation in ALL_MASK_ATTENTION_FUNCTIONS._local_mapping
    compose = layout_mask(positions, branch, segment)
    calls = []

    def packed_builder(*args, **kwargs):
        kwargs["mask_function"] = compose(kwargs["mask_function"])
        kwargs["allow_is_causal_skip"] = False  # the mask is never plain causal
        calls.append(1)
        mask = builder(*args, **kwargs)
        if implementation == "sdpa":
            mask = additive_on_cpu(mask, kwargs.get("dtype"))
        return mask

    ALL_MASK_ATTENTION_FUNCTIONS[implementation] = packed_builder
    grouped = grouped_keys_on_cpu(model) if implementation == "sdpa" else contextlib.nullcontext()
    try:
        with grouped:
            yield
    finally:
        if had_local:
            ALL_MASK_ATTENTION_FUNCTIONS[implementation] = builder
        else:
            del ALL_MASK_ATTENTION_FUNCTIONS[implementation]
    if not calls:
        raise PackingRefused("its forward built no attention mask")
