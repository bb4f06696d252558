"""Preference accuracy on held-out pairs: does the model rank the chosen response above the rejected one?

Two rewards, two margins per pair (chosen minus rejected):
- DPO implicit reward (needs a reference): r(y) = beta * (log pi(y|x) - log pi_ref(y|x)), log-probs summed over
  the response tokens; margin = r(y_w) - r(y_l). This is what DPO training pushes up, so its accuracy on
  held-out pairs is the usual "reward accuracy".
- Mean log-prob (reference-free, SimPO's reward without its beta): mean over response tokens of
  log pi(y_t | x, y_<t); margin = mean(y_w) - mean(y_l). Averaging removes the pull of summed log-probs
  towards short responses, which is why it is the reference-free reward of choice.
Accuracy is the share of pairs with margin > 0 (ties at exactly 0 count as wrong, as in TRL's
rewards/accuracies, and are counted separately). Log-probs come from no-grad, length-bucketed batches
(train/ref_cache.iter_pair_logps), the same code training uses.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from tokensift.data.tokenize import TokenizedPair
from tokensift.eval.config import PairsEvalConfig
from tokensift.eval.lengths import breakdown, difference_buckets, length_bias, parse_edges, total_buckets
from tokensift.eval.loading import check_same_tokenizer, load_eval_model, resolve_device
from tokensift.eval.stats import describe
from tokensift.models import free_memory, load_tokenizer
from tokensift.train.data import load_pairs, split_eval
from tokensift.train.ref_cache import iter_pair_logps

log = logging.getLogger(__name__)
MARGIN_NAMES = {"dpo": "DPO implicit reward", "mean_logp": "mean log-prob"}


@dataclass
class PairLogps:
    """Summed response log-probs of each pair under one model, in the order of the pairs list ([P] each)."""

    chosen: np.ndarray
    rejected: np.ndarray


def score_pairs(model, pairs: list[TokenizedPair], batch_size: int, pad_id: int, device,
                desc: str | None = None, share_prompt: bool = True, packing: str = "auto") -> PairLogps:
    """Sum of per-token log-probs of every chosen and rejected response (float64 sums of float32 terms)."""
    position = {id(pair): i for i, pair in enumerate(pairs)}
    chosen = np.full(len(pairs), np.nan)
    rejected = np.full(len(pairs), np.nan)
    for pair, chosen_logps, rejected_logps in iter_pair_logps(model, pairs, batch_size, pad_id, device, desc,
                                                                      share_prompt, packing):
        i = position[id(pair)]
        chosen[i] = chosen_logps.sum(dtype=np.float64)
        rejected[i] = rejected_logps.sum(dtype=np.float64)
    if np.isnan(chosen).any() or np.isnan(rejected).any():
        raise RuntimeError("some pairs got no log-probs")  # cannot happen unless iter_pair_logps loses pairs
    return PairLogps(chosen, rejected)


def response_lengths(pairs: list[TokenizedPair]) -> tuple[np.ndarray, np.ndarray]:
    """Tokens of each chosen and rejected response (the turn end included, after truncation): what was scored."""
    return (np.array([len(p.chosen_ids) for p in pairs], dtype=np.int64),
            np.array([len(p.rejected_ids) for p in pairs], dtype=np.int64))


def pair_margins(pairs: list[TokenizedPair], policy: PairLogps, reference: PairLogps | None,
                 beta: float) -> dict[str, np.ndarray]:
    """{"dpo": [P] (only with a reference), "mean_logp": [P]} margins, chosen minus rejected."""
    chosen_len, rejected_len = response_lengths(pairs)
    margins = {}
    if reference is not None:
        margins["dpo"] = beta * ((policy.chosen - reference.chosen) - (policy.rejected - reference.rejected))
    margins["mean_logp"] = policy.chosen / chosen_len - policy.rejected / rejected_len
    return margins


def margin_summary(margin: np.ndarray) -> dict:
    """Accuracy (margin > 0) with its binomial standard error, exact ties, and the margin's distribution."""
    n = margin.size
    accuracy = float(np.mean(margin > 0))
    summary = {"accuracy": accuracy, "accuracy_stderr": math.sqrt(accuracy * (1 - accuracy) / n),
               "ties": int(np.sum(margin == 0))}
    summary.update({f"margin_{k}": v for k, v in describe(margin).items() if k != "n"})
    return summary


