"""`tokensift sweep`: every combination of the grid trained once on the same stored scores, one table, resumable,
and every run's settings checked before the first trains."""

from __future__ import annotations

import json

import pytest
from conftest import build_model, write_pairs

from tokensift.cli import main
from tokensift.config import build
from tokensift.errors import UserError
from tokensift.sepo.config import ScoreConfig
from tokensift.sepo.score import score_tokens
from tokensift.sweep import SweepConfig, run_sweep


@pytest.fixture
def scored(tmp_path, tokenizer, model_dir):
    oracle = tmp_path / "oracle"
    build_model(len(tokenizer), seed=1).save_pretrained(oracle)
    tokenizer.save_pretrained(oracle)
    data = write_pairs(tmp_path / "pairs.jsonl", n=12)
    score_tokens(build(ScoreConfig, {"data": str(data), "oracle": str(oracle), "reference": str(model_dir),
                                     "output_dir": str(tmp_path / "scores"), "progress": False}))
    return tmp_path / "scores"


def base(tmp_path, model_dir, scores) -> dict:
    return {"model": str(model_dir), "loss": "sepo", "scores": str(scores), "max_steps": 2, "batch_size": 4,
            "learning_rate": 1e-3, "warmup_ratio": 0.0, "eval_fraction": 0.25, "save_every": 0, "progress": False,
            "ref_cache_dir": str(tmp_path / "refcache")}


def test_sweep_trains_every_combination_on_the_stored_scores_and_writes_one_table(tmp_path, model_dir, scored):
    out = tmp_path / "sweep"
    code = main(["sweep", "--output-dir", str(out), *(f"base.{k}={v}" for k, v in base(tmp_path, model_dir,
                                                                                      scored).items()),
                 "grid.k=0.25,0.5", "grid.selector=oracle,random"])
    assert code == 0
    payload = json.loads((out / "sweep.json").read_text())
    runs = {r["run"]: r for r in payload["runs"]}
    assert sorted(runs) == ["k0.25-selectororacle", "k0.25-selectorrandom", "k0.5-selectororacle",
                            "k0.5-selectorrandom"]
    for name, row in runs.items():
        card = json.loads((out / name / "final" / "run_card.json").read_text())
        assert card["config"]["k_chosen"] == card["config"]["k_rejected"] == row["k"]  # k sets both sides
        assert card["config"]["selector"] == row["selector"] and card["config"]["scores"] == str(scored)
        assert row["steps"] == 2 and row["eval_accuracy"] is not None and row["train_loss"] > 0
    table = (out / "sweep.md").read_text()
    assert table.count("\n| k0.") == 4 and "eval_accuracy" in table
    assert (out / "sweep.csv").read_text().splitlines()[0].startswith("run,k,selector,steps")
    # rerunning trains nothing: every run is done with the same settings
    stamp = {n: (out / n / "final" / "model.safetensors").stat().st_mtime_ns for n in runs}
    assert main(["sweep", "--output-dir", str(out), *(f"base.{k}={v}" for k, v in base(tmp_path, model_dir,
                                                                                      scored).items()),
                 "grid.k=0.25,0.5", "grid.selector=oracle,random"]) == 0
    assert stamp == {n: (out / n / "final" / "model.safetensors").stat().st_mtime_ns for n in runs}


def test_sweep_over_seeds_adds_means_and_standard_errors(tmp_path, model_dir, scored):
    config = build(SweepConfig, {"base": {**base(tmp_path, model_dir, scored), "selector": "random"},
                                 "grid": {"seed": [0, 1]}, "output_dir": str(tmp_path / "seeds")})
    rows = run_sweep(config)
    summary = json.loads((tmp_path / "seeds" / "sweep.json").read_text())["over_seeds"]
    assert len(summary) == 1 and summary[0]["seeds"] == 2
    losses = [r["train_loss"] for r in rows]
    assert summary[0]["train_loss"] == pytest.approx(sum(losses) / 2)
    assert summary[0]["train_loss_se"] == pytest.approx(abs(losses[0] - losses[1]) / 2)  # sd/sqrt(2) of two


def test_sweep_checks_every_run_before_training(tmp_path, model_dir, scored):
    settings = base(tmp_path, model_dir, scored)
    with pytest.raises(UserError, match="unknown grid key 'sepo_gama'.*did you mean 'grid.sepo_gamma'"):
        build(SweepConfig, {"base": settings, "grid": {"sepo_gama": [1, 2]}})
    with pytest.raises(UserError, match="sweep run k0.3-selectorsoft.*weights"):
        build(SweepConfig, {"base": {**settings, "loss": "tdpo"}, "grid": {"k": [0.3], "selector": ["oracle", "soft"]},
                            "output_dir": str(tmp_path / "x")})
    with pytest.raises(UserError, match="does not exist"):
        build(SweepConfig, {"base": {**settings, "scores": str(tmp_path / "nope")}, "grid": {"k": [0.3]}})
    with pytest.raises(UserError, match="repeats"):
        build(SweepConfig, {"base": settings, "grid": {"k": "0.3,0.3"}})
    assert not (tmp_path / "x").exists()  # nothing trained
