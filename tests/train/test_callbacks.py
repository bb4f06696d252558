"""Callbacks in the training loop: transformers' TrainerCallback objects see the events with the run's state, log
their own metrics, stop training early (the final model saved at that step) and ask for a checkpoint."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from transformers import TrainerCallback

from conftest import train_config, write_pairs
from tokensift.train.callbacks import EarlyStopping
from tokensift.train.loop import train
from tokensift.train.metrics import read_metrics


class Recorder(TrainerCallback):
    """A plain transformers callback: records the events, logs a metric of its own, stops after `stop_at` steps
    and asks for a checkpoint at step 2."""

    def __init__(self, stop_at=None):
        self.events, self.stop_at = [], stop_at

    def on_train_begin(self, args, state, control, **kwargs):
        self.events.append(("begin", state.global_step, state.max_steps))
        assert kwargs["model"] is not None and kwargs["processing_class"] is not None and kwargs["optimizer"]

    def on_step_end(self, args, state, control, **kwargs):
        self.events.append(("step", state.global_step))
        if state.global_step == 2:
            control.should_save = True
        if self.stop_at and state.global_step >= self.stop_at:
            control.should_training_stop = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs["my/loss_times_two"] = 2 * logs["loss"]  # a metric of the user's own

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.events.append(("eval", state.global_step, round(metrics["eval/loss"], 6)))

    def on_train_end(self, args, state, control, **kwargs):
        self.events.append(("end", state.global_step, len(state.log_history)))


def test_callbacks_see_the_events_log_their_metrics_stop_and_save(tmp_path, model_dir):
    data = write_pairs(tmp_path / "pairs.jsonl", n=16)
    recorder = Recorder(stop_at=3)
    cfg = train_config(tmp_path, model_dir, data, loss="dpo", batch_size=2, max_steps=8, eval_fraction=0.25,
                       eval_every=2)
    result = train(cfg, callbacks=[recorder])
    assert result.steps == 3  # stopped by the callback after step 3 of 8
    assert recorder.events[0] == ("begin", 0, 8)
    assert [e for e in recorder.events if e[0] == "step"] == [("step", 1), ("step", 2), ("step", 3)]
    evals = [e for e in recorder.events if e[0] == "eval"]
    assert [e[1] for e in evals] == [2, 3]  # eval_every=2, and the final evaluation
    assert recorder.events[-1] == ("end", 3, 3)
    log = read_metrics(Path(cfg.output_dir) / "metrics.jsonl")
    steps = [r for r in log if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    assert all(math.isclose(r["my/loss_times_two"], 2 * r["loss"]) for r in steps)
    assert (Path(cfg.output_dir) / "final" / "model.safetensors").exists()
    assert (Path(cfg.output_dir) / "checkpoint-00000002" / "model.safetensors").exists()  # asked at step 2


def test_early_stopping_on_an_evaluation_metric(tmp_path, model_dir):
    data = write_pairs(tmp_path / "pairs.jsonl", n=16)
    # a threshold no change can beat: the first evaluation sets the best, the next one does not improve on it
    stopper = EarlyStopping(metric="eval/loss", patience=1, threshold=1e9)
    cfg = train_config(tmp_path, model_dir, data, loss="orpo", batch_size=2, max_steps=10, eval_fraction=0.25,
                       eval_every=1)
    result = train(cfg, callbacks=[stopper])
    assert result.steps == 2 and stopper.bad_evaluations == 1  # step 2's evaluation is the final one, not rerun
    assert result.eval_metrics and "eval/loss" in result.eval_metrics


def test_early_stopping_by_hand():
    from types import SimpleNamespace

    control = SimpleNamespace(should_training_stop=False)
    stopper = EarlyStopping(metric="eval/rewards/accuracy", patience=2, mode="max")
    for value in (0.5, 0.6, 0.6, 0.55):  # improves, improves, then two evaluations without improvement
        stopper.on_evaluate(None, None, control, metrics={"eval/rewards/accuracy": value})
    assert stopper.best == 0.6 and control.should_training_stop
    with pytest.raises(KeyError, match="no metric 'eval/nope'"):
        EarlyStopping("eval/nope").on_evaluate(None, None, control, metrics={"eval/loss": 1.0})
    with pytest.raises(ValueError, match="mode must be min or max"):
        EarlyStopping(mode="up")


def test_an_object_without_callback_methods_is_refused(tmp_path, model_dir):
    data = write_pairs(tmp_path / "pairs.jsonl", n=4)
    with pytest.raises(TypeError, match="has none of the methods on_train_begin"):
        train(train_config(tmp_path, model_dir, data, loss="dpo", max_steps=1), callbacks=[object()])


def test_the_documented_example_runs(tmp_path, model_dir, monkeypatch, capsys):
    """docs/losses.md's callback example, as written, on the tiny model instead of the default one."""
    import re

    page = (Path(__file__).resolve().parents[2] / "docs" / "losses.md").read_text()
    code = re.search(r"## Callbacks.*?```python\n(.*?)```", page, re.S).group(1)
    assert 'model="smollm2-135m-instruct"' in code
    monkeypatch.chdir(tmp_path)
    exec(compile(code.replace('"smollm2-135m-instruct"', repr(str(model_dir))), "docs/losses.md", "exec"), {})
    steps, _, logged = capsys.readouterr().out.strip().partition(" steps; ")
    assert 1 <= int(steps) <= 6 and logged == "True"
    log = read_metrics(tmp_path / "runs" / "callback-demo" / "metrics.jsonl")
    assert all(0 <= r["my/chosen_share"] <= 1 for r in log if "loss" in r)
