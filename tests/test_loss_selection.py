"""Token selection with every pairwise loss: the selector's tokens are what the loss reads, on the policy and the
reference alike. For each loss (and a mixture, and rpo_alpha), the loss on a batch with a selection must equal
the loss on the same pairs cut down to their selected tokens (policy log-probs and reference sums over exactly
those tokens, no selection): nothing outside the selection reaches it, and nothing inside is lost.

TDPO (a live reference) gets the reference's per-token log-probs and the per-position KL over the same tokens.
SFT is not pairwise, and KTO and BCO train on unpaired rows whose other side is a mismatched completion: a
selector with them is refused before any model loads, with the reason (the last test).
"""

from __future__ import annotations

import pytest
import torch

from conftest import train_config, write_pairs
from tokensift.data.collate import PairBatch
from tokensift.errors import UserError
from tokensift.losses import LOSSES
from tokensift.train.config import TrainConfig
from tokensift.train.objective import compute_loss

CHOSEN, REJECTED = [5, 3, 6], [4, 6, 2]
CASES = [(name, {}) for name, spec in LOSSES.items() if spec.pairwise and not spec.no_selection]
CASES += [("dpo,sft", {"loss_weights": "1,0.3"}), ("orpo,bco_pair", {}), ("dpo", {"rpo_alpha": 0.5}),
          ("ipo", {"rpo_alpha": 2.0}), ("simpo", {"rpo_alpha": 1.0})]


def batch_of(lengths, token_logps=None, ref=None, ref_sums=None) -> PairBatch:
    lens = torch.tensor(lengths)
    width = int(lens.max())
    n = len(lengths) // 2
    return PairBatch(input_ids=torch.zeros(2 * n, 1, dtype=torch.long), prompt_lens=torch.ones(2 * n, dtype=torch.long),
                     response_lens=lens, labels=torch.zeros(2 * n, width, dtype=torch.long),
                     response_mask=torch.arange(width)[None, :] < lens[:, None], rows=torch.arange(n),
                     ref_token_logps=ref, ref_logps=ref_sums)


def cut(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """[N, R] -> [N, R'] each row's kept values moved to the front, zero padded."""
    rows = [values[n][keep[n]] for n in range(values.shape[0])]
    out = torch.zeros(values.shape[0], max(len(r) for r in rows))
    for n, row in enumerate(rows):
        out[n, :len(row)] = row
    return out


@pytest.mark.parametrize("loss, settings", CASES, ids=[f"{n}{'-' + '-'.join(s) if s else ''}" for n, s in CASES])
def test_a_selection_equals_training_on_the_selected_tokens_alone(loss, settings):
    generator = torch.Generator().manual_seed(0)
    lengths = CHOSEN + REJECTED
    full = batch_of(lengths)
    width = full.response_mask.shape[1]
    policy = -torch.rand(len(lengths), width, generator=generator) * 3
    reference = -torch.rand(len(lengths), width, generator=generator) * 3
    selection = full.response_mask & (torch.rand(len(lengths), width, generator=generator) < 0.5)
    selection[:, 0] = True  # at least one token each, as every selector keeps
    assert (selection != full.response_mask).any()
    full.ref_token_logps = reference
    full.ref_logps = torch.where(full.response_mask, reference, 0).sum(-1)  # whole responses: must not be used
    config = TrainConfig(loss=loss, **settings)
    live = config.loss_spec.reference == "live"  # TDPO: the reference per token and the per-position KL, live
    kl = torch.rand(len(lengths), width, generator=generator) if live else None

    selected = compute_loss(config, full, policy, kl=kl, ref_token_logps=reference if live else None,
                            mask=selection)

    counts = selection.sum(-1).tolist()
    cut_policy = cut(policy, selection)
    cut_batch = batch_of(counts, ref_sums=cut(reference, selection).sum(-1))
    alone = compute_loss(config, cut_batch, cut_policy, kl=cut(kl, selection) if live else None,
                         ref_token_logps=cut(reference, selection) if live else None)

    torch.testing.assert_close(selected.loss, alone.loss, atol=1e-5, rtol=1e-5)
    assert selected.metrics.keys() == alone.metrics.keys()
    for name in selected.metrics:
        torch.testing.assert_close(selected.metrics[name], alone.metrics[name], atol=1e-5, rtol=1e-5, msg=name)
    # and the selection mattered: the whole responses give another loss
    whole = compute_loss(config, full, policy, kl=kl, ref_token_logps=reference if live else None)
    assert abs(whole.loss.item() - selected.loss.item()) > 1e-4


def test_every_pairwise_loss_takes_a_selector_and_sft_refuses_one_with_the_reason(tmp_path, model_dir):
    data = write_pairs(tmp_path / "pairs.jsonl", n=4)
    for name, spec in LOSSES.items():
        if spec.pairwise and not spec.no_selection:
            train_config(tmp_path, model_dir, data, loss=name, selector="random")
        elif spec.no_selection:  # KTO, BCO: refused with the declared reason
            with pytest.raises(UserError, match=f"loss={name} takes no token selection: "):
                train_config(tmp_path, model_dir, data, loss=name, selector="random")
    train_config(tmp_path, model_dir, data, loss="orpo,nca_pair", selector="random")
    with pytest.raises(UserError, match="loss=sft trains on whole responses; token selectors work with the pairwise"):
        train_config(tmp_path, model_dir, data, loss="sft", selector="random")
