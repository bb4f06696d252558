"""The LM head's log-probs at gathered positions, in blocks: no `[tokens, vocab]` tensor, at any vocabulary.

`ChunkedHeadLogProbs` turns M gathered hidden states into log softmax(head(h))[target] without the full logits.
It works on blocks of at most `ROW_BLOCK` positions and, inside a block, on slices of the vocabulary as wide as
`CHUNK_ELEMENTS` allows: every buffer it makes holds at most `CHUNK_ELEMENTS` logits, however many tokens and
however large the vocabulary (151,936 for Qwen, 262,144 for Gemma). The log-normaliser of a row is combined slice by
slice (log-add-exp); the backward pass recomputes a slice's logits, turns them into the gradient in place, and
writes that slice's rows of the weight's gradient once per block. So the weight and its gradient are read and
written once per block of positions, instead of once per few dozen positions as when blocks were sized by the
vocabulary (the previous scheme: at vocabulary 152k a block held 55 positions, and the `[vocab, hidden]` weight
and gradient went through memory 27 times for 1,500 response tokens).

TDPO's KL term needs the reference's whole distribution at a position before it can weigh the policy's, so that
case keeps blocks of whole-vocabulary rows (`CHUNK_ELEMENTS // vocab` positions each).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokensift.attention import text_config

CHUNK_ELEMENTS = 1 << 24  # logits in one buffer (64 MB in float32): the head's working memory
ROW_BLOCK = 4096  # positions per block: the weight and its gradient pass through memory once per block


@dataclass
class Head:
    weight: torch.Tensor  # [V, H]
    bias: torch.Tensor | None
    scale: float = 1.0  # logit multiplier some models use (Cohere, Granite ...)
    softcap: float | None = None  # Gemma-2 style tanh soft-capping

    def slice(self, start: int, end: int) -> "Head":
        bias = None if self.bias is None else self.bias[start:end]
        return Head(self.weight[start:end], bias, self.scale, self.softcap)


def unwrap(model):
    """The transformers model under PEFT / accelerate wrappers."""
    if hasattr(model, "module"):  # DistributedDataParallel
        model = model.module
    if hasattr(model, "get_base_model"):  # peft.PeftModel
        model = model.get_base_model()
    return model


def model_head(model) -> Head:
    inner = unwrap(model)
    head = inner.get_output_embeddings()
    config = text_config(inner)
    # Models that scale their logits: Cohere (logit_scale), Falcon-H1 (lm_head_multiplier) multiply; Granite
    # divides by logits_scaling, HyperCLOVA X multiplies by it.
    scale = getattr(config, "logit_scale", None)
    if scale is None:
        scale = getattr(config, "lm_head_multiplier", None)
    if scale is None and getattr(config, "logits_scaling", None) is not None:
        scale = config.logits_scaling if config.model_type == "hyperclovax" else 1.0 / config.logits_scaling
    scale = 1.0 if scale is None else scale
    softcap = getattr(config, "final_logit_softcapping", None)
    return Head(head.weight, head.bias, float(scale), softcap)


def logits(hidden: torch.Tensor, head: Head) -> torch.Tensor:
    """float32 logits of `hidden` [M, H] under `head` (its bias, scale and soft-cap applied)."""
    z = hidden @ head.weight.t()
    if head.bias is not None:
        z = z + head.bias
    z = z.float()
    if head.scale != 1.0:
        z = z * head.scale
    if head.softcap:
        z = torch.tanh(z / head.softcap) * head.softcap
    return z


def blocks(positions: int, vocab: int) -> tuple[int, int]:
    """(positions per block, vocabulary slice width) for M positions: at most CHUNK_ELEMENTS logits per buffer."""
    rows = max(1, min(positions, ROW_BLOCK))
    return rows, max(1, min(vocab, CHUNK_ELEMENTS // rows))


def _whole_rows(vocab: int) -> int:
    """Positions per block when a block must hold whole-vocabulary rows (the KL term)."""
    return max(1, CHUNK_ELEMENTS // max(1, vocab))


def _target_in_slice(targets: torch.Tensor, start: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(whether each target falls in vocabulary slice [start, start + width), its column there, clamped)."""
    local = targets - start
    inside = (local >= 0) & (local < width)
    return inside, local.clamp(0, width - 1)


