"""docs/contributing.md's recipes, followed once each: a throwaway loss, judge and selection strategy, declared
exactly as the recipes say, work everywhere the recipes promise, with nothing else touched."""

from __future__ import annotations

import numpy as np
import pytest
import torch.nn.functional as F
from conftest import train_config, write_pairs

from tokensift import losses
from tokensift.errors import UserError
from tokensift.judges import JUDGES, build_judge
from tokensift.judges.base import ScoreJudge, register as register_judge
from tokensift.selection import STRATEGIES, Selection, SelectionArgs, strategy
from tokensift.selectors import SELECTORS, Selector, selector
from tokensift.train.metrics import read_metrics


@pytest.fixture
def throwaway_loss():
    @losses.register("throwaway", "sigmoid DPO under another name", reference="cached", params={"beta": "beta"})
    def throwaway_loss(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps,
                       ref_rejected_logps, beta: float = 0.1):
        if beta >= 10:
            raise ValueError(f"throwaway_loss: beta must be below 10, got {beta}")
        policy_c, policy_r, ratio_c, ratio_r = losses._logratios(
            "throwaway_loss", chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps,
            ref_rejected_logps)
        per_pair = -F.logsigmoid(beta * (ratio_c - ratio_r))
        return losses._pair_output(per_pair, beta * ratio_c, beta * ratio_r, policy_c, policy_r)

    yield "throwaway"
    del losses.LOSSES["throwaway"]


def test_a_new_loss_is_trained_checked_and_listed(throwaway_loss, tmp_path, model_dir, capsys):
    from tokensift.cli import main, pairwise_losses
    from tokensift.sepo.config import OracleConfig

    data = write_pairs(tmp_path / "pairs.jsonl", n=8)
    runs = {}
    for loss in ("dpo", throwaway_loss):  # the same equation: the dispatch gave it the cached reference sums
        out = tmp_path / loss
        args = ["dpo", "--data", str(data), "--model", str(model_dir), "--output-dir", str(out), f"loss={loss}",
                "beta=0.5", "max_steps=3", "batch_size=4", "learning_rate=1e-3", f"ref_cache_dir={tmp_path}/rc",
                "progress=false", "save_every=0"]
        assert main(args) == 0
        runs[loss] = [round(r["loss"], 6) for r in read_metrics(out / "metrics.jsonl")]
    assert runs["dpo"] == runs[throwaway_loss] and len(runs["dpo"]) == 3
    assert throwaway_loss in pairwise_losses()
    with pytest.raises(UserError, match=r"loss=throwaway does not read simpo_gamma \(it reads beta\)"):
        train_config(tmp_path, model_dir, data, loss=throwaway_loss, simpo_gamma=1.0)
    with pytest.raises(UserError, match="loss=simpo does not read sepo_gamma .*did you mean 'simpo_gamma'"):
        train_config(tmp_path, model_dir, data, loss="simpo", sepo_gamma=2.0)
    with pytest.raises(UserError, match="loss=throwaway: throwaway_loss: beta must be below 10, got 20"):
        train_config(tmp_path, model_dir, data, loss=throwaway_loss, beta=20.0)
    oracle = OracleConfig(data=str(data), model=str(model_dir), loss=throwaway_loss)
    oracle.validate()  # a "cached" loss can train the SePO oracle


def test_a_new_judge_is_built_from_config_and_accepted_by_eval():
    from tokensift.eval.config import GenerateEvalConfig

    @register_judge
    class LengthJudge(ScoreJudge):
        kind = "length"
        pairwise = False
        summary = "longer is better"
        from_spec = classmethod(lambda cls, args: cls(**args))

        def __init__(self, per_character: float = 1.0):
            self.per_character = per_character
            self.name = f"length:per_character={per_character:g}"

        def score_many(self, items):
            return [self.per_character * len(response) for _, response in items]

    try:
        judge = build_judge({"type": "length", "per_character": 0.5})
        verdict = judge.compare([{"role": "user", "content": "hi"}], "a longer answer", "short")
        assert verdict.p_first > 0.5 and verdict.detail["score_first"] == 7.5
        GenerateEvalConfig(prompts="prompts.txt", judge={"type": "length"}).validate()
        with pytest.raises(UserError, match="judge type must be one of .*length"):
            build_judge({"type": "lenght"})
    finally:
        del JUDGES["length"]


def test_a_new_selection_strategy_is_picked_up_by_training_and_show(tmp_path, model_dir):
    @strategy("first_k", "the first k of every response's tokens")
    def first_k(ranking, k, fitted, selection):
        mask = np.zeros(len(ranking.scores), dtype=bool)
        mask[: max(1, int(k * len(mask)))] = True
        return mask

    try:
        picked = Selection("first_k", 0.5, 0.5).chosen(np.array([0.1, 0.9, 0.5, 0.2]))
        assert picked.tolist() == [True, True, False, False]
        SelectionArgs(selection="first_k").validate_selection()
        train_config(tmp_path, model_dir, "", loss="sepo", scores=str(tmp_path), selection="first_k")
        with pytest.raises(UserError, match="unknown selection 'first_kk'.*did you mean 'first_k'"):
            SelectionArgs(selection="first_kk").validate_selection()
    finally:
        del STRATEGIES["first_k"]


def test_a_new_selector_trains_with_any_pairwise_loss(tmp_path, model_dir):
    import json

    from tokensift.cli import main

    @selector("first_two", "the first two tokens of every response", "a throwaway for the recipe",
              settings=("k_chosen",))
    class FirstTwo(Selector):
        def __call__(self, batch, policy_logps=None):
            return self._from_masks(batch, [np.arange(int(n)) < 2 for n in batch.response_mask.sum(dim=1)])

    try:
        data = write_pairs(tmp_path / "pairs.jsonl", n=8)
        losses_seen = {}
        for selected in ("first_two", "none"):
            out = tmp_path / selected
            assert main(["train", "--data", str(data), "--model", str(model_dir), "--output-dir", str(out),
                         "loss=dpo", f"selector={selected}", "max_steps=2", "batch_size=4", "learning_rate=1e-3",
                         f"ref_cache_dir={tmp_path}/rc", "progress=false", "save_every=0"]) == 0
            losses_seen[selected] = [r["loss"] for r in read_metrics(out / "metrics.jsonl")]
        card = json.loads((tmp_path / "first_two" / "final" / "run_card.json").read_text())
        assert card["data"]["selector"] == "first_two" and card["config"]["selector"] == "first_two"
        assert losses_seen["first_two"] != losses_seen["none"]  # the selection reached the loss
        with pytest.raises(UserError, match="selector=first_two does not read k_rejected"):
            train_config(tmp_path, model_dir, data, loss="dpo", selector="first_two", k_rejected=0.5)
        with pytest.raises(UserError, match="unknown selector 'first_tw'.*did you mean 'first_two'"):
            train_config(tmp_path, model_dir, data, loss="dpo", selector="first_tw")
    finally:
        del SELECTORS["first_two"]
