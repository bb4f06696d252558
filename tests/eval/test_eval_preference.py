"""Preference accuracy: margins against full forward passes computed by hand, the length breakdown on a
hand-made set, and the held-out pairs against the ones the training loop holds aside."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import build_model, train_config, write_pairs
from tokensift.eval.config import PairsEvalConfig
from tokensift.eval.preference import pair_margins, preference_metrics, score_pairs, select_pairs
from tokensift.train.data import load_pairs


def by_hand(model, pair) -> tuple[float, float]:
    """Summed log-probs of the chosen and rejected response: one unpadded sequence, full log_softmax."""
    sums = []
    for response in (pair.chosen_ids, pair.rejected_ids):
        ids = torch.tensor(np.concatenate([pair.prompt_ids, response]), dtype=torch.long)[None]
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
        start = len(pair.prompt_ids)
        sums.append(sum(logp[start - 1 + i, ids[0, start + i]].item() for i in range(len(response))))
    return sums[0], sums[1]


def test_margins_match_full_forward_passes(tmp_path, tokenizer):
    config = PairsEvalConfig(data=str(write_pairs(tmp_path / "pairs.jsonl", n=5)), model="unused")
    pairs = load_pairs(config.data, config, tokenizer).pairs
    policy_model, reference_model = build_model(len(tokenizer), seed=0), build_model(len(tokenizer), seed=1)
    # batch_size 2: length buckets mix lengths, so padding and bucket order are exercised
    policy = score_pairs(policy_model, pairs, 2, tokenizer.pad_token_id, "cpu")
    reference = score_pairs(reference_model, pairs, 2, tokenizer.pad_token_id, "cpu")
    beta = 0.25
    margins = pair_margins(pairs, policy, reference, beta)
    for i, pair in enumerate(pairs):
        pc, pr = by_hand(policy_model, pair)
        rc, rr = by_hand(reference_model, pair)
        assert policy.chosen[i] == pytest.approx(pc, abs=1e-4)
        assert reference.rejected[i] == pytest.approx(rr, abs=1e-4)
        assert margins["dpo"][i] == pytest.approx(beta * ((pc - rc) - (pr - rr)), abs=1e-4)
        expected_mean = pc / len(pair.chosen_ids) - pr / len(pair.rejected_ids)
        assert margins["mean_logp"][i] == pytest.approx(expected_mean, abs=1e-5)
    metrics = preference_metrics([len(p.chosen_ids) for p in pairs], [len(p.rejected_ids) for p in pairs],
                                 margins, [4], [16])
    assert metrics["margins"]["dpo"]["accuracy"] == pytest.approx(np.mean(margins["dpo"] > 0))
    assert metrics["margins"]["mean_logp"]["margin_median"] == pytest.approx(np.median(margins["mean_logp"]))
    # without a reference there is no DPO margin, only the reference-free one
    assert set(pair_margins(pairs, policy, None, beta)) == {"mean_logp"}


def test_length_breakdown_on_a_hand_made_set():
    chosen = np.array([10, 5, 7, 3, 20, 8])
    rejected = np.array([4, 5, 9, 3, 2, 100])  # differences 6, 0, -2, 0, 18, -92; totals 14, 10, 16, 6, 22, 108
    margin = np.array([1.0, -1.0, 0.5, 0.0, 2.0, -3.0])
    metrics = preference_metrics(chosen, rejected, {"mean_logp": margin}, difference_edges=[4, 16], total_edges=[10, 20])
    summary = metrics["margins"]["mean_logp"]
    assert summary["accuracy"] == 0.5 and summary["ties"] == 1
    diff = {b["bucket"]: (b["pairs"], b["mean_logp"]["accuracy"]) for b in metrics["by_length_difference"]}
    assert diff == {"<-16": (1, 0.0), "-16..-5": (0, None), "-4..-1": (1, 1.0), "0": (2, 0.0), "+1..+4": (0, None),
                    "+5..+16": (1, 1.0), ">+16": (1, 1.0)}
    total = {b["bucket"]: (b["pairs"], b["mean_logp"]["accuracy"]) for b in metrics["by_total_length"]}
    assert total == {"<=10": (2, 0.0), "11..20": (2, 1.0), ">20": (2, 0.5)}
    bias = metrics["length_bias"]
    assert bias["pairs_with_unequal_length"] == 4 and bias["pairs_with_equal_length"] == 2
    assert bias["chosen_is_longer"] == 0.5  # pairs 0 and 4 of the four unequal ones
    # the longer side wins in pairs 0 (chosen, +1), 4 (chosen, +2) and 5 (rejected, -3), not in pair 2
    assert bias["prefers_longer"]["mean_logp"] == 0.75


def test_held_out_pairs_are_the_ones_training_held_aside(tmp_path, tokenizer, model_dir):
    from tokensift.train.data import load_training_data as prepare_data

    data = write_pairs(tmp_path / "pairs.jsonl", n=20, seed=3)
    trained = prepare_data(train_config(tmp_path, model_dir, data, eval_fraction=0.2, seed=7, limit=18), tokenizer)
    config = PairsEvalConfig(data=str(data), model=str(model_dir), eval_fraction=0.2, seed=7, limit=18)
    pairs, info = select_pairs(config, tokenizer)
    assert [p.row for p in pairs] == [p.row for p in trained.eval.pairs]
    assert info["pairs_loaded"] == 18 and info["pairs_evaluated"] == 4 and info["held_out"]
