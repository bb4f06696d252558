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

A norm's output is also what the projections after it (q/k/v, gate/up) keep for their weight gradients: one more
hidden-size tensor per norm. Inside the modules that hold the norms (the decoder layers), a saved-tensor hook
keeps, for such a tensor, only a note of the norm and its input (which the norm's checkpoint keeps anyway), and the
backward pass recomputes the norm once for all its consumers. The model's own norm on the same input: the same
values. This assumes, as every decoder layer in transformers does, that a norm's output and input are not changed
in place after use; an input changed in place is detected and raises.
"""

from __future__ import annotations

import functools
import weakref

import torch
from torch.utils.checkpoint import checkpoint


def _needs_graph(module: torch.nn.Module, *tensors: torch.Tensor) -> bool:
    if not torch.is_grad_enabled():
        return False
    return any(t.requires_grad for t in tensors) or any(p.requires_grad for p in module.parameters())


class _NormOutput:
    """A norm's output the graph need not keep: its norm and input, and the value once recomputed."""

    __slots__ = ("ref", "norm", "hidden", "version", "value")

    def __init__(self, output: torch.Tensor, norm, hidden: torch.Tensor):
        self.ref = weakref.ref(output, functools.partial(_forget, output.untyped_storage().data_ptr()))
        self.norm, self.hidden, self.version, self.value = norm, hidden, hidden._version, None

    def recompute(self) -> torch.Tensor:
        if self.value is None:
            if self.hidden._version != self.version:
                raise RuntimeError("selective recompute: a norm's input was modified in place after the forward "
                                   "pass; set selective_recompute: false for this model")
            with torch.no_grad():
                self.value = self.norm(self.hidden)
        return self.value


class _Saved:
    """One saved view of a norm output: how to cut it out of the recomputed output."""

    __slots__ = ("output", "size", "stride", "offset")

    def __init__(self, output: _NormOutput, tensor: torch.Tensor):
        self.output, self.size, self.stride, self.offset = output, tensor.size(), tensor.stride(), tensor.storage_offset()

    def unpack(self) -> torch.Tensor:
        return self.output.recompute().as_strided(self.size, self.stride, self.offset)


_OUTPUTS: dict[int, _NormOutput] = {}  # storage address -> the live norm output stored there


def _forget(pointer: int, ref) -> None:
    entry = _OUTPUTS.get(pointer)
    if entry is not None and entry.ref is ref:
        del _OUTPUTS[pointer]


def _note_output(output: torch.Tensor, norm, hidden: torch.Tensor) -> None:
    if (isinstance(output, torch.Tensor) and output.is_contiguous() and output.storage_offset() == 0
            and output.untyped_storage().nbytes() > 0 and not torch.is_autocast_enabled(output.device.type)):
        _OUTPUTS[output.untyped_storage().data_ptr()] = _NormOutput(output, norm, hidden)


def _holder_forward(module, original, *args, **kwargs):
    """Run a module that holds norms with the hook that keeps their outputs as notes (module doc)."""
    if not torch.is_grad_enabled():
        return original(*args, **kwargs)
    outer = torch._C._autograd._top_saved_tensors_default_hooks(False)  # hooks already active (e.g. a measurement)
    outer_pack, outer_unpack = outer if outer is not None else (None, None)

    def pack(tensor):
        entry = _OUTPUTS.get(tensor.untyped_storage().data_ptr())
        if entry is not None:
            output = entry.ref()
            if output is not None and output._version == 0 and output.dtype == tensor.dtype:
                return _Saved(entry, tensor)
        return outer_pack(tensor) if outer_pack is not None else tensor

    def unpack(saved):
        if isinstance(saved, _Saved):
            return saved.unpack()
        return outer_unpack(saved) if outer_unpack is not None else saved

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        return original(*args, **kwargs)


def _norm_forward(module, original, hidden, *args, **kwargs):
    if args or kwargs or not _needs_graph(module, hidden):
        return original(hidden, *args, **kwargs)
    output = checkpoint(original, hidden, use_reentrant=False)
    _note_output(output, original, hidden)
    return output


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
    holders = [module for module in model.modules()
               if any(is_norm(child) and not list(child.children()) for child in module.children())]
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
    for module in holders:
        if not getattr(module, "_tokensift_holder", False):
            module.forward = functools.partial(_holder_forward, module, module.forward)
            module._tokensift_holder = True
    return counts
