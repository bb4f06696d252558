"""Losses on unpaired data (data/unpaired.py): KTO, BCO and APO-zero (unpaired). Each row of a batch is one
completion with its label (desirable or not) and a mismatched completion under the same prompt, which the engine
lays out as a pair:

    chosen_logps, chosen_mask [B, R_c]:      the row's completion y under its prompt x;
    rejected_logps, rejected_mask [B, R_r]:  the mismatched completion y' (another row's) under x;
    ref_chosen_logps, ref_rejected_logps [B]: the reference's sums over the same masks;
    label [B]:                               1.0 for a desirable completion, 0.0 for an undesirable one.

r = sum_c logps - ref_c is the completion's log-ratio. Pure functions beside their declarations (core.py has the
contract and the helpers). Token selection is refused: no selector scores a mismatched completion, and an
unpaired row has no rejected response for a selection to contrast with.
"""

from __future__ import annotations

from tokensift.losses.core import (F, LossOutput, _check_nonnegative, _check_positive, _logratios, register,
                                   torch)

NO_SELECTION = ("the KL reference point is estimated from mismatched completions, which no selector scores, and an "
                "unpaired row has no rejected response for a selection to contrast with")


def _labels(who: str, label, batch: int) -> torch.Tensor:
    if label is None:
        raise ValueError(f"{who}: needs each row's label (unpaired data: prompt, completion, label)")
    if tuple(label.shape) != (batch,):
        raise ValueError(f"{who}: label must have shape [B] = ({batch},), got {tuple(label.shape)}")
    return label.detach().float() > 0.5


def _unpaired_inputs(who, beta, desirable_weight, undesirable_weight, label, chosen_logps, chosen_mask,
                     rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps):
    """The settings checked, then (policy sum of the completion, its log-ratio r, the mismatched log-ratio, the
    desirable mask) for a batch of unpaired rows."""
    _check_positive(who, "beta", beta)
    _check_nonnegative(who, "desirable_weight", desirable_weight)
    _check_nonnegative(who, "undesirable_weight", undesirable_weight)
    policy_c, _, ratio, mismatched = _logratios(who, chosen_logps, chosen_mask, rejected_logps, rejected_mask,
                                                ref_chosen_logps, ref_rejected_logps)
    return policy_c, ratio, mismatched, _labels(who, label, ratio.shape[0])


def _unpaired_output(per_row, rewards, desirable, policy_c, extra) -> LossOutput:
    """Metrics per row: rewards/desirable and rewards/undesirable hold the row's reward on its side and NaN-free
    zeros on the other, with rewards/desirable_count / undesirable_count (0/1) to average them by."""
    zero = torch.zeros_like(rewards)
    metrics = {"rewards/chosen": torch.where(desirable, rewards, zero),
               "rewards/rejected": torch.where(desirable, zero, rewards),
               "count/desirable": desirable.float(), "count/undesirable": (~desirable).float(),
               "logps/completion": policy_c, **extra}
    metrics = {name: value.detach() for name, value in metrics.items()}
    return LossOutput(loss=per_row.mean(), count=float(per_row.shape[0]), metrics=metrics)


@register("kto", "KTO: unpaired desirable/undesirable completions against a KL reference point", reference="cached",
          params={"beta": "beta", "desirable_weight": "desirable_weight", "undesirable_weight": "undesirable_weight"},
          pair_inputs=("label",), data="unpaired", no_selection=NO_SELECTION)
def kto_loss(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps,
             beta: float = 0.1, desirable_weight: float = 1.0, undesirable_weight: float = 1.0,
             label: torch.Tensor | None = None) -> LossOutput:
    """KTO (Ethayarajh et al. 2024, Eqs. 7-8; https://arxiv.org/abs/2402.01306), TRL's KTOTrainer loss_type="kto".

    The reference point z0 is the batch's KL estimate from the mismatched pairs, clamped at 0 and a constant (no
    gradient), as in the paper and TRL: z0 = max(0, mean_j (sum_{r,j} logps - ref_{r,j})). Then per row:

        desirable:    L = desirable_weight   * (1 - sigmoid(beta * (r - z0)))
        undesirable:  L = undesirable_weight * (1 - sigmoid(beta * (z0 - r)))

    and `loss` is their mean over the rows (TRL's mean of the weighted losses). z0 couples the rows of a
    micro-batch (TRL's per-device batch likewise): use micro-batches of several rows. The paper advises
    desirable_weight * n_desirable / (undesirable_weight * n_undesirable) in [1, 4/3].
    Metrics: rewards/chosen = beta * r on desirable rows (0 elsewhere), rewards/rejected on undesirable rows,
    count/desirable, count/undesirable (0/1 per row: a side's mean is its sum over its count), "kl" (z0).
    """
    policy_c, ratio, mismatched, desirable = _unpaired_inputs(
        "kto_loss", beta, desirable_weight, undesirable_weight, label, chosen_logps, chosen_mask, rejected_logps,
        rejected_mask, ref_chosen_logps, ref_rejected_logps)
    z0 = mismatched.detach().mean().clamp(min=0)
    per_row = torch.where(desirable, desirable_weight * (1 - torch.sigmoid(beta * (ratio - z0))),
                          undesirable_weight * (1 - torch.sigmoid(beta * (z0 - ratio))))
    return _unpaired_output(per_row, beta * ratio, desirable, policy_c, {"kl": z0.expand_as(ratio)})