class ChunkedHeadLogProbs(torch.autograd.Function):
    """log softmax(head(h))[target] for M gathered positions, in blocks, with an optional TDPO KL term.

    forward(hidden [M, H], weight [V, H], bias [V] | None, targets [M], scale, softcap,
            ref_hidden [M, H] | None, ref_weight | None, ref_bias | None) -> (logps, kl, ref_logps), each [M]
    kl[m] = KL(ref(.|s_m) || policy(.|s_m)) over the vocabulary and ref_logps[m] the reference's log-prob of
    the target (both zeros when no reference is given).
    Gradients reach hidden, weight and bias only; the reference is constant.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, scale, softcap, ref_hidden, ref_weight, ref_bias):
        head = Head(weight, bias, scale, softcap)
        targets = targets.long()
        logps = hidden.new_empty(hidden.shape[0], dtype=torch.float32)
        log_norm = torch.empty_like(logps)
        kl = torch.zeros_like(logps)
        ref_logps = torch.zeros_like(logps)
        if ref_hidden is None:
            _forward_sliced(hidden, head, targets, logps, log_norm)
        else:
            _forward_with_kl(hidden, head, targets, Head(ref_weight, ref_bias, scale, softcap), ref_hidden,
                             logps, log_norm, kl, ref_logps)
        ctx.save_for_backward(hidden, weight, bias, targets, log_norm, ref_hidden, ref_weight, ref_bias)
        ctx.scale, ctx.softcap = scale, softcap
        ctx.mark_non_differentiable(ref_logps)
        return logps, kl, ref_logps

    @staticmethod
    def backward(ctx, grad_logps, grad_kl, _grad_ref):
        hidden, weight, bias, targets, log_norm, ref_hidden, ref_weight, ref_bias = ctx.saved_tensors
        head = Head(weight, bias, ctx.scale, ctx.softcap)
        need_h, need_w, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        grads = _Grads(
            torch.zeros(hidden.shape, dtype=torch.float32, device=hidden.device) if need_h else None,
            torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None,
            torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if need_b else None,
        )
        if ref_hidden is None or grad_kl is None:
            _backward_sliced(hidden, head, targets, log_norm, grad_logps, grads)
        else:
            _backward_with_kl(hidden, head, targets, log_norm, grad_logps, grad_kl,
                              Head(ref_weight, ref_bias, ctx.scale, ctx.softcap), ref_hidden, grads)
        grad_hidden = None if grads.hidden is None else grads.hidden.to(hidden.dtype)
        grad_weight = None if grads.weight is None else grads.weight.to(weight.dtype)
        grad_bias = None if grads.bias is None else grads.bias.to(bias.dtype)
        return grad_hidden, grad_weight, grad_bias, None, None, None, None, None, None


@dataclass
class _Grads:
    """float32 accumulators of the head's gradients (None where no gradient is needed)."""

    hidden: torch.Tensor | None
    weight: torch.Tensor | None
    bias: torch.Tensor | None


def _forward_sliced(hidden, head: Head, targets, logps, log_norm) -> None:
    positions, vocab = hidden.shape[0], head.weight.shape[0]
    rows, width = blocks(positions, vocab)
    for r0 in range(0, positions, rows):
        h, t = hidden[r0:r0 + rows], targets[r0:r0 + rows]
        lse = picked = None
        for v0 in range(0, vocab, width):
            z = logits(h, head.slice(v0, v0 + width))
            part = torch.logsumexp(z, dim=-1)
            inside, local = _target_in_slice(t, v0, z.shape[1])
            value = z.gather(1, local[:, None]).squeeze(1)
            if lse is None:
                lse, picked = part, torch.where(inside, value, torch.zeros_like(value))
            else:
                lse = torch.logaddexp(lse, part)
                picked = torch.where(inside, value, picked)
            del z
        log_norm[r0:r0 + rows] = lse
        logps[r0:r0 + rows] = picked - lse


