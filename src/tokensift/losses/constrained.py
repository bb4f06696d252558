"""DPO with a constraint beyond the sequence margin: TDPO's sequential KL to a live reference, TSO's dual clip (with
an optional per-pair target margin). Pure functions beside their declarations (core.py has the contract and the
helpers)."""

from __future__ import annotations

import math

from tokensift.losses.core import (F, LossOutput, _check_clip, _check_nonnegative, _check_positive, _logratios,
                                   _masked_sum, _pair_output, register, torch)


@register("tdpo", "token-level DPO: margin plus sequential KL to a live reference", reference="live",
          params={"beta": "beta", "tdpo_alpha": "alpha", "tdpo_variant": "variant"}, token_weights=False)
def tdpo_loss(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps,
              chosen_kl, rejected_kl, beta: float = 0.1, alpha: float = 0.5, variant: int = 2) -> LossOutput:
    """Token-level DPO (Zeng et al. ICML 2024, https://arxiv.org/abs/2404.11999).

    Shapes as in `dpo_loss`, plus chosen_kl [B, R_c] and rejected_kl [B, R_r]: per position
    KL(pi_ref(. | s_t) || pi(. | s_t)) over the full vocabulary. Sequence KLs are masked sums:
    D_c = sum_c chosen_kl, D_r = sum_r rejected_kl. With h as in `dpo_loss`:

        TDPO1:  u = h - (D_r - D_c)
        TDPO2:  u = h - alpha * (D_r - sg(D_c))        (sg = stop-gradient)
        L = -log sigmoid(beta * u)

    This is the reference TDPO code's convention, the paper's objectives with u = beta * h and
    delta = beta * (D_r - D_c): beta scales the whole bracket, alpha only the KL difference (alpha is unused
    by TDPO1). TDPO2 passes no gradient through chosen_kl.
    rewards/* = beta * (policy sum - reference sum), like DPO (the reference code logs
    beta * (log-ratio + KL) instead); "kl/chosen" and "kl/rejected" log D_c and D_r.
    """
    who = "tdpo_loss"
    _check_positive(who, "beta", beta)
    if variant not in (1, 2):
        raise ValueError(f"{who}: variant must be 1 (TDPO1) or 2 (TDPO2), got {variant!r}")
    _check_nonnegative(who, "alpha", alpha)
    if chosen_kl.shape != chosen_logps.shape or rejected_kl.shape != rejected_logps.shape:
        raise ValueError(
            f"{who}: chosen_kl {tuple(chosen_kl.shape)} / rejected_kl {tuple(rejected_kl.shape)} must match "
            f"chosen_logps {tuple(chosen_logps.shape)} / rejected_logps {tuple(rejected_logps.shape)}"
        )
    policy_c, policy_r, ratio_c, ratio_r = _logratios(
        who, chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps
    )
    kl_c = _masked_sum(chosen_kl, chosen_mask)
    kl_r = _masked_sum(rejected_kl, rejected_mask)
    if variant == 1:
        logits = (ratio_c - ratio_r) - (kl_r - kl_c)
    else:
        logits = (ratio_c - ratio_r) - alpha * (kl_r - kl_c.detach())
    per_pair = -F.logsigmoid(beta * logits)
    extra = {"kl/chosen": kl_c, "kl/rejected": kl_r}
    return _pair_output(per_pair, beta * ratio_c, beta * ratio_r, policy_c, policy_r, extra)


@register("tso", "TSO dual-clip DPO", reference="cached",
          params={"beta": "beta", "clip_chosen": "clip_chosen", "clip_rejected": "clip_rejected",
                  "clip_mode": "mode", "clip_margin_low": "clip_margin_low",
                  "clip_margin_high": "clip_margin_high"}, pair_inputs=("target_margin",))
