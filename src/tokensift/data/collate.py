"""Right-padded batches of prompt+response sequences with label-space response tensors.

A pair batch of B pairs holds 2B sequences: the B chosen ones first, then the B rejected ones, so one forward
pass serves both sides and `batch.chosen(x)` / `batch.rejected(x)` split any `[2B, ...]` tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tokensift.data.positions import label_mask
from tokensift.data.tokenize import TokenizedPair


@dataclass
class PackedPairs:
    """Pairs as [prompt | chosen | rejected] segments: the prompt is run once, not twice.

    The rejected response attends to the prompt but not to the chosen one and continues the prompt's positions
    (data/positions.py gives positions, branches and segments; attention.py the model's own mask on them), so every
    log-prob equals the unpacked layout's. Pair b sits in row `rows[b]` from column `offsets[b]`: one pair per row
    (rows None: row b, column 0), or several pairs back to back in a row, padding only at the end of each row.
    """

    input_ids: torch.Tensor  # [rows, T]
    prompt_lens: torch.Tensor  # [B]
    chosen_lens: torch.Tensor  # [B]
    rejected_lens: torch.Tensor | None = None  # [B], with rows/offsets
    rows: torch.Tensor | None = None  # [B]
    offsets: torch.Tensor | None = None  # [B]

    def to(self, device) -> "PackedPairs":
        moved = {k: (v.to(device) if v is not None else None) for k, v in self.__dict__.items()}
        return PackedPairs(**moved)

    @property
    def padding(self) -> float:
        """Share of the packed positions that are padding."""
        real = int((self.prompt_lens + self.chosen_lens).sum()) + (
            int(self.rejected_lens.sum()) if self.rejected_lens is not None else 0)
        return 1.0 - real / max(1, self.input_ids.numel()) if self.rejected_lens is not None else float("nan")


@dataclass
class SequenceBatch:
    input_ids: torch.Tensor  # [N, T] long, right-padded with pad_id
    prompt_lens: torch.Tensor  # [N] long
    response_lens: torch.Tensor  # [N] long
    labels: torch.Tensor  # [N, R] long, response token ids in label space (0 where padded)
    response_mask: torch.Tensor  # [N, R] bool
    packed: "PackedPairs | None" = None  # the same sequences back to back in rows (prompt + response segments)

    @property
    def num_tokens(self) -> int:
        """Real (non-pad) tokens in the batch, the unit of tokens/s."""
        return int((self.prompt_lens + self.response_lens).sum())

    @property
    def num_examples(self) -> int:
        """Pairs in a pair batch, sequences in a plain sequence batch."""
        return self.input_ids.shape[0]

    def to(self, device):
        moved = {k: (v.to(device) if hasattr(v, "to") else v) for k, v in self.__dict__.items()}
        return type(self)(**moved)


@dataclass
class PairBatch(SequenceBatch):
    rows: torch.Tensor | None = None  # [B] dataset rows
    select_mask: torch.Tensor | None = None  # [2B, R] bool: SePO key tokens (None = all response tokens)
    ref_logps: torch.Tensor | None = None  # [2B] float: cached reference log-prob sums
    ref_token_logps: torch.Tensor | None = None  # [2B, R] float: the reference per token (token selections)
    target_margin: torch.Tensor | None = None  # [B] float: per-pair target margins (TokenizedPair.target_margin)
    label: torch.Tensor | None = None  # [B] float: unpaired rows' labels, 1 desirable / 0 not (TokenizedPair.label)

    @property
    def num_pairs(self) -> int:
        return self.input_ids.shape[0] // 2

    @property
    def num_examples(self) -> int:
        return self.num_pairs

    def chosen(self, x: torch.Tensor) -> torch.Tensor:
        return x[: self.num_pairs]

    def rejected(self, x: torch.Tensor) -> torch.Tensor:
        return x[self.num_pairs :]



def pad_2d(arrays: list[np.ndarray], pad: int | float, dtype: torch.dtype, width: int | None = None) -> torch.Tensor:
    width = max((len(a) for a in arrays), default=0) if width is None else width
    out = torch.full((len(arrays), max(width, 1)), pad, dtype=dtype)
    for i, a in enumerate(arrays):
        if len(a):
            out[i, : len(a)] = torch.as_tensor(np.asarray(a))
    return out


def collate_sequences(prompts: list[np.ndarray], responses: list[np.ndarray], pad_id: int, pack: bool = False,
                      row_tokens: int | None = None) -> SequenceBatch:
    """Right-padded prompt + response sequences; pack: also back to back in rows (pack_pairs, no rejected side)."""
    sequences = [np.concatenate([p, r]) for p, r in zip(prompts, responses)]
    response_lens = torch.tensor([len(r) for r in responses], dtype=torch.long)
    labels = pad_2d(responses, 0, torch.long)
    return SequenceBatch(
        input_ids=pad_2d(sequences, pad_id, torch.long),
        prompt_lens=torch.tensor([len(p) for p in prompts], dtype=torch.long),
        response_lens=response_lens,
        labels=labels,
        response_mask=label_mask(response_lens, labels.shape[1]),
        packed=pack_pairs([TokenizedPair(i, p, r, r[:0]) for i, (p, r) in enumerate(zip(prompts, responses))], pad_id,
                          row_tokens) if pack else None,
    )


MAX_CHOSEN_WIDTH = 4096  # a chosen row width stays below this (or the longest pair): dense masks grow with its square


def first_fit(lengths: list[int], capacity: int) -> tuple[list[int], list[int], list[int]]:
    """First-fit decreasing of segments into rows of `capacity`: (row of each, offset of each, filled per row)."""
    rows, offsets, filled = [0] * len(lengths), [0] * len(lengths), []
    for b in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        row = next((r for r, used in enumerate(filled) if used + lengths[b] <= capacity), len(filled))
        if row == len(filled):
            filled.append(0)
        rows[b], offsets[b] = row, filled[row]
        filled[row] += lengths[b]
    return rows, offsets, filled


def rows_cost(rows: int, width: int, attention_scale: float) -> float:
    """The cost of `rows` rows of `width` positions under dense attention, in position-units: each position's own
    work (projections, MLP) plus its attention over the whole row, which a dense mask computes for every key."""
    return rows * width * (1.0 + width / attention_scale)


def sharing_pays(pairs: list[TokenizedPair], packed: PackedPairs, attention_scale: float) -> bool:
    """Whether the shared-prompt rows cost less than the 2B sequences [prompt | response] padded to the longest.

    Sharing computes each prompt once but puts chosen and rejected in one row, whose dense attention spans both:
    with long prompts (HH) it saves, with short prompts and long answers it costs up to twice the attention
    (BENCHMARKS.md, "Real model shapes")."""
    longest = max(len(p.prompt_ids) + max(len(p.chosen_ids), len(p.rejected_ids)) for p in pairs)
    rows, width = packed.input_ids.shape
    return rows_cost(rows, width, attention_scale) <= rows_cost(2 * len(pairs), longest, attention_scale)


def cheapest_width(lengths: list[int], least: int, attention_scale: float) -> int:
    """The row capacity (>= least) whose first-fit layout costs least under dense attention.

    A row of W positions costs W * (1 + W / attention_scale): the per-position work (projections, MLP) plus the
    attention over the whole row, which a dense mask computes for every key. Rows as long as the longest pair
    leave the gaps first-fit cannot fill (about a fifth of the positions on 8 HH pairs); slightly wider rows take
    fewer rows and less padding, until the attention's share outweighs it.
    """
    top = max(least, min(4 * least, sum(lengths), MAX_CHOSEN_WIDTH))
    step = max(8, least // 16)
    best_cost, best = None, least
    for capacity in range(least, top + 1, step):
        filled = first_fit(lengths, capacity)[2]
        width = max(filled)
        cost = rows_cost(len(filled), width, attention_scale)
        if best_cost is None or cost < best_cost:
            best_cost, best = cost, capacity
    return best


def pack_pairs(pairs: list[TokenizedPair], pad_id: int, row_tokens: int | None = None,
               attention_scale: float | None = None) -> PackedPairs:
    """Pairs as [prompt | chosen | rejected] segments: one per row (row_tokens None), or first-fit decreasing into
    rows of `row_tokens` positions (at least the longest pair), back to back: padding only ends a row.

    attention_scale: choose the row capacity (at least that) by dense attention's cost (cheapest_width)."""
    segments = [np.concatenate([p.prompt_ids, p.chosen_ids, p.rejected_ids]) for p in pairs]
    lengths = [torch.tensor([len(getattr(p, f"{side}_ids")) for p in pairs], dtype=torch.long)
               for side in ("prompt", "chosen", "rejected")]
    if row_tokens is None:
        return PackedPairs(pad_2d(segments, pad_id, torch.long), lengths[0], lengths[1])
    sizes = [len(s) for s in segments]
    capacity = max([row_tokens] + sizes)
    if attention_scale:
        capacity = cheapest_width(sizes, capacity, attention_scale)
    rows, offsets, filled = first_fit(sizes, capacity)
    input_ids = torch.full((len(filled), max(filled)), pad_id, dtype=torch.long)
    for b, segment in enumerate(segments):
        input_ids[rows[b], offsets[b]: offsets[b] + len(segment)] = torch.as_tensor(segment)
    return PackedPairs(input_ids, *lengths, torch.tensor(rows), torch.tensor(offsets))


def collate_pairs(pairs: list[TokenizedPair], pad_id: int, ref_logps: dict | None = None,
                  pack: bool = False, row_tokens: int | None = None, ref_token_logps: dict | None = None,
                  attention_scale: float | None = None) -> PairBatch:
    """Batch pairs as [chosen_1..B, rejected_1..B]; `ref_logps` maps row -> (chosen sum, rejected sum).

    pack: also build the shared-prompt layout, which forward passes then use instead of the 2B sequences;
    row_tokens, attention_scale: pack pairs back to back in rows of that many positions (see pack_pairs); with
    attention_scale, the shared layout only where it costs less than the 2B sequences (sharing_pays);
    ref_token_logps: row -> (chosen per-token array, rejected per-token array), for token selections.
    """
    prompts = [p.prompt_ids for p in pairs] * 2
    responses = [p.chosen_ids for p in pairs] + [p.rejected_ids for p in pairs]
    seq = collate_sequences(prompts, responses, pad_id)
    ref = None
    if ref_logps is not None:
        values = [ref_logps[p.row] for p in pairs]
        ref = torch.tensor([v[0] for v in values] + [v[1] for v in values], dtype=torch.float32)
    seq.packed = pack_pairs(pairs, pad_id, row_tokens, attention_scale) if pack else None
    if seq.packed is not None and attention_scale and not sharing_pays(pairs, seq.packed, attention_scale):
        seq.packed = None
    tokens = None
    if ref_token_logps is not None:
        arrays = [ref_token_logps[p.row][0] for p in pairs] + [ref_token_logps[p.row][1] for p in pairs]
        tokens = pad_2d(arrays, 0.0, torch.float32, width=seq.response_mask.shape[1])
    margin = None
    if pairs and pairs[0].target_margin is not None:
        margin = torch.tensor([p.target_margin for p in pairs], dtype=torch.float32)
    label = None
    if pairs and pairs[0].label is not None:
        label = torch.tensor([p.label for p in pairs], dtype=torch.float32)
    return PairBatch(**seq.__dict__, rows=torch.tensor([p.row for p in pairs], dtype=torch.long), ref_logps=ref,
                     ref_token_logps=tokens, target_margin=margin, label=label)


def length_buckets(pairs: list[TokenizedPair], batch_size: int) -> list[list[TokenizedPair]]:
    """Batches of similar length (longest first), so padding wastes little compute in no-grad passes."""
    ordered = sorted(pairs, key=lambda p: (-p.num_tokens, p.row))
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
