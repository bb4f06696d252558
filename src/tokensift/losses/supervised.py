"""Supervised fine-tuning as a loss: the mean NLL of the chosen responses (`tokensift sft`, and the "sft" term of
TRL's loss mixtures). A pure function beside its declaration (core.py has the contract and the helpers)."""

from __future__ import annotations

from tokensift.losses.core import LossOutput, _check_tokens, _keep, _masked_sum, register, torch


@register("sft", "supervised fine-tuning: mean NLL of the chosen responses", pairwise=False, unit="token",
          token_weights=False)
def sft_loss(*, logps: torch.Tensor, mask: torch.Tensor) -> LossOutput:
    """Supervised fine-tuning: mean negative log-likelihood over every masked token of the batch.

    logps: [B, R] policy log-probs of the target tokens.   mask: [B, R] which tokens count.

        L = -(1 / N) * sum_{b, i : mask[b, i]} logps[b, i],   N = number of masked tokens (= count)

    A batch with no masked token gives loss 0 (still attached to the graph, zero gradient) and count 0, so a
    count-weighted average over micro-batches ignores it.
    Metrics [B]: "logps/sum", "logps/mean" (0 for a row without tokens), "num_tokens".
    """
    _check_tokens("sft_loss", "logps", "mask", logps, mask)
    sums = _masked_sum(logps, mask)
    keep = _keep(mask)
    tokens = keep.sum(dim=-1).float()
    count = float(keep.sum())  # integer sum: exact at any batch size
    loss = -sums.sum() / max(count, 1.0)
    metrics = {"logps/sum": sums, "logps/mean": sums / tokens.clamp(min=1.0), "num_tokens": tokens}
    return LossOutput(loss=loss, count=count, metrics={k: v.detach() for k, v in metrics.items()})