def tso_loss(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps,
             beta: float = 0.1, clip_chosen: float = 2.0, clip_rejected: float = 2.0, mode: str = "per_reward",
             clip_margin_low: float | None = None, clip_margin_high: float | None = None,
             target_margin: torch.Tensor | None = None) -> LossOutput:
    """TSO dual-clip DPO (Chen et al. 2024, https://arxiv.org/abs/2409.02118; specs/tso.md section 3.6).

    Shapes as in `dpo_loss`. r_w = beta * (sum_c logps - ref_c), r_l = beta * (sum_r logps - ref_r).

        mode "per_reward" (default):  z = min(r_w, c_w) - max(r_l, -c_l)
        mode "margin":                z = clamp(r_w - r_l, -c_low, +c_high)
        L = -log sigmoid(z - m)

    m = target_margin: an optional per-pair [B] target margin (constant, >= 0), the "scaled" of TSO's name in
    the spec's reading (ii): it grows with the two responses' distance in the model matrix (docs/tso.md).
    None: m = 0. The clip bounds z, not z - m: a pair clipped on both sides has z = c_w + c_l, so a margin
    above that leaves it a loss it cannot lower (and no gradient), like any clipped pair. "rewards/target_margin"
    logs m.

    c_w = clip_chosen, c_l = clip_rejected (used only by "per_reward"; inf disables a side);
    c_low = clip_margin_low, c_high = clip_margin_high (only for "margin"; None leaves that side open, at
    least one is required). Clipping is a clamp, so a term past its bound gets zero gradient. The formula is
    the spec's primary reading (reading B for "margin"); the paper's exact form was not available.
    rewards/* are the unclipped r_w, r_l. Indicators per pair (mean = fraction clipped):
    "clip/chosen_fraction" (r_w > c_w), "clip/rejected_fraction" (r_l < -c_l); in margin mode
    "clip/margin_low_fraction" (r_w - r_l < -c_low), "clip/margin_high_fraction" (r_w - r_l > c_high).
    """
    who = "tso_loss"
    _check_positive(who, "beta", beta)
    policy_c, policy_r, ratio_c, ratio_r = _logratios(
        who, chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps
    )
    reward_c, reward_r = beta * ratio_c, beta * ratio_r
    if mode == "per_reward":
        if clip_margin_low is not None or clip_margin_high is not None:
            raise ValueError(f"{who}: clip_margin_low/clip_margin_high apply only to mode='margin'")
        _check_clip(who, "clip_chosen", clip_chosen)
        _check_clip(who, "clip_rejected", clip_rejected)
        z = reward_c.clamp(max=clip_chosen) - reward_r.clamp(min=-clip_rejected)
        extra = {
            "clip/chosen_fraction": (reward_c > clip_chosen).float(),
            "clip/rejected_fraction": (reward_r < -clip_rejected).float(),
        }
    elif mode == "margin":
        if clip_margin_low is None and clip_margin_high is None:
            raise ValueError(f"{who}: mode='margin' needs clip_margin_low and/or clip_margin_high")
        low = -math.inf if clip_margin_low is None else -clip_margin_low
        high = math.inf if clip_margin_high is None else clip_margin_high
        _check_clip(who, "clip_margin_low", -low)
        _check_clip(who, "clip_margin_high", high)
        reward_margin = reward_c - reward_r
        z = reward_margin.clamp(min=low, max=high)
        extra = {
            "clip/margin_low_fraction": (reward_margin < low).float(),
            "clip/margin_high_fraction": (reward_margin > high).float(),
        }
    else:
        raise ValueError(f"{who}: mode must be 'per_reward' or 'margin', got {mode!r}")
    if target_margin is not None:
        if tuple(target_margin.shape) != tuple(z.shape):
            raise ValueError(f"{who}: target_margin must have shape [B] = {tuple(z.shape)}, got "
                             f"{tuple(target_margin.shape)}")
        margin = target_margin.detach().float()
        z = z - margin
        extra["rewards/target_margin"] = margin
    per_pair = -F.logsigmoid(z)
    return _pair_output(per_pair, reward_c, reward_r, policy_c, policy_r, extra)
