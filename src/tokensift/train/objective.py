"""From a batch and a config to the loss: which tokens the policy reads, and which loss function gets them."""

from __future__ import annotations

import torch

from tokensift import losses
from tokensift.data.collate import PairBatch, SequenceBatch


def read_mask(config, batch) -> torch.Tensor:
    """The labels whose log-probs the loss reads: SePO's key tokens, else every response token."""
    if config.loss == "sepo":
        if batch.select_mask is None:
            raise RuntimeError("loss=sepo needs a batch with a key-token selection mask")
        return batch.select_mask
    return batch.response_mask


def loss_units(config, pair) -> float:
    """What a loss averages over for one pair: tokens for SFT (token-mean), else one pair."""
    return float(len(pair.chosen_ids)) if config.loss == "sft" else 1.0


def compute_loss(config, batch: PairBatch | SequenceBatch, logps, kl=None, ref_token_logps=None) -> losses.LossOutput:
    """Dispatch to the pure loss function of `config.loss` with its hyperparameters.

    logps: [N, R] policy log-probs in label space (N = B sequences for SFT, 2B for pairs).
    kl, ref_token_logps: TDPO's per-label KL(ref || policy) and reference log-probs, from the live reference.
    """
    mask = read_mask(config, batch)
    if config.loss == "sft":
        return losses.sft_loss(logps=logps, mask=mask)
    sides = dict(
        chosen_logps=batch.chosen(logps), chosen_mask=batch.chosen(mask),
        rejected_logps=batch.rejected(logps), rejected_mask=batch.rejected(mask),
    )
    beta = config.effective_beta
    if config.loss == "simpo":
        return losses.simpo_loss(**sides, beta=beta, gamma=config.simpo_gamma)
    if config.loss == "rrhf":
        return losses.rrhf_loss(**sides, sft_weight=config.rrhf_sft_weight)
    if config.loss == "sepo":
        return losses.sepo_loss(**sides, gamma=config.sepo_gamma, margin=config.sepo_margin)
    if config.loss == "tdpo":
        ref_sums = torch.where(mask, ref_token_logps, torch.zeros_like(ref_token_logps)).sum(-1)
        return losses.tdpo_loss(
            **sides, ref_chosen_logps=batch.chosen(ref_sums), ref_rejected_logps=batch.rejected(ref_sums),
            chosen_kl=batch.chosen(kl), rejected_kl=batch.rejected(kl), beta=beta, alpha=config.tdpo_alpha,
            variant=config.tdpo_variant,
        )
    refs = dict(ref_chosen_logps=batch.chosen(batch.ref_logps), ref_rejected_logps=batch.rejected(batch.ref_logps))
    if config.loss == "dpo":
        return losses.dpo_loss(**sides, **refs, beta=beta)
    if config.loss == "ipo":
        return losses.ipo_loss(**sides, **refs, beta=beta)
    if config.loss == "cdpo":
        return losses.cdpo_loss(**sides, **refs, beta=beta, label_smoothing=config.label_smoothing)
    if config.loss == "robust":
        return losses.robust_dpo_loss(**sides, **refs, beta=beta, label_smoothing=config.label_smoothing)
    if config.loss == "hinge":
        return losses.hinge_loss(**sides, **refs, beta=beta)
    if config.loss == "tso":
        return losses.tso_loss(
            **sides, **refs, beta=beta, clip_chosen=config.clip_chosen, clip_rejected=config.clip_rejected,
            mode=config.clip_mode, clip_margin_low=config.clip_margin_low, clip_margin_high=config.clip_margin_high,
        )
    raise ValueError(f"unknown loss {config.loss}")
