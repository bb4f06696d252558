"""Losses that anchor each side's log-ratio on its own, not only their difference: NCA, BCO on pairs, SPPO (hard
labels), APO-zero and APO-down. TRL's DPOTrainer loss types of those names; each a pure function beside its
declaration (core.py has the contract and the helpers).

Shared notation: chosen_logps, chosen_mask [B, R_c]; rejected_logps, rejected_mask [B, R_r]; ref_chosen_logps,
ref_rejected_logps [B] the reference's sums over the same masks. ratio_c = sum_c logps - ref_c, ratio_r likewise;
r_w = beta * ratio_c, r_l = beta * ratio_r (logged as rewards/chosen, rewards/rejected).
"""

from __future__ import annotations

from tokensift.losses.core import F, LossOutput, _check_positive, _logratios, _pair_output, register, torch


def _rewards(who, beta, chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps,
             ref_rejected_logps):
    _check_positive(who, "beta", beta)
    policy_c, policy_r, ratio_c, ratio_r = _logratios(
        who, chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps)
    return policy_c, policy_r, ratio_c, ratio_r


@register("nca_pair", "NCA: noise-contrastive alignment, absolute likelihood of each side", reference="cached",
          params={"beta": "beta"})
def nca_pair_loss(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps,
                  beta: float = 0.1) -> LossOutput:
    """NCA with a pair (Chen et al. 2024, "Noise Contrastive Alignment of Language Models with Explicit Rewards";
    https://arxiv.org/abs/2402.05369), TRL's "nca_pair":

        L = -log sigmoid(r_w) - 0.5 * log sigmoid(-r_w) - 0.5 * log sigmoid(-r_l)

    Unlike DPO it keeps the chosen likelihood from falling with the rejected one.
    """
    policy_c, policy_r, ratio_c, ratio_r = _rewards("nca_pair_loss", beta, chosen_logps, chosen_mask, rejected_logps,
                                                    rejected_mask, ref_chosen_logps, ref_rejected_logps)
    r_w, r_l = beta * ratio_c, beta * ratio_r
    per_pair = -F.logsigmoid(r_w) - 0.5 * F.logsigmoid(-r_w) - 0.5 * F.logsigmoid(-r_l)
    return _pair_output(per_pair, r_w, r_l, policy_c, policy_r)


@register("bco_pair", "BCO on pairs: chosen and rejected as two binary classifications", reference="cached",
          params={"beta": "beta"})
def bco_pair_loss(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps,
                  beta: float = 0.1) -> LossOutput:
    """Binary classifier optimisation on pairs (Jung et al. 2024, https://arxiv.org/abs/2404.04656), TRL's
    "bco_pair" (without the paper's running reward shift delta, as in TRL's pairwise form):

        L = -log sigmoid(r_w) - log sigmoid(-r_l)

    The unpaired form with the shift is `bco` (losses/unpaired.py, when present).
    """
    policy_c, policy_r, ratio_c, ratio_r = _rewards("bco_pair_loss", beta, chosen_logps, chosen_mask, rejected_logps,
                                                    rejected_mask, ref_chosen_logps, ref_rejected_logps)
    r_w, r_l = beta * ratio_c, beta * ratio_r
    per_pair = -F.logsigmoid(r_w) - F.logsigmoid(-r_l)
    return _pair_output(per_pair, r_w, r_l, policy_c, policy_r)


@register("sppo_hard", "SPPO with hard labels: squared distance of each log-ratio to +-1/(2 beta)",
          reference="cached", params={"beta": "beta"})
def sppo_hard_loss(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps,
                   ref_rejected_logps, beta: float = 0.1) -> LossOutput:
    """SPPO, hard-probability version (Wu et al. 2024, Eq. 4.7 with P = 1 for the winner and 0 for the loser;
    https://arxiv.org/abs/2405.00675), TRL's "sppo_hard". beta is the paper's 1/eta:

        L = (ratio_c - 1 / (2 * beta))^2 + (ratio_r + 1 / (2 * beta))^2
    """
    policy_c, policy_r, ratio_c, ratio_r = _rewards("sppo_hard_loss", beta, chosen_logps, chosen_mask,
                                                    rejected_logps, rejected_mask, ref_chosen_logps,
                                                    ref_rejected_logps)
    per_pair = (ratio_c - 0.5 / beta) ** 2 + (ratio_r + 0.5 / beta) ** 2
    return _pair_output(per_pair, beta * ratio_c, beta * ratio_r, policy_c, policy_r)


@register("apo_zero", "APO-zero: raise chosen, lower rejected likelihood (chosen better than the model)",
          reference="cached", params={"beta": "beta"})
def apo_zero_loss(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps,
                  beta: float = 0.1) -> LossOutput:
    """APO-zero (D'Oosterlinck et al. 2024, Eq. 7; https://arxiv.org/abs/2408.06266), TRL's "apo_zero". For data
    whose chosen responses are better than the model's own outputs:

        L = (1 - sigmoid(r_w)) + sigmoid(r_l)
    """
    policy_c, policy_r, ratio_c, ratio_r = _rewards("apo_zero_loss", beta, chosen_logps, chosen_mask, rejected_logps,
                                                    rejected_mask, ref_chosen_logps, ref_rejected_logps)
    r_w, r_l = beta * ratio_c, beta * ratio_r
    per_pair = (1 - torch.sigmoid(r_w)) + torch.sigmoid(r_l)
    return _pair_output(per_pair, r_w, r_l, policy_c, policy_r)


@register("apo_down", "APO-down: lower both likelihoods, rejected more (chosen worse than the model)",
          reference="cached", params={"beta": "beta"})
def apo_down_loss(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps,
                  beta: float = 0.1) -> LossOutput:
    """APO-down (D'Oosterlinck et al. 2024, Eq. 8; https://arxiv.org/abs/2408.06266), TRL's "apo_down". For data
    whose chosen responses are worse than the model's own outputs:

        L = sigmoid(r_w) + (1 - sigmoid(r_w - r_l))
    """
    policy_c, policy_r, ratio_c, ratio_r = _rewards("apo_down_loss", beta, chosen_logps, chosen_mask, rejected_logps,
                                                    rejected_mask, ref_chosen_logps, ref_rejected_logps)
    r_w, r_l = beta * ratio_c, beta * ratio_r
    per_pair = torch.sigmoid(r_w) + (1 - torch.sigmoid(r_w - r_l))
    return _pair_output(per_pair, r_w, r_l, policy_c, policy_r)
