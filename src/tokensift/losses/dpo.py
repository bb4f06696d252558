"""The DPO family on the sequence log-ratio margin: DPO, IPO, cDPO, robust DPO, hinge, and TRL's loss types on the
same margin (length-normalised sigmoid, EXO, DiscoPOP, AOT paired and unpaired). Each loss is a pure function beside
its declaration (core.py has the contract and the helpers).

Shared notation: chosen_logps, chosen_mask [B, R_c]; rejected_logps, rejected_mask [B, R_r]; ref_chosen_logps,
ref_rejected_logps [B] the reference's sums over the same masks. ratio_c = sum_c logps - ref_c, ratio_r likewise,
h = ratio_c - ratio_r. rewards/* = beta * ratio (as TRL logs them), unless a docstring says otherwise.
"""

from __future__ import annotations

import math

from tokensift.losses.core import (F, LossOutput, _check_positive, _logratios, _mask_count, _pair_output, register,
                                   torch)

@register("dpo", "sigmoid DPO on summed log-ratios", reference="cached", params={"beta": "beta"})
def dpo_loss(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps,
             beta: float = 0.1) -> LossOutput:
    """Sigmoid DPO (Rafailov et al. 2023, Eq. 7; https://arxiv.org/abs/2305.18290).

    chosen_logps, chosen_mask: [B, R_c].   rejected_logps, rejected_mask: [B, R_r].
    ref_chosen_logps, ref_rejected_logps: [B] reference sums over the same masks.

        h = (sum_c logps - ref_c) - (sum_r logps - ref_r)
        L = -log sigmoid(beta * h)

    rewards/* = beta * (policy sum - reference sum), as in TRL.
    """
    _check_positive("dpo_loss", "beta", beta)
    policy_c, policy_r, ratio_c, ratio_r = _logratios(
        "dpo_loss", chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps
    )
    per_pair = -F.logsigmoid(beta * (ratio_c - ratio_r))
    return _pair_output(per_pair, beta * ratio_c, beta * ratio_r, policy_c, policy_r)


@register("ipo", "IPO: squared loss on length-normalised log-ratios", reference="cached", params={"beta": "beta"})
def ipo_loss(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps,
             beta: float = 0.1) -> LossOutput:
    """IPO (Azar et al. 2023, Eq. 17; https://arxiv.org/abs/2310.12036), with TRL's length normalisation.

    Shapes as in `dpo_loss`. beta is the paper's tau. n_c, n_r = masked tokens per side (at least 1):

        h = (sum_c logps - ref_c) / n_c - (sum_r logps - ref_r) / n_r
        L = (h - 1 / (2 * beta))^2

    Dividing each side's log-ratio by its length is TRL's choice (confirmed with the IPO authors there); it
    keeps the squared loss from growing with response length. rewards/* = beta * (policy sum - reference sum).
    """
    _check_positive("ipo_loss", "beta", beta)
    policy_c, policy_r, ratio_c, ratio_r = _logratios(
        "ipo_loss", chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps
    )
    length_c = _mask_count(chosen_mask).clamp(min=1.0)
    length_r = _mask_count(rejected_mask).clamp(min=1.0)
    per_pair = (ratio_c / length_c - ratio_r / length_r - 1 / (2 * beta)) ** 2
    return _pair_output(per_pair, beta * ratio_c, beta * ratio_r, policy_c, policy_r)


@register("cdpo", "conservative DPO for noisy labels", reference="cached",
          params={"beta": "beta", "label_smoothing": "label_smoothing"})
def cdpo_loss(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps,
              beta: float = 0.1, label_smoothing: float = 0.1) -> LossOutput:
    """Conservative DPO (Mitchell 2023, "A note on DPO with noisy preferences", https://ericmitchell.ai/cdpo.pdf).

    Shapes as in `dpo_loss`; h as in `dpo_loss`; eps = label_smoothing in [0, 0.5], the assumed probability
    that a label is flipped:

        L = -(1 - eps) * log sigmoid(beta * h) - eps * log sigmoid(-beta * h)

    rewards/* = beta * (policy sum - reference sum).
    """
    _check_positive("cdpo_loss", "beta", beta)
    if not 0 <= label_smoothing <= 0.5:
        raise ValueError(f"cdpo_loss: label_smoothing must lie in [0, 0.5], got {label_smoothing!r}")
    policy_c, policy_r, ratio_c, ratio_r = _logratios(
        "cdpo_loss", chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps
    )
    logits = beta * (ratio_c - ratio_r)
    per_pair = -(1 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)
    return _pair_output(per_pair, beta * ratio_c, beta * ratio_r, policy_c, policy_r)


@register("robust", "robust DPO: unbiased under label noise", reference="cached",
          params={"beta": "beta", "label_smoothing": "label_smoothing"})
