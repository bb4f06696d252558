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


def packed_pair_indices(prompt_lens: torch.Tensor, chosen_lens: torch.Tensor, mask: torch.Tensor):
    """Gather indices for pairs packed as one sequence each: [prompt | chosen | rejected].

    `mask` is [2B, R] in a PairBatch's row order (chosen of pair b at row b, rejected at row B + b). In the
    packed sequence of pair b (prompt length P, chosen length C):
      chosen label i   is predicted at position P - 1 + i and sits at P + i;
      rejected label 0 is predicted at P - 1 (the prompt's last token, shared with chosen label 0),
      rejected label i is predicted at P + C - 1 + i (i >= 1) and sits at P + C + i.
    Returns (sequence rows [M] in 0..B-1, hidden positions [M], token positions [M]) in row-major order of mask.
    """
    pairs = prompt_lens.shape[0]
    rows, labels = mask.nonzero(as_tuple=True)
    pair = rows % pairs
    prompt = prompt_lens.to(labels.device)[pair]
    if bool((prompt < 1).any()):
        raise ValueError("a prompt must hold at least one token to predict the first response token")
    rejected = rows >= pairs
    start = torch.where(rejected, prompt + chosen_lens.to(labels.device)[pair], prompt)
    token = start + labels
    hidden = torch.where(rejected & (labels == 0), prompt - 1, token - 1)
    return pair, hidden, token


def packed_layout(prompt_lens: torch.Tensor, chosen_lens: torch.Tensor, width: int):
    """Logical positions and branches `[B, T]` of packed [prompt | chosen | rejected] rows.

    The rejected response continues from the prompt, as if chosen were not there: its token j (packed index
    P + C + j) has position P + j. Branch: 0 for the prompt, 1 for chosen, 2 for rejected (and the padding after
    it). attention.py lets a token see the prompt and its own branch, causally in logical positions.
    """
    index = torch.arange(width, device=prompt_lens.device)[None, :]
    chosen_start = prompt_lens[:, None]
    rejected_start = (prompt_lens + chosen_lens)[:, None]
    positions = torch.where(index >= rejected_start, index - chosen_lens[:, None], index)
    branch = (index >= chosen_start).long() + (index >= rejected_start).long()
    return positions, branch