def preference_metrics(chosen_lengths, rejected_lengths, margins: dict[str, np.ndarray],
                       difference_edges: list[int], total_edges: list[int]) -> dict:
    """Accuracy and margins per margin kind, plus the length breakdown (see eval/lengths.py)."""
    chosen_lengths = np.asarray(chosen_lengths)
    rejected_lengths = np.asarray(rejected_lengths)
    if chosen_lengths.size == 0:
        raise ValueError("no pairs to evaluate")
    return {
        "pairs": int(chosen_lengths.size),
        "margins": {kind: margin_summary(np.asarray(m, dtype=np.float64)) for kind, m in margins.items()},
        "length_bias": length_bias(chosen_lengths, rejected_lengths, margins),
        "by_length_difference": breakdown(chosen_lengths - rejected_lengths, difference_buckets(difference_edges),
                                          margins),
        "by_total_length": breakdown(chosen_lengths + rejected_lengths, total_buckets(total_edges), margins),
    }


def select_pairs(config: PairsEvalConfig, tokenizer) -> tuple[list[TokenizedPair], dict]:
    """The pairs to evaluate and a description of where they came from (counts, truncation, split)."""
    pair_set = load_pairs(config.data, config, tokenizer, limit=config.limit)
    pairs = pair_set.pairs
    if config.eval_fraction > 0:
        _, pairs = split_eval(pairs, config.eval_fraction, config.seed)
    info = {"source": config.data, "pairs_loaded": len(pair_set.pairs), "pairs_evaluated": len(pairs),
            "held_out": config.eval_fraction > 0, "notes": list(pair_set.notes)}
    if config.eval_fraction > 0:
        info["notes"].append(f"evaluating the {len(pairs)} pairs a seed-{config.seed} split with "
                             f"eval_fraction={config.eval_fraction} holds aside")
    return pairs, info


def evaluate_preferences(config: PairsEvalConfig, tokenizer=None, given=None) -> dict:
    """Load the pairs and models, score every pair, and return the results (see report.write_results).
    tokenizer, given: the policy's tokenizer and model objects handed over in Python (tokensift.given.Given),
    used instead of loading `config.model` / `config.reference`."""
    device = resolve_device(config.device)
    tokenizer = tokenizer or load_tokenizer(config.model, trust_remote_code=config.trust_remote_code)
    if given is not None and given.ref_model is not None:
        given.check_reference_vocabulary(tokenizer)
    elif config.reference:
        check_same_tokenizer(tokenizer, config.reference, "reference", config)
    pairs, data = select_pairs(config, tokenizer)
    bar = "policy log-probs" if config.progress else None
    model = given_eval_model(given, "model", device)
    if model is None:
        model = load_eval_model(config.model, config, device)
    policy = score_pairs(model, pairs, config.batch_size, tokenizer.pad_token_id, device, bar, config.share_prompt,
                         config.packing)
    del model
    free_memory()
    reference = None
    if config.reference:
        model = given_eval_model(given, "ref_model", device)
        if model is None:
            model = load_eval_model(config.reference, config, device)
        bar = "reference log-probs" if config.progress else None
        reference = score_pairs(model, pairs, config.batch_size, tokenizer.pad_token_id, device, bar, config.share_prompt,
                         config.packing)
        del model
        free_memory()
    margins = pair_margins(pairs, policy, reference, config.beta)
    chosen_len, rejected_len = response_lengths(pairs)
    metrics = preference_metrics(chosen_len, rejected_len, margins,
                                 parse_edges(config.length_difference_edges, "length_difference_edges"),
                                 parse_edges(config.total_length_edges, "total_length_edges"))
    if reference is not None:
        dpo = metrics["margins"]["dpo"]
        dpo["chosen_reward_mean"] = float(np.mean(config.beta * (policy.chosen - reference.chosen)))
        dpo["rejected_reward_mean"] = float(np.mean(config.beta * (policy.rejected - reference.rejected)))
    else:
        data["notes"].append("no reference model: only the reference-free mean log-prob margin")
    result = {"action": "pairs", "data": data, "metrics": metrics}
    if config.save_items:
        result["items"] = pair_items(pairs, policy, reference, margins)
    return result


def given_eval_model(given, role: str, device):
    """A model object handed over in Python (`given.model` / `given.ref_model`) on `device` in eval mode, or None."""
    model = getattr(given, role, None) if given is not None else None
    return None if model is None else model.to(device).eval()


def pair_items(pairs, policy: PairLogps, reference: PairLogps | None, margins: dict[str, np.ndarray]) -> list[dict]:
    chosen_len, rejected_len = response_lengths(pairs)
    items = []
    for i, pair in enumerate(pairs):
        item = {"row": pair.row, "chosen_tokens": int(chosen_len[i]), "rejected_tokens": int(rejected_len[i]),
                "policy_chosen_logp": float(policy.chosen[i]), "policy_rejected_logp": float(policy.rejected[i])}
        if reference is not None:
            item.update(reference_chosen_logp=float(reference.chosen[i]),
                        reference_rejected_logp=float(reference.rejected[i]))
        item.update({f"{kind}_margin": float(m[i]) for kind, m in margins.items()})
        items.append(item)
    return items