def robust_dpo_loss(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps,
                    ref_rejected_logps, beta: float = 0.1, label_smoothing: float = 0.1) -> LossOutput:
    """Robust DPO (Chowdhury et al. 2024, https://arxiv.org/abs/2403.00409), TRL's "robust" loss.

    Shapes as in `dpo_loss`; h as in `dpo_loss`; eps = label_smoothing in [0, 0.5), the flip rate:

        L = ( -(1 - eps) * log sigmoid(beta * h) + eps * log sigmoid(-beta * h) ) / (1 - 2 * eps)

    Unlike cDPO this is an unbiased estimate of the clean-label DPO loss. rewards/* as in `dpo_loss`.
    """
    _check_positive("robust_dpo_loss", "beta", beta)
    if not 0 <= label_smoothing < 0.5:
        raise ValueError(f"robust_dpo_loss: label_smoothing must lie in [0, 0.5), got {label_smoothing!r}")
    policy_c, policy_r, ratio_c, ratio_r = _logratios(
        "robust_dpo_loss", chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps,
        ref_rejected_logps,
    )
    logits = beta * (ratio_c - ratio_r)
    clean = -(1 - label_smoothing) * F.logsigmoid(logits)
    flipped = -label_smoothing * F.logsigmoid(-logits)
    per_pair = (clean - flipped) / (1 - 2 * label_smoothing)
    return _pair_output(per_pair, beta * ratio_c, beta * ratio_r, policy_c, policy_r)


@register("hinge", "SLiC-style hinge on the log-ratio margin", reference="cached", params={"beta": "beta"})
def hinge_loss(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps,
               beta: float = 0.1) -> LossOutput:
    """SLiC-style hinge (Zhao et al. 2023, https://arxiv.org/abs/2305.10425), TRL's "hinge" form.

    Shapes as in `dpo_loss`; h as in `dpo_loss`:   L = max(0, 1 - beta * h)

    rewards/* = beta * (policy sum - reference sum).
    """
    _check_positive("hinge_loss", "beta", beta)
    policy_c, policy_r, ratio_c, ratio_r = _logratios(
        "hinge_loss", chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps
    )
    per_pair = torch.relu(1 - beta * (ratio_c - ratio_r))
    return _pair_output(per_pair, beta * ratio_c, beta * ratio_r, policy_c, policy_r)



@register("sigmoid_norm", "sigmoid DPO on length-normalised log-ratios (TRL's sigmoid_norm)", reference="cached",
          params={"beta": "beta"})
def sigmoid_norm_loss(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps,
                      ref_rejected_logps, beta: float = 0.1) -> LossOutput:
    """Sigmoid DPO on per-token log-ratios (TRL's "sigmoid_norm"; DPO, Rafailov et al. 2023,
    https://arxiv.org/abs/2305.18290, with each side divided by its length as in IPO).

    n_c, n_r = masked tokens (weights' sum) per side, at least 1:

        L = -log sigmoid(beta * (ratio_c / n_c - ratio_r / n_r))
    """
    _check_positive("sigmoid_norm_loss", "beta", beta)
    policy_c, policy_r, ratio_c, ratio_r = _logratios(
        "sigmoid_norm_loss", chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps,
        ref_rejected_logps)
    norm = ratio_c / _mask_count(chosen_mask).clamp(min=1.0) - ratio_r / _mask_count(rejected_mask).clamp(min=1.0)
    per_pair = -F.logsigmoid(beta * norm)
    return _pair_output(per_pair, beta * ratio_c, beta * ratio_r, policy_c, policy_r)


@register("exo_pair", "EXO: reverse KL to label-smoothed preferences", reference="cached",
          params={"beta": "beta", "label_smoothing": "epsilon"})
def exo_pair_loss(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps,
                  beta: float = 0.1, epsilon: float = 1e-3) -> LossOutput:
    """EXO-pref with two responses (Ji et al. 2024, Eq. 16; https://arxiv.org/abs/2402.00856), TRL's "exo_pair".

    The policy's preference distribution over {chosen, rejected} is q = softmax(beta * ratio), i.e.
    q_w = sigmoid(beta * h), q_l = sigmoid(-beta * h); the label-smoothed target is p = (1 - eps, eps), eps in (0, 1):

        L = KL(q || p) = q_w * (log q_w - log(1 - eps)) + q_l * (log q_l - log eps)

    The paper recommends eps = 1e-3 (the default here when label_smoothing is unset).
    """
    _check_positive("exo_pair_loss", "beta", beta)
    if not 0 < epsilon < 1:
        raise ValueError(f"exo_pair_loss: label_smoothing (epsilon) must lie in (0, 1), got {epsilon!r}")
    policy_c, policy_r, ratio_c, ratio_r = _logratios(
        "exo_pair_loss", chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps,
        ref_rejected_logps)
    z = beta * (ratio_c - ratio_r)
    log_qw, log_ql = F.logsigmoid(z), F.logsigmoid(-z)
    per_pair = log_qw.exp() * (log_qw - math.log1p(-epsilon)) + log_ql.exp() * (log_ql - math.log(epsilon))
    return _pair_output(per_pair, beta * ratio_c, beta * ratio_r, policy_c, policy_r)


