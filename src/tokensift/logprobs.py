"""Per-token log-probs in label space, with the LM head evaluated only where a loss reads.

A causal LM's cost splits into the backbone (every position) and the LM head (a `hidden x vocab` matmul plus
a log-softmax per position). DPO reads only response positions and SePO only its ~30% selected key tokens, so
we run the backbone, gather the hidden states at the positions some loss reads (`data/positions.py` gives
them), and project only those through `head.ChunkedHeadLogProbs`: blocks of positions and slices of the
vocabulary, never a `[tokens, vocab]` tensor, the logits recomputed in the backward pass.
The same pass can also return the per-position KL(reference || policy) that TDPO needs, from the reference's
hidden states, again without storing full-vocabulary logits.

Two exact shortcuts, both covered by tests against the full-logits path:
- Right-padded sequences need no attention mask: under causal attention a real token never sees the padding
  after it. Dropping the mask lets attention take its causal fast path.
- Positions after the last label a batch reads cannot influence it (causality), so the batch is cut there.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from tokensift.attention import (
    PackingRefused,
    own_attention,
    packing_refusal,
    refuse,
    text_config,
)
from tokensift.data.collate import collate_pairs
from tokensift.data.positions import gather_indices, packed_layout, packed_pair_indices
from tokensift.head import ChunkedHeadLogProbs, model_head, unwrap

def backbone_hidden(model, input_ids: torch.Tensor, attention_mask=None, position_ids=None) -> torch.Tensor:
    """Last hidden states `[N, T, H]` of a right-padded batch (no attention mask needed, see module doc)."""
    out = unwrap(model).base_model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                   use_cache=False)
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


def _resolved_packing(packing: str, model) -> str:
    if packing == "auto":
        implementation = getattr(unwrap(model).config, "_attn_implementation", None)
        packing = "one_row" if implementation == "flex_attention" else "rows"
    return packing


def packed_row_tokens(packing: str, model) -> int | None:
    """Row capacity for collate_pairs(pack=True, row_tokens=...) under a `packing` setting on `model`.

    Dense attention (sdpa, eager) costs the square of a row's length, so pairs go back to back in rows about as
    long as the longest pair (packed_attention_scale says how much longer); flex attention skips the blocks its
    mask empties, so all pairs share one row.
    """
    return {"pairs": None, "rows": 1, "one_row": 1 << 62}[_resolved_packing(packing, model)]


ATTENTION_COST_PER_WIDTH = 3.0  # dense attention's cost per key position, in hidden sizes (measured, engine.md)


def packed_attention_scale(packing: str, model) -> float | None:
    """For `rows` packing, the row width at which dense attention costs as much as the rest of a position's work
    (collate.cheapest_width): about 3 hidden sizes, measured on CPU sdpa with the default model."""
    if _resolved_packing(packing, model) != "rows":
        return None
    hidden = getattr(text_config(unwrap(model)), "hidden_size", None)
    return ATTENTION_COST_PER_WIDTH * hidden if hidden else None


def group_logps(models: list, pairs, pad_id: int, device, share_prompt: bool, packing: str):
    """(batch, per-token log-probs [2B, R] of each model) for a group of pairs, laid out as `packing` says.

    A non-finite value in one pair (a NaN weight row only its tokens read) spreads through masked attention to
    every pair sharing its row (a masked key still multiplies its NaN value by 0). Then the group runs again one
    pair per row, so every other pair keeps its own value; a no-grad pass (reference cache, scoring) would
    otherwise store the NaN for pairs that train in other steps."""
    layouts = [(packed_row_tokens(packing, models[0]), packed_attention_scale(packing, models[0])), (None, None)]
    for row_tokens, scale in layouts:
        batch = collate_pairs(pairs, pad_id, pack=share_prompt, row_tokens=row_tokens,
                              attention_scale=scale).to(device)
        logps = [token_logps(m, batch.input_ids, batch.prompt_lens, batch.response_mask, packed=batch.packed).logps
                 for m in models]
        packed = batch.packed
        shared = packed is not None and packed.rows is not None and packed.input_ids.shape[0] < len(pairs)
        if not shared or all(bool(torch.isfinite(x[batch.response_mask]).all()) for x in logps):
            break
    return batch, logps


def can_pack(model) -> bool:
    """Whether packed [prompt | chosen | rejected] rows can run on `model` with its own attention (attention.py)."""
    return packing_refusal(unwrap(model)) is None


def uses_varlen(model) -> bool:
    """flash-attention takes no mask but packs by position_ids (variable-length sequences, "varlen")."""
    return str(getattr(unwrap(model).config, "_attn_implementation", "")).startswith("flash_attention")


def packed_hidden(model, packed, hidden_pos: torch.Tensor, rows: torch.Tensor, varlen: bool = False) -> torch.Tensor:
    """Hidden states at the given positions of packed [prompt | chosen | rejected] sequences.

    varlen: rows of whole sequences only (no rejected branch), run without a mask: the positions restart at 0 for
    every sequence and transformers finds the sequences from them (flash-attention's varlen kernels, or its own
    document mask for the other implementations).
    """
    cut = int(hidden_pos.max()) + 1 if hidden_pos.numel() else 1
    positions, branch, segment = packed_layout(packed.prompt_lens, packed.chosen_lens, cut, packed.rejected_lens,
                                               packed.rows, packed.offsets, packed.input_ids.shape[0])
    input_ids = packed.input_ids[:, :cut]
    if varlen:
        return backbone_hidden(model, input_ids, None, positions)[rows, hidden_pos]
    with own_attention(unwrap(model), positions, branch, segment):
        hidden = backbone_hidden(model, input_ids, torch.ones_like(input_ids), positions)
    return hidden[rows, hidden_pos]


class TokenLogps(NamedTuple):
    """A named tuple so that DeepSpeed ZeRO-3 sees (and hooks) its tensors: it re-gathers the head weight for the
    backward pass when the gradient reaches these outputs."""

    logps: torch.Tensor  # [N, R] float32, zero where mask is False
    kl: torch.Tensor | None  # [N, R] KL(ref || policy) per label (TDPO), zero where mask is False
    ref_logps: torch.Tensor | None  # [N, R] the reference's log-probs of the same labels (TDPO)


def needed_length(prompt_lens: torch.Tensor, mask: torch.Tensor) -> int:
    """Sequence length a batch must be run to: one past the last hidden position any label reads."""
    width = mask.shape[1]
    last = torch.where(mask, torch.arange(width, device=mask.device)[None, :], -1).max(dim=1).values
    read = torch.where(last >= 0, prompt_lens.to(mask.device) + last, 0)
    return int(read.max().item()) if read.numel() else 0


def token_logps(
    model, input_ids: torch.Tensor, prompt_lens: torch.Tensor, mask: torch.Tensor, ref_model=None, packed=None
) -> TokenLogps:
    """Per-token log-probs of the labels marked by `mask`, in label space.

    input_ids:   [N, T] right-padded prompt+response sequences.
    prompt_lens: [N] prompt lengths.
    mask:        [N, R] bool, the labels some loss reads (response tokens, or SePO's selected tokens).
    ref_model:   optional frozen reference; when given, also returns per-label KL(ref || policy) (TDPO).
    packed:      optional PackedPairs of the same pairs (rows of `mask` in PairBatch order): run each prompt once.
    """
    mask = mask.bool()
    models = [model] + ([ref_model] if ref_model is not None else [])
    sequences_only = packed is not None and packed.rows is not None and not bool(packed.rejected_lens.any())
    varlen = sequences_only and all(uses_varlen(m) for m in models)
    if packed is not None and not varlen and not all(can_pack(m) for m in models):
        packed = None
    if packed is not None:
        rows, hidden_pos, token_pos = packed_pair_indices(packed.prompt_lens, packed.chosen_lens, mask, packed.rows,
                                                          packed.offsets)
        targets = packed.input_ids[rows, token_pos]

        def hidden_of(m):
            return packed_hidden(m, packed, hidden_pos, rows, varlen)
    else:
        rows, _, hidden_pos, token_pos = gather_indices(prompt_lens, mask)
        targets = input_ids[rows, token_pos]
        cut = needed_length(prompt_lens, mask)

        def hidden_of(m):
            return backbone_hidden(m, input_ids[:, :cut])[rows, hidden_pos]
    ref_hidden = ref_w = ref_b = None
    current = model
    try:
        hidden = hidden_of(model)
        if ref_model is not None:
            current = ref_model
            with torch.no_grad():
                ref_hidden = hidden_of(ref_model)
    except PackingRefused as exc:  # the model built no mask: it cannot be packed; run the pairs unpacked
        refuse(unwrap(current), str(exc))
        return token_logps(model, input_ids, prompt_lens, mask, ref_model)
    head = model_head(model)
    if ref_model is not None:
        ref_head = model_head(ref_model)
        ref_w, ref_b = ref_head.weight.detach(), None if ref_head.bias is None else ref_head.bias.detach()
    flat, flat_kl, flat_ref = ChunkedHeadLogProbs.apply(
        hidden, head.weight, head.bias, targets, head.scale, head.softcap, ref_hidden, ref_w, ref_b
    )
    logps = flat.new_zeros(mask.shape).masked_scatter(mask, flat)
    if ref_model is None:
        return TokenLogps(logps, None, None)
    kl = flat_kl.new_zeros(mask.shape).masked_scatter(mask, flat_kl)
    return TokenLogps(logps, kl, flat_ref.new_zeros(mask.shape).masked_scatter(mask, flat_ref))


class LabelLogps(torch.nn.Module):
    """Wraps a causal LM so that one `forward` call computes label-space log-probs.

    Training goes through this module (it is what accelerate wraps) so that DDP/FSDP see a normal forward.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, prompt_lens, mask, ref_model=None, packed=None) -> TokenLogps:
        return token_logps(self.model, input_ids, prompt_lens, mask, ref_model, packed)

    @property
    def _no_split_modules(self):
        # FSDP's transformer auto-wrap reads the decoder layer class from the module it wraps
        return getattr(unwrap(self.model), "_no_split_modules", None)

    def tie_weights(self, *args, **kwargs):
        # accelerate's FSDP2 prepare (cpu_ram_efficient_loading) moves the model to meta and back, then re-ties
        # through this method of the module it was given; without it tied embeddings / LM head come apart.
        if hasattr(self.model, "tie_weights"):
            return self.model.tie_weights(*args, **kwargs)


def full_logits_logps(model, input_ids: torch.Tensor, prompt_lens: torch.Tensor, mask: torch.Tensor):
    """The plain way (full logits, padded attention): the yardstick the fast path is tested against."""
    mask = mask.bool()
    attention = torch.ones_like(input_ids)
    logits = model(input_ids=input_ids, attention_mask=attention, use_cache=False).logits.float()
    logp_all = torch.log_softmax(logits, dim=-1)
    rows, _, hidden_pos, token_pos = gather_indices(prompt_lens, mask)
    flat = logp_all[rows, hidden_pos, input_ids[rows, token_pos]]
    return flat.new_zeros(mask.shape).masked_scatter(mask, flat)
