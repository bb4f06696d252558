"""Score sampled answers teacher-forced and estimate KL(policy || reference).

Sampling itself is `generate.sample_answers` (it keeps the sampled ids, the turn end included, and samples from the
model's own distribution, which the KL estimate below needs to be unbiased).

KL estimator: for answers y ~ pi(.|x), KL(pi || pi_ref) = E_y[log pi(y|x) - log pi_ref(y|x)], where
log pi(y|x) = sum_t log pi(y_t | x, y_<t) over the sampled tokens (the turn end included). The mean over samples is
unbiased; its standard error is std / sqrt(n). With answers cut at max_new_tokens it is the KL between the
two distributions of the first max_new_tokens tokens.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from tokensift.data.collate import collate_sequences
from tokensift.eval.stats import describe
from tokensift.generate import Sample
from tokensift.logprobs import token_logps


@torch.no_grad()
def answer_logp_sums(model, samples: list[Sample], batch_size: int, pad_id: int, desc: str | None = None) -> np.ndarray:
    """log pi(answer | prompt) of every sample: per-token log-probs of the sampled ids, summed ([S] float64)."""
    device = next(model.parameters()).device
    sums = np.zeros(len(samples), dtype=np.float64)
    order = sorted(range(len(samples)), key=lambda k: (-(len(samples[k].prompt_ids) + len(samples[k].answer_ids)), k))
    bar = tqdm(total=len(samples), desc=desc, unit="answer", disable=desc is None, leave=False)
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        seq = collate_sequences([samples[k].prompt_ids for k in batch], [samples[k].answer_ids for k in batch],
                                pad_id).to(device)
        logps = token_logps(model, seq.input_ids, seq.prompt_lens, seq.response_mask).logps
        sums[batch] = logps.double().sum(dim=1).cpu().numpy()
        bar.update(len(batch))
    bar.close()
    return sums


def kl_estimate(policy_logps, reference_logps) -> dict:
    """Monte-Carlo KL(policy || reference) from answers sampled from the policy: mean of
    log pi(y|x) - log pi_ref(y|x) over the samples, with its standard error (and median, spread)."""
    values = np.asarray(policy_logps, dtype=np.float64) - np.asarray(reference_logps, dtype=np.float64)
    return {"kl": describe(values)["mean"], **{k: v for k, v in describe(values).items() if k != "mean"}}
