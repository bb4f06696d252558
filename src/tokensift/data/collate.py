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
class SequenceBatch:
    input_ids: torch.Tensor  # [N, T] long, right-padded with pad_id
    prompt_lens: torch.Tensor  # [N] long
    response_lens: torch.Tensor  # [N] long
    labels: torch.Tensor  # [N, R] long, response token ids in label space (0 where padded)
    response_mask: torch.Tensor  # [N, R] bool

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
class PackedPairs:
    """Each pair as one sequence [prompt | chosen | rejected], right-padded: the prompt is run once, not twice.

    The rejected response attends to the prompt but not to the chosen one and continues the prompt's positions
    (data/positions.py builds the mask and positions), so every log-prob equals the unpacked layout's.
    """

    input_ids: torch.Tensor  # [B, T]
    prompt_lens: torch.Tensor  # [B]
    chosen_lens: torch.Tensor  # [B]

    def to(self, device) -> "PackedPairs":
        return PackedPairs(self.input_ids.to(device), self.prompt_lens.to(device), self.chosen_lens.to(device))


@dataclass
class PairBatch(SequenceBatch):
    rows: torch.Tensor | None = None  # [B] dataset rows
    select_mask: torch.Tensor | None = None  # [2B, R] bool: SePO key tokens (None = all response tokens)
    ref_logps: torch.Tensor | None = None  # [2B] float: cached reference log-prob sums
    packed: PackedPairs | None = None  # the same pairs with shared prompts (see PackedPairs)

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


def collate_sequences(prompts: list[np.ndarray], responses: list[np.ndarray], pad_id: int) -> SequenceBatch:
    sequences = [np.concatenate([p, r]) for p, r in zip(prompts, responses)]
    response_lens = torch.tensor([len(r) for r in responses], dtype=torch.long)
    labels = pad_2d(responses, 0, torch.long)
    return SequenceBatch(
        input_ids=pad_2d(sequences, pad_id, torch.long),
        prompt_lens=torch.tensor([len(p) for p in prompts], dtype=torch.long),
        response_lens=response_lens,
        labels=labels,
        response_mask=label_mask(response_lens, labels.shape[1]),
    )


def pack_pairs(pairs: list[TokenizedPair], pad_id: int) -> PackedPairs:
    sequences = [np.concatenate([p.prompt_ids, p.chosen_ids, p.rejected_ids]) for p in pairs]
    return PackedPairs(
        input_ids=pad_2d(sequences, pad_id, torch.long),
        prompt_lens=torch.tensor([len(p.prompt_ids) for p in pairs], dtype=torch.long),
        chosen_lens=torch.tensor([len(p.chosen_ids) for p in pairs], dtype=torch.long),
    )


def collate_pairs(pairs: list[TokenizedPair], pad_id: int, ref_logps: dict | None = None,
                  pack: bool = False) -> PairBatch:
    """Batch pairs as [chosen_1..B, rejected_1..B]; `ref_logps` maps row -> (chosen sum, rejected sum).

    pack: also build the shared-prompt layout, which forward passes then use instead of the 2B sequences.
    """
    prompts = [p.prompt_ids for p in pairs] * 2
    responses = [p.chosen_ids for p in pairs] + [p.rejected_ids for p in pairs]
    seq = collate_sequences(prompts, responses, pad_id)
    ref = None
    if ref_logps is not None:
        values = [ref_logps[p.row] for p in pairs]
        ref = torch.tensor([v[0] for v in values] + [v[1] for v in values], dtype=torch.float32)
    return PairBatch(**seq.__dict__, rows=torch.tensor([p.row for p in pairs], dtype=torch.long), ref_logps=ref,
                     packed=pack_pairs(pairs, pad_id) if pack else None)


def length_buckets(pairs: list[TokenizedPair], batch_size: int) -> list[list[TokenizedPair]]:
    """Batches of similar length (longest first), so padding wastes little compute in no-grad passes."""
    ordered = sorted(pairs, key=lambda p: (-p.num_tokens, p.row))
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
