"""Selective recomputation: recompute the cheap activations in the backward pass instead of storing them.

Most of what a decoder layer stores for its backward pass is elementwise: the normalised copies inside each
RMSNorm/LayerNorm, and the gated MLP's `act(gate)` and `act(gate) * up` (two tensors of the intermediate size,
typically 2.7-3.5x the hidden size, per position). Recomputing them costs elementwise work plus the MLP's down
projection, a few percent of a step, where full gradient checkpointing recomputes every layer (~20-30%). Measured on
the default model: activations fall by about a third (BENCHMARKS.md, "Peak memory").

Each norm runs inside a non-reentrant checkpoint (it keeps its input, recomputes the rest); each gated MLP keeps
its input projections' outputs and recomputes `down(act(gate) * up)`. The ops are the model's own, in the same
order, so results and gradients are bit-identical. An MLP is only rewired after a probe shows that the rewired
forward gives exactly the module's own output, so an MLP with another structure is left as it is.
"""

from __future__ import annotations

import functools

import torch
from torch.utils.checkpoint import checkpoint


def _needs_graph(module: torch.nn.Module, *tensors: torch.Tensor) -> bool:
    if not torch.is_grad_enabled():
        return False
    return any(t.requires_grad for t in tensors) or any(p.requires_grad for p in module.parameters())


def _norm_forward(module, original, hidden, *args, **kwargs):
    if args or kwargs or not _needs_graph(module, hidden):
        return original(hidden, *args, **kwargs)
    return checkpoint(original, hidden, use_reentrant=False)


def _activation(mlp):
    return getattr(mlp, "act_fn", None) or mlp.activation_fn  # Phi-3 names it activation_fn


def _gated_tail(mlp, gate, up):
    return mlp.down_proj(_activation(mlp)(gate) * up)


def _split_tail(mlp, gate_up):
    gate, up = gate_up.chunk(2, dim=-1)
    return mlp.down_proj(up * _activation(mlp)(gate))


def _tail_and_inputs(mlp, hidden):
    """The recomputed tail and what it keeps: the input projections' outputs."""
    if hasattr(mlp, "gate_up_proj"):  # Phi-3: one projection, split in two
        return _split_tail, (mlp, mlp.gate_up_proj(hidden))
    return _gated_tail, (mlp, mlp.gate_proj(hidden), mlp.up_proj(hidden))


def _mlp_forward(mlp, original, hidden, *args, **kwargs):
    if args or kwargs or not _needs_graph(mlp, hidden):
        return original(hidden, *args, **kwargs)
    tail, inputs = _tail_and_inputs(mlp, hidden)
    return checkpoint(tail, *inputs, use_reentrant=False)


def is_norm(module: torch.nn.Module) -> bool:
    return isinstance(module, torch.nn.LayerNorm) or type(module).__name__.endswith("RMSNorm")


def is_gated_mlp(module: torch.nn.Module) -> bool:
    if not (hasattr(module, "down_proj") and (hasattr(module, "act_fn") or hasattr(module, "activation_fn"))):
        return False
    return hasattr(module, "gate_up_proj") or (hasattr(module, "gate_proj") and hasattr(module, "up_proj"))


def _probe_input(mlp) -> torch.Tensor | None:
    projection = getattr(mlp, "gate_up_proj", None) or mlp.gate_proj
    weight = getattr(projection, "weight", None)
    if weight is None or weight.device.type == "meta" or weight.dim() != 2 or not weight.is_floating_point():
        return None
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 3, weight.shape[1], generator=generator, dtype=torch.float32)
    return sample.to(device=weight.device, dtype=weight.dtype)


def _same_function(mlp, original) -> bool:
    """Whether `original` (the MLP's own forward) computes exactly the rewired tail on a probe input."""
    sample = _probe_input(mlp)
    if sample is None:
        return False
    try:
        with torch.no_grad():
            own = original(sample)
            tail, inputs = _tail_and_inputs(mlp, sample)
            tail = tail(*inputs)
    except Exception:  # a quantised or otherwise unusual module: keep its own forward
        return False
    return isinstance(own, torch.Tensor) and own.shape == tail.shape and torch.equal(own, tail)


def enable_selective_recompute(model: torch.nn.Module) -> dict[str, int]:
    """Rewire `model`'s norms and gated MLPs in place; returns how many of each were rewired (and MLPs kept)."""
    counts = {"norms": 0, "mlps": 0, "mlps_kept": 0}
    for module in model.modules():
        if getattr(module, "_tokensift_recompute", False):
            continue
        original = module.forward
        if is_norm(module) and not list(module.children()):
            module.forward = functools.partial(_norm_forward, module, original)
            counts["norms"] += 1
        elif is_gated_mlp(module):
            if not _same_function(module, original):
                counts["mlps_kept"] += 1
                continue
            module.forward = functools.partial(_mlp_forward, module, original)
            counts["mlps"] += 1
        else:
            continue
        module._tokensift_recompute = True
    return counts
