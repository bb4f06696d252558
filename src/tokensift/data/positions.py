"""The one place that converts between sequence positions and label positions.

A tokenised response lives in a sequence `prompt_ids + response_ids`. Everything per-token in tokensift
(log-probs, oracle scores, selection masks) is stored in **label space**: index `i` is about response token
`i`, i.e. `sequence[prompt_len + i]`, whose probability the model gives at the *previous* position, the
logits at `prompt_len + i - 1`. So label `i` needs the hidden state at sequence position
`prompt_len - 1 + i` and predicts the token id at sequence position `prompt_len + i`.

The first response token (label 0) is predicted from the last prompt token, which is why a prompt must hold at
least one token. The official SePO code starts one position late and can never score label 0; here it is
scored like every other response token.
"""

from __future__ import annotations

import torch


def hidden_position(prompt_len: int, label: int) -> int:
    """Sequence position whose hidden state (logits) predicts response token `label`."""
    if prompt_len < 1:
        raise ValueError("a prompt must hold at least one token to predict the first response token")
    return prompt_len - 1 + label


def token_position(prompt_len: int, label: int) -> int:
    """Sequence position of response token `label` itself."""
    return prompt_len + label


def label_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """Boolean mask `[N, width]` that is True for labels `0 .. lengths[n]-1` of row n."""
    return torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]


def gather_indices(prompt_lens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Flat indices of the labels that `mask` marks, for a right-padded batch.

    prompt_lens: [N] prompt length of each sequence.
    mask:        [N, R] bool, which labels to compute (a response mask, or a SePO selection mask).
    Returns (rows, labels, hidden_positions, token_positions), each [M] with M = mask.sum(), in row-major
    order of `mask`, so `values.new_zeros(mask.shape).masked_scatter(mask, flat)` puts results back.
    """
    rows, labels = mask.nonzero(as_tuple=True)
    starts = prompt_lens.to(labels.device)[rows]
    if bool((starts < 1).any()):
        raise ValueError("a prompt must hold at least one token to predict the first response token")
    return rows, labels, starts - 1 + labels, starts + labels


def packed_pair_indices(prompt_lens: torch.Tensor, chosen_lens: torch.Tensor, mask: torch.Tensor,
                        rows: torch.Tensor | None = None, offsets: torch.Tensor | None = None):
    """Gather indices for pairs packed as [prompt | chosen | rejected] segments.

    `mask` is [2B, R] in a PairBatch's row order (chosen of pair b at row b, rejected at row B + b). Pair b sits in
    packed row `rows[b]` from column `offsets[b]` (default: its own row, from column 0). Within its segment
    (prompt length P, chosen length C):
      chosen label i   is predicted at position P - 1 + i and sits at P + i;
      rejected label 0 is predicted at P - 1 (the prompt's last token, shared with chosen label 0),
      rejected label i is predicted at P + C - 1 + i (i >= 1) and sits at P + C + i.
    Returns (packed rows [M], hidden positions [M], token positions [M]) in row-major order of mask.
    """
    pairs = prompt_lens.shape[0]
    mask_rows, labels = mask.nonzero(as_tuple=True)
    pair = mask_rows % pairs
    prompt = prompt_lens.to(labels.device)[pair]
    if bool((prompt < 1).any()):
        raise ValueError("a prompt must hold at least one token to predict the first response token")
    rejected = mask_rows >= pairs
    base = 0 if offsets is None else offsets.to(labels.device)[pair]
    start = torch.where(rejected, prompt + chosen_lens.to(labels.device)[pair], prompt)
    token = base + start + labels
    hidden = torch.where(rejected & (labels == 0), base + prompt - 1, token - 1)
    return (pair if rows is None else rows.to(labels.device)[pair]), hidden, token


def packed_layout(prompt_lens: torch.Tensor, chosen_lens: torch.Tensor, width: int,
                  rejected_lens: torch.Tensor | None = None, rows: torch.Tensor | None = None,
                  offsets: torch.Tensor | None = None, num_rows: int | None = None):
    """Logical positions, branches and segments `[rows, width]` of packed [prompt | chosen | rejected] segments.

    The rejected response continues from the prompt, as if chosen were not there: its token j has position P + j.
    Branch: 0 for the prompt, 1 for chosen, 2 for rejected. Segment: the pair's index, -1 for padding (None when
    each row holds one pair from column 0: then the padding after it is branch 2 with later positions, which no
    real token can see). attention.py lets a token see the prompt and its own branch of its own segment,
    causally in logical positions.
    """
    device = prompt_lens.device
    if rows is None:
        index = torch.arange(width, device=device)[None, :]
        chosen_start = prompt_lens[:, None]
        rejected_start = (prompt_lens + chosen_lens)[:, None]
        positions = torch.where(index >= rejected_start, index - chosen_lens[:, None], index)
        branch = (index >= chosen_start).long() + (index >= rejected_start).long()
        return positions, branch, None
    shape = (num_rows, width)
    positions = torch.zeros(shape, dtype=torch.long, device=device)
    branch = torch.zeros(shape, dtype=torch.long, device=device)
    segment = torch.full(shape, -1, dtype=torch.long, device=device)
    for b, (row, start, p, c, r) in enumerate(zip(rows.tolist(), offsets.tolist(), prompt_lens.tolist(),
                                                  chosen_lens.tolist(), rejected_lens.tolist())):
        end = min(start + p + c + r, width)
        if start >= width:
            continue
        local = torch.arange(end - start, device=device)
        positions[row, start:end] = torch.where(local >= p + c, local - c, local)
        branch[row, start:end] = (local >= p).long() + (local >= p + c).long()
        segment[row, start:end] = b
    return positions, branch, segment