@register("discopop", "DiscoPOP: log-ratio modulated mix of logistic and exponential losses", reference="cached",
          params={"beta": "beta", "discopop_tau": "tau"})
def discopop_loss(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps,
                  beta: float = 0.1, tau: float = 0.05) -> LossOutput:
    """DiscoPOP / LRML (Chris Lu et al. 2024, Eq. 5; https://arxiv.org/abs/2406.08414), TRL's "discopop".

    With z = beta * h and the mixing weight m = sigmoid(z / tau) (tau > 0, the paper's 0.05):

        L = (1 - m) * (-log sigmoid(z)) + m * exp(-z)

    m carries gradient, as in the paper's code and TRL.
    """
    _check_positive("discopop_loss", "beta", beta)
    _check_positive("discopop_loss", "tau", tau)
    policy_c, policy_r, ratio_c, ratio_r = _logratios(
        "discopop_loss", chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps,
        ref_rejected_logps)
    z = beta * (ratio_c - ratio_r)
    mix = torch.sigmoid(z / tau)
    per_pair = (1 - mix) * -F.logsigmoid(z) + mix * torch.exp(-z)
    return _pair_output(per_pair, beta * ratio_c, beta * ratio_r, policy_c, policy_r)


def _sorted_smoothed(z: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    return -(1 - label_smoothing) * F.logsigmoid(z) - label_smoothing * F.logsigmoid(-z)


@register("aot", "AOT: distributional DPO, sorted policy vs reference margins over the batch", reference="cached",
          params={"beta": "beta", "label_smoothing": "label_smoothing"})
def aot_loss(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps,
             beta: float = 0.1, label_smoothing: float = 0.0) -> LossOutput:
    """AOT, paired (Melnyk et al. 2024, https://arxiv.org/abs/2406.05882), TRL's "aot".

    Within the micro-batch, sort the policy margins m = sum_c logps - sum_r logps and the reference margins
    m_ref = ref_c - ref_r separately (ascending); with d_(k) = m_(k) - m_ref_(k) the k-th order statistics:

        L = mean_k [ -(1 - eps) * log sigmoid(beta * d_(k)) - eps * log sigmoid(-beta * d_(k)) ]

    eps = label_smoothing in [0, 0.5]. The loss couples the pairs of a micro-batch (its order statistics), so unlike
    the other losses it depends on how pairs are grouped: gradient accumulation over micro-batches of 1 pair is
    plain DPO. Use a micro-batch of several pairs (TRL sorts each device's batch the same way).
    """
    _check_positive("aot_loss", "beta", beta)
    if not 0 <= label_smoothing <= 0.5:
        raise ValueError(f"aot_loss: label_smoothing must lie in [0, 0.5], got {label_smoothing!r}")
    policy_c, policy_r, ratio_c, ratio_r = _logratios(
        "aot_loss", chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps)
    margin, _ = torch.sort(policy_c - policy_r)
    ref_margin, _ = torch.sort(ref_chosen_logps.detach().float() - ref_rejected_logps.detach().float())
    per_pair = _sorted_smoothed(beta * (margin - ref_margin), label_smoothing)
    return _pair_output(per_pair, beta * ratio_c, beta * ratio_r, policy_c, policy_r)


@register("aot_unpaired", "AOT unpaired: sorted chosen vs sorted rejected log-ratios over the batch",
          reference="cached", params={"beta": "beta", "label_smoothing": "label_smoothing"})
def aot_unpaired_loss(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps,
                      ref_rejected_logps, beta: float = 0.1, label_smoothing: float = 0.0) -> LossOutput:
    """AOT, unpaired (Melnyk et al. 2024, https://arxiv.org/abs/2406.05882), TRL's "aot_unpaired".

    Within the micro-batch, sort ratio_c and ratio_r separately (ascending); with d_(k) = ratio_c_(k) - ratio_r_(k):

        L = mean_k [ -(1 - eps) * log sigmoid(beta * d_(k)) - eps * log sigmoid(-beta * d_(k)) ]

    The chosen and rejected responses are compared as two distributions (first-order stochastic dominance), not as
    pairs. Couples the micro-batch as `aot_loss` does.
    """
    _check_positive("aot_unpaired_loss", "beta", beta)
    if not 0 <= label_smoothing <= 0.5:
        raise ValueError(f"aot_unpaired_loss: label_smoothing must lie in [0, 0.5], got {label_smoothing!r}")
    policy_c, policy_r, ratio_c, ratio_r = _logratios(
        "aot_unpaired_loss", chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps,
        ref_rejected_logps)
    sorted_c, _ = torch.sort(ratio_c)
    sorted_r, _ = torch.sort(ratio_r)
    per_pair = _sorted_smoothed(beta * (sorted_c - sorted_r), label_smoothing)
    return _pair_output(per_pair, beta * ratio_c, beta * ratio_r, policy_c, policy_r)
