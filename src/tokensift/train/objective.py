"""From a batch and a config to the loss: the pure loss function `config.loss` declared (losses.LOSSES), or the
mixture of several, given what its declaration asks for, plus RPO's NLL term when rpo_alpha is set."""

from __future__ import annotations

import torch

from tokensift import losses
from tokensift.data.collate import PairBatch, SequenceBatch


def read_mask(batch) -> torch.Tensor:
    """The labels the loss reads: the batch's token selection when the data came with one, else every response
    token. Computed once per forward and passed to both the log-prob pass and the loss."""
    selection = getattr(batch, "select_mask", None)
    return selection if selection is not None else batch.response_mask


def masked_reference_sums(ref_token_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[2B] reference log-prob sums over a selection (weighted by float weights), as the losses sum the policy."""
    ref = ref_token_logps.float() * (mask.float() if mask.dtype != torch.bool else 1.0)
    return torch.where(mask.bool(), ref, torch.zeros_like(ref)).sum(-1)


def loss_units(spec: losses.LossSpec, pair) -> float:
    """What a loss averages over for one pair: its chosen tokens for token-mean losses (SFT), else one pair."""
    return float(len(pair.chosen_ids)) if spec.unit == "token" else 1.0


def compute_loss(config, batch: PairBatch | SequenceBatch, logps, kl=None, ref_token_logps=None,
                 mask=None) -> losses.LossOutput:
    """Call the loss `config.loss` with what its LossSpec declares.

    logps: [N, R] policy log-probs in label space (N = B sequences for SFT, 2B for pairs).
    kl, ref_token_logps: per-label KL(ref || policy) and reference log-probs from a live reference (reference="live").
    mask: [N, R] the labels read, as the log-prob pass read them (default: read_mask(batch)).
    """
    mask = read_mask(batch) if mask is None else mask
    spec = losses.resolve(config.loss, getattr(config, "loss_weights", None))
    keywords = spec.keywords(config)
    if not spec.pairwise:
        return spec.function(logps=logps, mask=mask, **keywords)
    args = dict(chosen_logps=batch.chosen(logps), chosen_mask=batch.chosen(mask),
                rejected_logps=batch.rejected(logps), rejected_mask=batch.rejected(mask))
    if spec.reference == "cached":
        ref = batch.ref_logps
        if getattr(batch, "select_mask", None) is not None or mask is not batch.response_mask:
            ref = masked_reference_sums(batch.ref_token_logps, mask)  # the reference over the selected tokens
        args.update(ref_chosen_logps=batch.chosen(ref), ref_rejected_logps=batch.rejected(ref))
    elif spec.reference == "live":
        ref_sums = torch.where(mask, ref_token_logps, torch.zeros_like(ref_token_logps)).sum(-1)
        args.update(ref_chosen_logps=batch.chosen(ref_sums), ref_rejected_logps=batch.rejected(ref_sums),
                    chosen_kl=batch.chosen(kl), rejected_kl=batch.rejected(kl))
    for name in spec.pair_inputs:  # optional per-pair values the data brought (e.g. TSO's target_margin)
        if getattr(batch, name, None) is not None:
            args[name] = getattr(batch, name)
    result = spec.function(**args, **keywords)
    alpha = getattr(config, "rpo_alpha", 0.0)
    if alpha:  # RPO's NLL term on the chosen response, over the same tokens (losses/combine.py)
        result = losses.add_nll(result, args["chosen_logps"], args["chosen_mask"], alpha)
    return result
