"""Reference-free pairwise losses: SimPO, RRHF, SePO, ORPO and CPO. No reference model is loaded for them; each is
a pure function beside its declaration (core.py has the contract and the helpers).

Shared notation: chosen_logps, chosen_mask [B, R_c]; rejected_logps, rejected_mask [B, R_r]. The NLL term of ORPO
and CPO is the paper's per-pair mean over the chosen response's (selected) tokens, -mean_c logps, averaged over the
pairs like every pairwise term (`nll_per_pair`, also what rpo_alpha adds to any pairwise loss). TRL averages it over
all chosen tokens of a batch instead (and ORPO over prompt and response); the two agree when chosen responses have
equal lengths (tests/test_trl_parity_losses.py).
"""

from __future__ import annotations

from tokensift.losses.core import (F, LossOutput, _check_nonnegative, _check_pair, _check_positive, _masked_mean,
                                   _masked_sum, _mean_margin_loss, _pair_output, register, torch)


def nll_per_pair(who: str, chosen_logps, chosen_mask) -> torch.Tensor:
    """[B] the mean negative log-likelihood of each chosen response over its mask (an empty mask is an error)."""
    return -_masked_mean(who, "chosen", chosen_logps, chosen_mask)


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, without cancellation: log(-expm1(x)) near 0, log1p(-exp(x)) below -ln 2."""
    return torch.where(x > -0.6931471805599453, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


@register("simpo", "SimPO: reference-free, mean log-probs with a target margin",
          params={"beta": "beta", "simpo_gamma": "gamma"})
def simpo_loss(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, beta: float = 2.0,
               gamma: float = 0.5) -> LossOutput:
    """SimPO (Meng et al. 2024, Eq. 6; https://arxiv.org/abs/2405.14734). Reference-free.

    chosen_logps, chosen_mask: [B, R_c].   rejected_logps, rejected_mask: [B, R_r].
    mean_c, mean_r = mean policy log-prob over each side's mask (an empty mask is a ValueError):

        L = -log sigmoid(beta * mean_c - beta * mean_r - gamma)

    gamma is the absolute target margin (the official code's gamma_beta_ratio times beta).
    Implicit rewards: rewards/chosen = beta * mean_c, rewards/rejected = beta * mean_r; the margin metric
    does not subtract gamma.
    """
    _check_positive("simpo_loss", "beta", beta)
    _check_nonnegative("simpo_loss", "gamma", gamma)
    return _mean_margin_loss("simpo_loss", beta, gamma, chosen_logps, chosen_mask, rejected_logps, rejected_mask)


@register("rrhf", "RRHF: ranking hinge on mean log-probs plus SFT", params={"rrhf_sft_weight": "sft_weight"})
def rrhf_loss(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, sft_weight: float = 1.0) -> LossOutput:
    """RRHF with two candidates (Yuan et al. 2023, https://arxiv.org/abs/2304.05302). Reference-free.

    Shapes as in `simpo_loss`. p_c, p_r = mean policy log-prob over each side's mask (the paper's
    length-normalised score; an empty mask is a ValueError):

        L = max(0, p_r - p_c) + sft_weight * (-p_c)

    Implicit rewards: rewards/chosen = p_c, rewards/rejected = p_r. Also logs "loss/ranking" and "loss/sft"
    (the unweighted -p_c) per pair.
    """
    _check_nonnegative("rrhf_loss", "sft_weight", sft_weight)
    _check_pair("rrhf_loss", chosen_logps, chosen_mask, rejected_logps, rejected_mask)
    score_c = _masked_mean("rrhf_loss", "chosen", chosen_logps, chosen_mask)
    score_r = _masked_mean("rrhf_loss", "rejected", rejected_logps, rejected_mask)
    ranking = torch.relu(score_r - score_c)
    per_pair = ranking + sft_weight * -score_c
    extra = {"loss/ranking": ranking, "loss/sft": -score_c}
    return _pair_output(per_pair, score_c, score_r,
                        _masked_sum(chosen_logps, chosen_mask), _masked_sum(rejected_logps, rejected_mask), extra)


@register("sepo", "SePO: reference-free, mean log-prob over the oracle's key tokens",
          params={"sepo_gamma": "gamma", "sepo_margin": "margin"}, selection="required")
def sepo_loss(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, gamma: float = 1.0,
              margin: float = 0.0) -> LossOutput:
    """SePO policy objective (Yang et al., https://arxiv.org/abs/2408.13518; specs/sepo.md section 2.8).

    chosen_logps: [B, R_c], chosen_mask: [B, R_c] the selected key tokens (top-k% by oracle score).
    rejected_logps: [B, R_r], rejected_mask: [B, R_r] the selected key tokens (bottom-k% by oracle score).
    Reference-free:

        u(y, I) = gamma * mean_{i : I_i} logps_i          (gamma / (|y| k%) * sum_i I_i log pi(y_i | q, y_<i))
        L = -log sigmoid(u(y_w, I_w) - u(y_l, I_l) - margin)

    gamma = 1, margin = 0 is the official code; with full response masks this is SimPO(beta=1, gamma=0).
    A pair whose selection is empty on a side is a ValueError naming the batch index (the selection step
    keeps at least one token per response). Implicit rewards: rewards/chosen = u(y_w, I_w),
    rewards/rejected = u(y_l, I_l); logps/* are sums over the selected tokens.
    """
    _check_positive("sepo_loss", "gamma", gamma)
    _check_nonnegative("sepo_loss", "margin", margin)
    return _mean_margin_loss("sepo_loss", gamma, margin, chosen_logps, chosen_mask, rejected_logps, rejected_mask)


@register("orpo", "ORPO: reference-free, NLL plus an odds-ratio term on mean log-probs", params={"beta": "beta"})
def orpo_loss(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, beta: float = 0.1) -> LossOutput:
    """ORPO (Hong et al. 2024, Eqs. 4-7; https://arxiv.org/abs/2403.07691). Reference-free; beta is the paper's lambda.

    p_c, p_r = mean policy log-prob over each side's mask (the paper's length-normalised log P(y | x), < 0);
    odds(y) = P / (1 - P), so log odds = p - log(1 - exp(p)):

        log_or = (p_c - log(1 - exp(p_c))) - (p_r - log(1 - exp(p_r)))
        L = -p_c - beta * log sigmoid(log_or)

    rewards/* = beta * p (as TRL logs them); also logs "loss/nll" (-p_c), "log_odds_ratio" (log_or) and
    "log_odds_chosen" (log sigmoid(log_or)) per pair. A mean log-prob of exactly 0 (P = 1) has no odds: the loss is
    then infinite, as in the paper's formula.
    """
    who = "orpo_loss"
    _check_positive(who, "beta", beta)
    _check_pair(who, chosen_logps, chosen_mask, rejected_logps, rejected_mask)
    mean_c = _masked_mean(who, "chosen", chosen_logps, chosen_mask)
    mean_r = _masked_mean(who, "rejected", rejected_logps, rejected_mask)
    log_odds = (mean_c - mean_r) - (log1mexp(mean_c) - log1mexp(mean_r))
    ratio_term = F.logsigmoid(log_odds)
    per_pair = -mean_c - beta * ratio_term
    extra = {"loss/nll": -mean_c, "log_odds_ratio": log_odds, "log_odds_chosen": ratio_term}
    return _pair_output(per_pair, beta * mean_c, beta * mean_r, _masked_sum(chosen_logps, chosen_mask),
                        _masked_sum(rejected_logps, rejected_mask), extra)


@register("cpo", "CPO: reference-free sigmoid margin on summed log-probs plus NLL", params={"beta": "beta",
          "cpo_alpha": "alpha", "label_smoothing": "label_smoothing"})
def cpo_loss(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, beta: float = 0.1, alpha: float = 1.0,
             label_smoothing: float = 0.0) -> LossOutput:
    """CPO (Xu et al. 2024, Eq. 3 plus the NLL term; https://arxiv.org/abs/2401.08417), TRL's CPOTrainer with
    loss_type="sigmoid". Reference-free: DPO with the reference dropped.

    s_c, s_r = summed policy log-probs over each side's mask; eps = label_smoothing in [0, 0.5]:

        L = -(1 - eps) * log sigmoid(beta * (s_c - s_r)) - eps * log sigmoid(-beta * (s_c - s_r))
            + alpha * (-mean_c logps)

    rewards/* = beta * s; also logs "loss/nll" (-mean_c logps) per pair.
    """
    who = "cpo_loss"
    _check_positive(who, "beta", beta)
    _check_nonnegative(who, "alpha", alpha)
    if not 0 <= label_smoothing <= 0.5:
        raise ValueError(f"{who}: label_smoothing must lie in [0, 0.5], got {label_smoothing!r}")
    _check_pair(who, chosen_logps, chosen_mask, rejected_logps, rejected_mask)
    sum_c, sum_r = _masked_sum(chosen_logps, chosen_mask), _masked_sum(rejected_logps, rejected_mask)
    z = beta * (sum_c - sum_r)
    nll = nll_per_pair(who, chosen_logps, chosen_mask)
    per_pair = -(1 - label_smoothing) * F.logsigmoid(z) - label_smoothing * F.logsigmoid(-z) + alpha * nll
    return _pair_output(per_pair, beta * sum_c, beta * sum_r, sum_c, sum_r, {"loss/nll": nll})
