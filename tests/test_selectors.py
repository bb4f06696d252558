"""Token selectors on hand-computed examples; seeded and reproducible; fitted on the training split only; and
training through them (selected-token DPO's reference sums, online selection from the training forward)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import train_config, write_pairs

from tokensift.data.collate import PairBatch
from tokensift.errors import UserError
from tokensift.selectors import SELECTORS, build_selector
from tokensift.train.objective import compute_loss, masked_reference_sums


class Args:
    """The settings a selector reads (a TrainConfig in training)."""

    def __init__(self, **kw):
        from tokensift.selection import SelectionArgs

        base = SelectionArgs(**{k: kw.pop(k) for k in ("k_chosen", "k_rejected", "selection") if k in kw})
        self.__dict__.update(base.__dict__, seed=0, gap_quantile=0.6, weight_scale=1.0, weight_min=0.7,
                             weight_max=1.3, **kw)
        self.fitted_selection = base.fitted_selection


def batch_of(chosen_lens, rejected_lens, rows=None, ref=None) -> PairBatch:
    lens = torch.tensor(list(chosen_lens) + list(rejected_lens))
    width = int(lens.max())
    mask = torch.arange(width)[None, :] < lens[:, None]
    n = len(chosen_lens)
    return PairBatch(input_ids=torch.zeros(2 * n, 1, dtype=torch.long), prompt_lens=torch.ones(2 * n, dtype=torch.long),
                     response_lens=lens, labels=torch.zeros(2 * n, width, dtype=torch.long), response_mask=mask,
                     rows=torch.tensor(rows or list(range(n))), ref_token_logps=ref)


SCORES = {0: (np.array([0.5, -1.0, 2.0, 0.1, 1.5]), np.array([1.0, -2.0, 0.3, -0.5]))}


def test_oracle_keeps_the_top_of_chosen_and_the_bottom_of_rejected():
    sel = build_selector("oracle", Args(k_chosen=0.4, k_rejected=0.5), SCORES, [0])
    mask = sel(batch_of([5], [4]))
    # chosen: floor(0.4 * 5) = 2 highest scores (2.0 at 2, 1.5 at 4); rejected: floor(0.5 * 4) = 2 lowest
    assert mask[0].tolist() == [False, False, True, False, True]
    assert mask[1].tolist() == [False, True, False, True, False]


def test_random_is_seeded_reproducible_and_counts_like_the_oracle():
    args = Args(k_chosen=0.4, k_rejected=0.5)
    batch = batch_of([5, 10], [4, 7], rows=[3, 8])
    first = build_selector("random", args, None, [3, 8])(batch)
    again = build_selector("random", args, None, [3, 8])(batch)
    assert torch.equal(first, again)  # same seed, same rows: the same tokens, run after run, epoch after epoch
    assert first.sum(dim=1).tolist() == [2, 4, 2, 3]  # floor(k * n): 2 of 5, 4 of 10, 2 of 4, 3 of 7
    assert not (first & ~batch.response_mask).any()
    args.seed = 1
    assert not torch.equal(first, build_selector("random", args, None, [3, 8])(batch))


def test_confidence_keeps_tokens_below_the_mean_probability():
    sel = build_selector("confidence", Args(), None, [0])
    batch = batch_of([4], [3])
    probs = torch.tensor([[0.9, 0.1, 0.5, 0.7], [0.2, 0.3, 0.4, 0.0]])  # rejected row has 3 tokens
    logps = torch.where(batch.response_mask, probs.clamp(min=1e-9).log(), torch.zeros(2, 4))
    mask = sel(batch, logps)
    # chosen mean 0.55: keep 0.1 and 0.5; rejected mean 0.3: keep 0.2 only
    assert mask.tolist() == [[False, True, True, False], [True, False, False, False]]


def test_reference_gap_keeps_the_top_of_the_signed_gap():
    ref = torch.tensor([[-1.0, -2.0, -0.5, -3.0, -1.0], [-1.0, -1.0, -1.0, -1.0, -1.0]])
    batch = batch_of([5], [5], ref=ref)
    policy = torch.tensor([[-1.5, -1.0, -2.5, -3.0, -1.2], [-0.2, -1.5, -0.8, -3.0, -1.0]])
    mask = build_selector("reference_gap", Args(), None, [0])(batch, policy)
    # chosen: ref - policy = [0.5, -1.0, 2.0, 0.0, 0.2]; 0.6-quantile = 0.32 -> keep 0.5 and 2.0
    # rejected: policy - ref = [0.8, -0.5, 0.2, -2.0, 0.0]; 0.6-quantile = 0.08 -> keep 0.8 and 0.2
    assert mask.tolist() == [[True, False, True, False, False], [True, False, True, False, False]]


def test_soft_weights_follow_the_reward_per_side_within_bounds():
    weights = build_selector("soft", Args(), SCORES, [0])(batch_of([5], [4]))
    chosen = [min(max(math.exp(s), 0.7), 1.3) for s in SCORES[0][0]]
    rejected = [min(max(math.exp(-s), 0.7), 1.3) for s in SCORES[0][1]]
    assert weights[0].tolist() == pytest.approx(chosen) and weights[1, :4].tolist() == pytest.approx(rejected)
    assert weights.dtype == torch.float32 and weights[1, 4] == 0


def test_selected_token_dpo_sums_policy_and_reference_over_the_same_tokens():
    # one pair, chosen 3 tokens, rejected 2; the selection keeps chosen tokens 0, 2 and rejected token 1
    batch = batch_of([3], [2], ref=torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -1.5, 0.0]]))
    batch.ref_logps = torch.tensor([-6.0, -2.0])  # whole-response sums (not used with a selection)
    logps = torch.tensor([[-0.5, -1.0, -2.0], [-1.0, -1.0, 0.0]])
    mask = torch.tensor([[True, False, True], [False, True, False]])
    cfg = type("C", (), {"loss": "dpo", "beta": 1.0})()
    out = compute_loss(cfg, batch, logps, mask=mask)
    # chosen: (-0.5 - 2.0) - (-1.0 - 3.0) = 1.5 ; rejected: -1.0 - (-1.5) = 0.5 ; margin 1.0
    assert out.loss.item() == pytest.approx(-math.log(1 / (1 + math.exp(-1.0))))
    weights = torch.tensor([[2.0, 0.0, 1.0], [0.0, 0.5, 0.0]])
    assert masked_reference_sums(batch.ref_token_logps, weights).tolist() == [-5.0, -0.75]


def test_selectors_are_fitted_on_the_training_split_only(tmp_path, model_dir):
    from tokensift.sepo.config import ScoreConfig
    from tokensift.scores import load_scores
    from tokensift.sepo.score import score_tokens
    from tokensift.train.run import selected_train_data
    from tokensift.models import load_tokenizer

    from conftest import build_model

    data = write_pairs(tmp_path / "pairs.jsonl", n=20)
    oracle = tmp_path / "oracle"
    build_model(len(load_tokenizer(str(model_dir))), seed=3).save_pretrained(oracle)
    load_tokenizer(str(model_dir)).save_pretrained(oracle)
    score_tokens(ScoreConfig(data=str(data), oracle=str(oracle), reference=str(model_dir), beta=1.0,
                             output_dir=str(tmp_path / "scores"), progress=False))
    cfg = train_config(tmp_path, model_dir, "", loss="sepo", scores=str(tmp_path / "scores"),
                       selection="global_threshold", eval_fraction=0.25)
    built = selected_train_data(cfg, load_tokenizer(str(model_dir)))
    train_rows = [p.row for p in built.train.pairs]
    held_rows = [p.row for p in built.eval.pairs]
    assert held_rows and not set(train_rows) & set(held_rows)
    _, records = load_scores(tmp_path / "scores")
    refit = cfg.fitted_selection([records[r]["chosen_scores"] for r in train_rows],
                                 [records[r]["rejected_scores"] for r in train_rows])
    everything = cfg.fitted_selection([records[r]["chosen_scores"] for r in records],
                                      [records[r]["rejected_scores"] for r in records])
    assert built.select.selection.chosen_threshold == refit.chosen_threshold
    assert refit.chosen_threshold != everything.chosen_threshold  # the held-out rows would have moved it
    assert built.extra_meta["selector"] == "oracle"


@pytest.mark.parametrize("loss, selector", [("dpo", "random"), ("simpo", "confidence"), ("dpo", "reference_gap"),
                                            ("sepo", "random"), ("orpo", "random"), ("apo_zero", "reference_gap"),
                                            ("dpo,sft", "confidence")])
def test_training_with_a_selector(tmp_path, model_dir, loss, selector):
    """Any pairwise loss (and a mixture) trains through any selector: online ones from the training forward."""
    from tokensift.api import train_model
    from tokensift.train.metrics import read_metrics

    data = write_pairs(tmp_path / "pairs.jsonl", n=8)
    extra = {"rpo_alpha": 0.5} if loss == "apo_zero" else {}
    cfg = train_config(tmp_path, model_dir, data, loss=loss, selector=selector, max_steps=2, batch_size=4, **extra)
    result = train_model(cfg)
    metrics = read_metrics(result.output_dir / "metrics.jsonl")
    assert len(metrics) == 2 and all(math.isfinite(m["loss"]) for m in metrics)
    assert abs(metrics[-1]["loss"] - metrics[0]["loss"]) > 1e-6


def test_selector_settings_are_checked(tmp_path, model_dir):
    data = write_pairs(tmp_path / "pairs.jsonl", n=4)
    with pytest.raises(UserError, match="selector=oracle reads the oracle's token scores"):
        train_config(tmp_path, model_dir, data, loss="dpo", selector="oracle")
    with pytest.raises(UserError, match="gives token weights, which loss=tdpo does not take"):
        train_config(tmp_path, model_dir, data, loss="tdpo", selector="soft", scores=str(tmp_path))
    with pytest.raises(UserError, match="unknown selector 'randm'.*did you mean 'random'"):
        train_config(tmp_path, model_dir, data, loss="dpo", selector="randm")
    with pytest.raises(UserError, match="loss=dpo does not read k_chosen .*token-selection settings need a selector"):
        train_config(tmp_path, model_dir, data, loss="dpo", k_chosen=0.5)
    with pytest.raises(UserError, match="selector=random does not read gap_quantile .*read by selector reference_gap"):
        train_config(tmp_path, model_dir, data, loss="dpo", selector="random", gap_quantile=0.8)
    with pytest.raises(UserError, match="selector=confidence does not read k_chosen"):
        train_config(tmp_path, model_dir, data, loss="simpo", selector="confidence", k_chosen=0.5)
    train_config(tmp_path, model_dir, data, loss="dpo", selector="reference_gap", gap_quantile=0.8)  # its own: fine


# Each built-in selector and its declaration: (reads, output, settings). The registry is open: a selector added by
# docs/contributing.md's recipe joins it, and every test here still holds.
SELECTION = ("k_chosen", "k_rejected", "selection", "reward_mass")
BUILT_IN = {
    "oracle": ({"scores"}, "mask", SELECTION),
    "random": (set(), "mask", ("k_chosen", "k_rejected")),
    "confidence": ({"policy"}, "mask", ()),
    "reference_gap": ({"policy", "reference"}, "mask", ("gap_quantile",)),
    "soft": ({"scores"}, "weights", ("weight_scale", "weight_min", "weight_max")),
}


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_built_in_declarations(name):
    spec = SELECTORS[name]
    assert (set(spec.reads), spec.output, spec.settings) == BUILT_IN[name]


def test_every_setting_a_selector_reads_is_a_training_setting():
    import dataclasses

    from tokensift.train.config import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for name, spec in SELECTORS.items():
        assert set(spec.settings) <= fields, (name, set(spec.settings) - fields)


@pytest.mark.parametrize("options, message", [
    (dict(output="mask_"), "selector 'mine': output is mask or weights; reads is scores, policy, reference"),
    (dict(reads=("score",)), "selector 'mine': output is mask or weights; reads is scores, policy, reference"),
    (dict(settings="k_chosen"), "selector 'mine': settings is a tuple of TrainConfig setting names, got 'k_chosen'"),
])
def test_a_declaration_is_checked_when_the_selector_registers(options, message):
    from tokensift.selectors import Selector, selector

    before = dict(SELECTORS)
    with pytest.raises(ValueError) as info:
        selector("mine", "a selector under test", "no paper", **options)(Selector)
    assert message in str(info.value)
    assert SELECTORS == before