def _backward_sliced(hidden, head: Head, targets, log_norm, grad_logps, grads: _Grads) -> None:
    """d logp[target] / dz = onehot - p, one [rows, slice] buffer at a time, built in the logits' own storage."""
    positions, vocab = hidden.shape[0], head.weight.shape[0]
    rows, width = blocks(positions, vocab)
    for r0 in range(0, positions, rows):
        r1 = r0 + rows
        h, t, g = hidden[r0:r1], targets[r0:r1], grad_logps[r0:r1]
        for v0 in range(0, vocab, width):
            part = head.slice(v0, v0 + width)
            z = logits(h, part)
            cap = 1 - (z / head.softcap) ** 2 if head.softcap else None  # the soft-cap's derivative
            gz = z.sub_(log_norm[r0:r1, None]).exp_().mul_(-g[:, None])
            inside, local = _target_in_slice(t, v0, z.shape[1])
            gz.scatter_add_(1, local[:, None], torch.where(inside, g, torch.zeros_like(g))[:, None])
            _accumulate(gz, cap, head, part, h, (r0, r1), (v0, v0 + z.shape[1]), grads)


def _accumulate(gz, cap, head: Head, part: Head, h, rows: tuple[int, int], cols: tuple[int, int],
                grads: _Grads) -> None:
    """Chain rule through the soft-cap and the scale, then this block's share of each gradient."""
    if cap is not None:
        gz.mul_(cap)
    if head.scale != 1.0:
        gz.mul_(head.scale)
    gz = gz.to(head.weight.dtype)
    (r0, r1), (v0, v1) = rows, cols
    if grads.hidden is not None:
        if gz.dtype == torch.float32:
            grads.hidden[r0:r1].addmm_(gz, part.weight)
        else:
            grads.hidden[r0:r1] += (gz @ part.weight).float()
    if grads.weight is not None:
        if gz.dtype == torch.float32 and h.dtype == torch.float32:
            grads.weight[v0:v1].addmm_(gz.t(), h)  # in place: no second [slice, hidden] buffer
        else:
            grads.weight[v0:v1] += (gz.t() @ h).float()
    if grads.bias is not None:
        grads.bias[v0:v1] += gz.float().sum(0)


def _forward_with_kl(hidden, head: Head, targets, ref_head: Head, ref_hidden, logps, log_norm, kl,
                     ref_logps) -> None:
    rows = _whole_rows(head.weight.shape[0])
    for start in range(0, hidden.shape[0], rows):
        end = start + rows
        z = logits(hidden[start:end], head)
        lse = torch.logsumexp(z, dim=-1)
        log_norm[start:end] = lse
        logps[start:end] = z.gather(1, targets[start:end, None]).squeeze(1) - lse
        ref_logp = torch.log_softmax(logits(ref_hidden[start:end], ref_head), dim=-1)
        kl[start:end] = (ref_logp.exp() * (ref_logp - (z - lse[:, None]))).sum(-1)
        ref_logps[start:end] = ref_logp.gather(1, targets[start:end, None]).squeeze(1)


def _backward_with_kl(hidden, head: Head, targets, log_norm, grad_logps, grad_kl, ref_head: Head, ref_hidden,
                      grads: _Grads) -> None:
    """d logp[target] / dz = onehot - p ;  d KL(ref || p) / dz = p - p_ref, whole-vocabulary rows."""
    rows = _whole_rows(head.weight.shape[0])
    for start in range(0, hidden.shape[0], rows):
        end = start + rows
        h = hidden[start:end]
        z = logits(h, head)
        cap = 1 - (z / head.softcap) ** 2 if head.softcap else None
        gz = z.sub_(log_norm[start:end, None]).exp_()
        g, g_kl = grad_logps[start:end, None], grad_kl[start:end, None]
        ref_probs = torch.softmax(logits(ref_hidden[start:end], ref_head), dim=-1)
        gz.mul_(g_kl - g).sub_(ref_probs.mul_(g_kl))
        gz.scatter_add_(1, targets[start:end, None], g)
        _accumulate(gz, cap, head, head, h, (start, end), (0, head.weight.shape[0]), grads)
