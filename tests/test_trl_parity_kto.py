"""Parity with TRL's KTOTrainer (loss_type "kto" and "apo_zero_unpaired") on the tiny model and the same token ids: loss, every gradient,
the KL reference point and the reward metrics.

TRL builds each row's KL completion by cycling completions within the batch (row i gets row i-1's); we fix the
mismatch when loading (data/unpaired.py). So that both sides see the same mismatched pairs, our rows are built
here with TRL's cycle as their mismatched (rejected-side) completion, and TRL's collator gets our token ids
(prompt_ids, completion_ids, KL_completion_ids, label), as tests/test_trl_parity.py does for DPO. TRL runs the
reference live; ours comes from the reference cache.
"""

from __future__ import annotations

import math
import warnings

import pytest

from conftest import build_model
from test_trl_parity import (ATOL, EXAMPLES, assert_grads_close,
                             cached_reference_sums, grads, tokensift_step, trl_metric, trl_training_step)
from tokensift.data.tokenize import TokenizedPair, TokenizeSettings, tokenize_examples
from tokensift.train.config import TrainConfig

datasets = pytest.importorskip("datasets")
trl = pytest.importorskip("trl")
from trl import KTOConfig, KTOTrainer  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*gradient_checkpointing.*:FutureWarning")
# test_trl_parity's two models, the other way round: the mismatched completions' mean log-ratio is then positive, so
# KTO's reference point z0 is in play (with the DPO test's roles it is negative and clamped to 0)
POLICY_SEED, REFERENCE_SEED = 1, 0


def unpaired_rows(tokenizer):
    """Six rows from the six pairs: even rows the chosen reply (desirable), odd rows the rejected one; each row's
    mismatched completion is the previous row's (TRL's cycle within a batch of six)."""
    pairs, _ = tokenize_examples(tokenizer, EXAMPLES, TokenizeSettings(max_length=None, max_prompt_length=None))
    completions = [p.chosen_ids if i % 2 == 0 else p.rejected_ids for i, p in enumerate(pairs)]
    rows = [TokenizedPair(row=i, prompt_ids=p.prompt_ids, chosen_ids=completions[i],
                          rejected_ids=completions[i - 1], label=float(i % 2 == 0)) for i, p in enumerate(pairs)]
    return rows


@pytest.mark.parametrize("loss_type, beta, desirable_weight, undesirable_weight", [
    ("kto", 0.1, 1.0, 1.0), ("kto", 1.0, 1.33, 0.7), ("kto", 3.0, 1.0, 2.0), ("apo_zero_unpaired", 0.1, 1.0, 1.0),
    ("apo_zero_unpaired", 1.0, 1.33, 0.7)])
def test_kto_matches_trl(tmp_path, tokenizer, loss_type, beta, desirable_weight, undesirable_weight):
    rows = unpaired_rows(tokenizer)
    dataset = datasets.Dataset.from_list([
        {"prompt": ex.prompt, "completion": [{"role": "assistant", "content": ex.chosen if i % 2 == 0 else ex.rejected}],
         "label": i % 2 == 0} for i, ex in enumerate(EXAMPLES)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        args = KTOConfig(output_dir=str(tmp_path / "trl-kto"), report_to=[], bf16=False, fp16=False, use_cpu=True,
                         gradient_checkpointing=False, loss_type=loss_type, beta=beta,
                         desirable_weight=desirable_weight,
                         undesirable_weight=undesirable_weight, max_length=None, per_device_train_batch_size=6,
                         logging_strategy="no", save_strategy="no", disable_dropout=True, seed=0)
        trainer = KTOTrainer(model=build_model(len(tokenizer), POLICY_SEED),
                             ref_model=build_model(len(tokenizer), REFERENCE_SEED), args=args, train_dataset=dataset,
                             processing_class=tokenizer)
    features = [{"prompt_ids": r.prompt_ids.tolist(), "completion_ids": r.chosen_ids.tolist(),
                 "label": bool(r.label)} for r in rows]
    if loss_type == "kto":  # apo_zero_unpaired reads no KL completion (TRL builds none)
        for feature, r in zip(features, rows):
            feature["KL_completion_ids"] = r.rejected_ids.tolist()
    trl_loss = trl_training_step(trainer, trainer.data_collator(features))

    ref_sums = cached_reference_sums(tmp_path, tokenizer, rows, build_model(len(tokenizer), REFERENCE_SEED))
    config = TrainConfig(loss=loss_type, beta=beta, desirable_weight=desirable_weight,
                         undesirable_weight=undesirable_weight, split_pairs=True)
    policy = build_model(len(tokenizer), POLICY_SEED)
    out = tokensift_step(rows, tokenizer, config, ref_sums, policy)

    tol = ATOL * max(1.0, beta)
    assert abs(out.loss.item() - trl_loss.item()) <= tol, (out.loss.item(), trl_loss.item())
    assert_grads_close(grads(policy), grads(trainer.model), rtol=0.0 if beta <= 1 else 1e-4)
    if loss_type == "kto":
        assert math.isclose(out.metrics["kl"][0].item(), trl_metric(trainer, "kl"), abs_tol=ATOL)
        assert out.metrics["kl"][0] > 0  # the reference point is in play (not clamped to 0)
    desirable = out.metrics["count/desirable"].bool()
    assert math.isclose(out.metrics["rewards/chosen"][desirable].mean().item(),
                        trl_metric(trainer, "rewards/chosen"), abs_tol=tol)
    assert math.isclose(out.metrics["rewards/rejected"][~desirable].mean().item(),
                        trl_metric(trainer, "rewards/rejected"), abs_tol=tol)
