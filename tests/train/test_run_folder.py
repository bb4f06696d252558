"""A training run's output folder: a finished run is kept, never silently replaced (issue 23, finding 2).

Same settings: a finished run is returned as it is (nothing trained again), an unfinished one continues. Other
settings: refused, naming each difference. overwrite=true replaces the run; resume=false refuses any run there.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import train_config, write_pairs

from tokensift.errors import UserError
from tokensift.train.loop import train
from tokensift.train.run_folder import RECORD, folder_state


def weights_mtime(run: Path) -> int:
    return (run / "final" / "model.safetensors").stat().st_mtime_ns


def test_a_finished_run_with_the_same_settings_is_kept_not_retrained(tmp_path, model_dir, capsys):
    data = write_pairs(tmp_path / "pairs.jsonl", n=8)
    config = train_config(tmp_path, model_dir, data, loss="simpo", max_steps=2)
    first = train(config)
    stamp = weights_mtime(first.output_dir)
    again = train(train_config(tmp_path, model_dir, data, loss="simpo", max_steps=2, progress=True))
    assert "finished already with these settings" in capsys.readouterr().out
    assert weights_mtime(first.output_dir) == stamp  # not written again
    assert (again.steps, again.final_dir) == (2, first.final_dir)
    assert again.train_metrics["loss"] == pytest.approx(first.train_metrics["loss"])


def test_other_settings_are_refused_naming_the_difference_and_the_run_survives(tmp_path, model_dir):
    data = write_pairs(tmp_path / "pairs.jsonl", n=8)
    first = train(train_config(tmp_path, model_dir, data, loss="simpo", max_steps=2))
    stamp = weights_mtime(first.output_dir)
    with pytest.raises(UserError, match=r"finished run made with other settings \(learning_rate: 0.001 -> 0.002; "
                                        r"max_steps: 2 -> 3\); pass overwrite=true"):
        train(train_config(tmp_path, model_dir, data, loss="simpo", max_steps=3, learning_rate=2e-3))
    assert weights_mtime(first.output_dir) == stamp


def test_overwrite_replaces_the_run(tmp_path, model_dir):
    data = write_pairs(tmp_path / "pairs.jsonl", n=8)
    first = train(train_config(tmp_path, model_dir, data, loss="simpo", max_steps=2))
    card = json.loads((first.final_dir / "run_card.json").read_text())
    second = train(train_config(tmp_path, model_dir, data, loss="simpo", max_steps=1, overwrite=True))
    assert second.steps == 1 and card["steps"] == 2
    assert json.loads((second.final_dir / "run_card.json").read_text())["steps"] == 1
    assert [json.loads(line)["step"] for line in (second.output_dir / "metrics.jsonl").read_text().splitlines()] == [1]


def test_resume_false_refuses_a_run_with_the_same_settings(tmp_path, model_dir):
    data = write_pairs(tmp_path / "pairs.jsonl", n=8)
    train(train_config(tmp_path, model_dir, data, loss="simpo", max_steps=2))
    with pytest.raises(UserError, match="resume=false; resume=true .* keeps it, overwrite=true replaces it"):
        train(train_config(tmp_path, model_dir, data, loss="simpo", max_steps=2, resume=False))


def test_an_unfinished_run_continues_from_its_checkpoint_and_other_settings_are_refused(tmp_path, model_dir):
    data = write_pairs(tmp_path / "pairs.jsonl", n=8)
    config = train_config(tmp_path, model_dir, data, loss="simpo", max_steps=3, save_every=1)
    train(config)
    run = Path(config.output_dir)
    import shutil

    shutil.rmtree(run / "final")  # as if killed after its last checkpoint
    assert folder_state(config) == "resume" and (run / RECORD).exists()
    with pytest.raises(UserError, match=r"an unfinished run made with other settings \(seed: 0 -> 1\)"):
        folder_state(train_config(tmp_path, model_dir, data, loss="simpo", max_steps=3, save_every=1, seed=1))
    result = train(config)
    assert result.steps == 3 and (run / "final" / "model.safetensors").exists()


def test_settings_that_do_not_change_the_model_may_differ(tmp_path, model_dir):
    data = write_pairs(tmp_path / "pairs.jsonl", n=8)
    train(train_config(tmp_path, model_dir, data, loss="simpo", max_steps=2))
    later = train_config(tmp_path, model_dir, data, loss="simpo", max_steps=2, progress=True, log_every=5,
                         save_every=10, keep_checkpoints=1, eval_batch_size=2)
    assert folder_state(later) == "done"


def test_the_cli_refuses_a_loss_change_on_a_finished_run(tmp_path, model_dir, capsys):
    """The reported case: `tokensift dpo loss=simpo output_dir=runs/oracle` on a finished DPO oracle."""
    from tokensift.cli import main

    data = write_pairs(tmp_path / "pairs.jsonl", n=8)
    common = [f"data={data}", f"model={model_dir}", f"output_dir={tmp_path / 'oracle'}", "max_steps=1",
              "batch_size=4", f"ref_cache_dir={tmp_path / 'cache'}", "progress=false"]
    assert main(["dpo", *common]) == 0
    stamp = weights_mtime(tmp_path / "oracle")
    capsys.readouterr()
    assert main(["dpo", "loss=simpo", *common]) == 2
    err = capsys.readouterr().err
    assert "holds a finished run made with other settings (loss: 'dpo' -> 'simpo')" in err
    assert weights_mtime(tmp_path / "oracle") == stamp
