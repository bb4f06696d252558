"""The quickstart config on the real default model, shrunk to a few prompts and steps (slow: minutes on CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokensift.config import load_config
from tokensift.tso.config import TSOConfig
from tokensift.tso.loop import run_tso

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "tso-quickstart.yaml"


@pytest.mark.slow
def test_quickstart_config_runs_two_small_rounds(tmp_path, capsys):
    config = load_config(TSOConfig, str(CONFIG), [
        f"output_dir={tmp_path / 'run'}", "limit=8", "eval_prompts=2", "eval_samples=1", "rounds=2",
        "max_new_tokens=12", "progress=false",
        ('train={"beta": 0.1, "learning_rate": 2e-5, "max_steps": 1, "batch_size": 4, "max_length": 96, '
         '"max_prompt_length": 48, "save_every": 0}'),
    ])
    report = run_tso(config)
    assert [r["round"] for r in report["rounds"]] == [1, 2]
    for r in report["rounds"]:
        assert r["candidates"]["per_generator"]["human"] == 3
        assert r["corrections"]["pairs"] > 0 and r["train"]["steps"] == 1
        assert "clip/chosen_fraction" in r["train"]
    assert {"mean_score_before", "mean_score_after", "win_rate_after_vs_before"} <= set(report["eval"])
    out = capsys.readouterr().out
    assert "prior ladder (rank, higher is better): human 3, policy 2, base-cool 1, base-hot 0" in out
    assert "[tso] evaluation:" in out
