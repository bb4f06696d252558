"""What docs/contributing.md promises of each addition, checked on the copy of the package that
tests/test_contributing.py writes by the recipes (a loss with a new setting, a selector with a new setting, a
selection strategy, a judge in a module of its own). Not collected by a plain `pytest` run (its name does not start
with test_): test_contributing runs it by path, with that copy first on the path, beside the suite's
registry-dependent test modules.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import train_config, write_pairs

import tokensift
from tokensift.errors import UserError
from tokensift.train.metrics import read_metrics


def test_the_contributed_copy_is_the_package_under_test():
    copy = os.environ.get("TOKENSIFT_CONTRIBUTED_SRC")
    assert copy, "run by tests/test_contributing.py, which sets TOKENSIFT_CONTRIBUTED_SRC"
    assert Path(tokensift.__file__).resolve().is_relative_to(Path(copy).resolve())


def test_the_help_lists_every_addition():
    """The help texts `tokensift train --help` prints for the fields, derived from the declarations."""
    from tokensift.config import help_of
    from tokensift.train.config import TrainConfig

    assert "throwaway: sigmoid DPO under another name" in help_of(TrainConfig, "loss")
    assert help_of(TrainConfig, "throwaway_cap").endswith("Read by loss: throwaway.")  # derived from its params
    assert "first: the first first_count tokens of every response" in help_of(TrainConfig, "selector")
    assert "first_k: the first k of every response's tokens" in help_of(TrainConfig, "selection")


def test_a_new_loss_is_trained_checked_and_listed(tmp_path, model_dir):
    from tokensift.cli import main, pairwise_losses
    from tokensift.sepo.config import OracleConfig

    data = write_pairs(tmp_path / "pairs.jsonl", n=8)
    runs = {}
    for loss in ("dpo", "throwaway"):  # the same equation: the dispatch gave it the cached reference sums
        out = tmp_path / loss
        args = ["dpo", "--data", str(data), "--model", str(model_dir), "--output-dir", str(out), f"loss={loss}",
                "beta=0.5", "max_steps=3", "batch_size=4", "learning_rate=1e-3", f"ref_cache_dir={tmp_path}/rc",
                "progress=false", "save_every=0"]
        assert main(args) == 0
        runs[loss] = [round(r["loss"], 6) for r in read_metrics(out / "metrics.jsonl")]
    assert runs["dpo"] == runs["throwaway"] and len(runs["dpo"]) == 3
    assert "throwaway" in pairwise_losses()
    # in a mixture, with rpo_alpha: half DPO and half the same equation is DPO
    import torch

    from tokensift.losses import dpo_loss, resolve

    pair = dict(chosen_logps=torch.tensor([[-1.0, -2.0]]), chosen_mask=torch.ones(1, 2, dtype=torch.bool),
                rejected_logps=torch.tensor([[-3.0]]), rejected_mask=torch.ones(1, 1, dtype=torch.bool),
                ref_chosen_logps=torch.tensor([-2.5]), ref_rejected_logps=torch.tensor([-2.0]))
    mixed = resolve("dpo,throwaway", "0.5,0.5").function(**pair, beta=0.5)
    assert torch.allclose(mixed.loss, dpo_loss(**pair, beta=0.5).loss)
    train_config(tmp_path, model_dir, data, loss="dpo,throwaway", loss_weights="0.5,0.5", rpo_alpha=0.1)
    with pytest.raises(UserError, match=r"loss=throwaway does not read simpo_gamma \(it reads beta, throwaway_cap\)"):
        train_config(tmp_path, model_dir, data, loss="throwaway", simpo_gamma=1.0)
    with pytest.raises(UserError, match="loss=dpo does not read throwaway_cap "):
        train_config(tmp_path, model_dir, data, loss="dpo", throwaway_cap=5.0)
    with pytest.raises(UserError, match="loss=simpo does not read sepo_gamma .*did you mean 'simpo_gamma'"):
        train_config(tmp_path, model_dir, data, loss="simpo", sepo_gamma=2.0)
    with pytest.raises(UserError, match="loss=throwaway: throwaway_loss: beta must be below cap=5.0, got 6.0"):
        train_config(tmp_path, model_dir, data, loss="throwaway", beta=6.0, throwaway_cap=5.0)
    train_config(tmp_path, model_dir, data, loss="throwaway", beta=6.0)  # under the default cap
    OracleConfig(data=str(data), model=str(model_dir), loss="throwaway").validate()  # "cached": it can train an oracle


def test_a_new_judge_is_built_from_config_and_accepted_by_eval():
    from tokensift.eval.config import GenerateEvalConfig
    from tokensift.judges import JUDGES, build_judge

    assert list(JUDGES)[-1] == "length"  # imported last in judges/__init__.py
    judge = build_judge({"type": "length", "per_character": 0.5})
    verdict = judge.compare([{"role": "user", "content": "hi"}], "a longer answer", "short")
    assert verdict.p_first > 0.5 and verdict.detail["score_first"] == 7.5
    GenerateEvalConfig(prompts="prompts.txt", judge={"type": "length"}).validate()
    with pytest.raises(UserError, match="judge type must be one of .*length"):
        build_judge({"type": "lenght"})


def test_a_new_selection_strategy_is_picked_up_by_training_and_show(tmp_path, model_dir):
    from tokensift.selection import Selection, SelectionArgs

    picked = Selection("first_k", 0.5, 0.5).chosen(np.array([0.1, 0.9, 0.5, 0.2]))
    assert picked.tolist() == [True, True, False, False]
    SelectionArgs(selection="first_k").validate_selection()
    train_config(tmp_path, model_dir, "", loss="sepo", scores=str(tmp_path), selection="first_k")
    with pytest.raises(UserError, match="unknown selection 'first_kk'.*did you mean 'first_k'"):
        SelectionArgs(selection="first_kk").validate_selection()


def test_a_new_selector_trains_with_any_pairwise_loss(tmp_path, model_dir):
    from tokensift.cli import main

    data = write_pairs(tmp_path / "pairs.jsonl", n=8)
    losses_seen = {}
    for selected in ("first", "none"):
        out = tmp_path / selected
        assert main(["train", "--data", str(data), "--model", str(model_dir), "--output-dir", str(out), "loss=dpo",
                     f"selector={selected}", "max_steps=2", "batch_size=4", "learning_rate=1e-3",
                     f"ref_cache_dir={tmp_path}/rc", "progress=false", "save_every=0"]) == 0
        losses_seen[selected] = [r["loss"] for r in read_metrics(out / "metrics.jsonl")]
    card = json.loads((tmp_path / "first" / "final" / "run_card.json").read_text())
    assert card["data"]["selector"] == "first" and card["config"]["selector"] == "first"
    assert losses_seen["first"] != losses_seen["none"]  # the selection reached the loss
    train_config(tmp_path, model_dir, data, loss="dpo", selector="first", first_count=3)
    with pytest.raises(UserError, match="selector=first does not read k_rejected"):
        train_config(tmp_path, model_dir, data, loss="dpo", selector="first", k_rejected=0.5)
    with pytest.raises(UserError, match="selector=random does not read first_count"):
        train_config(tmp_path, model_dir, data, loss="dpo", selector="random", first_count=3)
    with pytest.raises(UserError, match="unknown selector 'firts'.*did you mean 'first'"):
        train_config(tmp_path, model_dir, data, loss="dpo", selector="firts")