@register("bco", "BCO: unpaired completions as a binary classifier, reward shifted by its batch mean",
          reference="cached", params={"beta": "beta", "desirable_weight": "desirable_weight",
                                      "undesirable_weight": "undesirable_weight"},
          pair_inputs=("label",), data="unpaired", no_selection=NO_SELECTION)
def bco_loss(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps,
             beta: float = 0.1, desirable_weight: float = 1.0, undesirable_weight: float = 1.0,
             label: torch.Tensor | None = None) -> LossOutput:
    """BCO (Jung et al. 2024, Eq. 9 with the reward shift delta; https://arxiv.org/abs/2404.04656).

    With the reward s = beta * r and delta the mean of the (detached) rewards of the micro-batch's rows:

        desirable:    L = -desirable_weight   * log sigmoid(s - delta)
        undesirable:  L = -undesirable_weight * log sigmoid(-(s - delta))

    The paper's delta is a running mean of rewards over training (TRL's BCOTrainer keeps one across steps); a
    pure function has no state across steps, so delta is the micro-batch's mean, which couples its rows like
    KTO's z0. The mismatched completion is not read (BCO needs no KL estimate); its forward is the price of the
    one engine (about the cost of a pair). TRL's optional density-ratio classifier (UDM) is not here.
    Metrics as in `kto_loss`, with "delta" instead of "kl".
    """
    policy_c, ratio, _, desirable = _unpaired_inputs(
        "bco_loss", beta, desirable_weight, undesirable_weight, label, chosen_logps, chosen_mask, rejected_logps,
        rejected_mask, ref_chosen_logps, ref_rejected_logps)
    rewards = beta * ratio
    delta = rewards.detach().mean()
    per_row = torch.where(desirable, -desirable_weight * F.logsigmoid(rewards - delta),
                          -undesirable_weight * F.logsigmoid(-(rewards - delta)))
    return _unpaired_output(per_row, rewards, desirable, policy_c, {"delta": delta.expand_as(ratio)})


@register("apo_zero_unpaired", "APO-zero on unpaired rows: raise desirable, lower undesirable likelihood",
          reference="cached", params={"beta": "beta", "desirable_weight": "desirable_weight",
                                      "undesirable_weight": "undesirable_weight"},
          pair_inputs=("label",), data="unpaired", no_selection=NO_SELECTION)
def apo_zero_unpaired_loss(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps,
                           ref_rejected_logps, beta: float = 0.1, desirable_weight: float = 1.0,
                           undesirable_weight: float = 1.0, label: torch.Tensor | None = None) -> LossOutput:
    """APO-zero for unpaired data (D'Oosterlinck et al. 2024, Eq. 7 split by label; https://arxiv.org/abs/2408.06266),
    TRL's KTOTrainer loss_type="apo_zero_unpaired". No reference point (the mismatched completion is not read):

        desirable:    L = desirable_weight   * (1 - sigmoid(beta * r))
        undesirable:  L = undesirable_weight * sigmoid(beta * r)

    Metrics as in `kto_loss`, without "kl".
    """
    policy_c, ratio, _, desirable = _unpaired_inputs(
        "apo_zero_unpaired_loss", beta, desirable_weight, undesirable_weight, label, chosen_logps, chosen_mask,
        rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps)
    rewards = beta * ratio
    per_row = torch.where(desirable, desirable_weight * (1 - torch.sigmoid(rewards)),
                          undesirable_weight * torch.sigmoid(rewards))
    return _unpaired_output(per_row, rewards, desirable, policy_c, {})
