"""Numerical faults through the CLI: a NaN/inf loss or gradient stops the run naming the step and keeps the
last good checkpoint, which resumes; nan_policy=skip skips and counts instead.

Two real faults, no mock of the training loop:
- a poisoned model: one token's embedding row is NaN (or inf) in the saved weights, and exactly one training
  pair contains that token ('~', which no other pair and no template text uses), so the loss becomes
  non-finite at exactly the step whose batch holds that pair;
- a gradient overflow with a finite loss: a tensor hook (registered on the real model the CLI loads) turns
  the LM head's gradient into inf at the third backward pass. This is the case a loss check alone misses.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import build_tokenizer, write_pairs
from reliability_helpers import CHECKPOINT_FILES, report, run_cli, save_tiny_model
from safetensors.torch import load_file, save_file

from tokensift.train.data import Schedule

POISON = "~"
CASES = {"tried": 0}


@pytest.fixture(scope="module", autouse=True)
def summary(request):
    yield
    report(request.config, f"numerical-fault runs through the CLI: {CASES['tried']}")


def poisoned_model(folder: Path, value: float) -> tuple[Path, int]:
    tokenizer = build_tokenizer()
    save_tiny_model(folder, tokenizer)
    token = tokenizer.convert_tokens_to_ids(POISON)
    weights = load_file(str(folder / "model.safetensors"))
    weights["model.embed_tokens.weight"][token] = value
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder, token


def poisoned_data(tmp_path: Path, batch_size: int) -> tuple[Path, int, int]:
    """8 clean pairs + 1 with the poisoned token; a seed whose order puts that pair in step 3 or later.
    Returns (file, seed, the 1-based step that holds the poisoned pair)."""
    clean = write_pairs(tmp_path / "clean.jsonl", n=8).read_text()
    poisoned = json.dumps({"prompt": f"Answer {POISON} briefly.", "chosen": "I love it.", "rejected": "I hate it."})
    path = tmp_path / "poisoned.jsonl"
    path.write_text(clean + poisoned + "\n")
    for seed in range(50):
        schedule = Schedule(9, batch_size, seed, epochs=1.0)
        step = next(s for s in range(schedule.total_steps) if 8 in schedule.batch(s).tolist()) + 1
        if step >= 3:
            return path, seed, step
    raise AssertionError("no seed puts the poisoned pair late enough")


def common(data: Path, model: Path, out: Path, seed: int) -> list:
    return ["train", "--data", data, "--model", model, "--output-dir", out, "loss=simpo", "batch_size=2",
            "save_every=1", "keep_checkpoints=3", "learning_rate=1e-3", "warmup_ratio=0", f"seed={seed}",
            "progress=false"]


def checkpoint_is_whole(folder: Path, step: int) -> None:
    assert {p.name for p in folder.iterdir()} == CHECKPOINT_FILES
    assert json.loads((folder / "state.json").read_text())["step"] == step
    load_file(str(folder / "model.safetensors"))
    for name in ("optimizer.pt", "scheduler.pt", "rng.pt"):
        torch.load(folder / name, weights_only=True)


@pytest.mark.parametrize("value", [math.nan, math.inf], ids=["nan", "inf"])
def test_poisoned_loss_stops_at_its_step_keeps_the_checkpoint_and_resumes(value, tmp_path, capsys):
    model, token = poisoned_model(tmp_path / "model", value)
    data, seed, step = poisoned_data(tmp_path, batch_size=2)
    run = tmp_path / "run"

    CASES["tried"] += 1
    code, out, err = run_cli(common(data, model, run, seed) + ["nan_policy=stop"], capsys)
    assert code == 2 and "Traceback" not in out + err
    last = run / f"checkpoint-{step - 1:08d}"
    assert err.strip() == (
        f"error: step {step}: the loss or gradient norm is not finite (loss=nan, grad_norm=nan); nothing was "
        f"applied. Last good checkpoint: {last}. Lower the learning rate, use float32, or pass nan_policy=skip.")
    # The last good checkpoint is whole, nothing after it exists, and the log ends at the step before.
    checkpoint_is_whole(last, step - 1)
    assert not (run / f"checkpoint-{step:08d}").exists() and not (run / "final").exists()
    assert [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()] == list(range(1, step))
    saved = load_file(str(last / "model.safetensors"))
    for name, tensor in saved.items():
        finite = torch.isfinite(tensor)
        if name.endswith("embed_tokens.weight"):
            finite[token] = True  # the poisoned row itself is the fault, never touched by a finite step
        assert finite.all(), f"{name} took a non-finite update before step {step}"

    # Resume from that checkpoint, skipping the bad step this time.
    CASES["tried"] += 1
    code, out, err = run_cli(common(data, model, run, seed) + ["nan_policy=skip", "resume=true"], capsys)
    assert code == 0, err
    card = json.loads((run / "final" / "run_card.json").read_text())
    assert card["steps"] == 5 and card["final_train_metrics"]["skipped_steps"] == 1
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3, 4, 5]
    assert [r["skipped_steps"] for r in lines] == [0] * (step - 1) + [1] * (6 - step)
    assert not math.isfinite(lines[step - 1]["loss"])

    # The same run with nan_policy=skip from the start: bit-identical weights, so stop + resume lost nothing.
    CASES["tried"] += 1
    code, _, err = run_cli(common(data, model, tmp_path / "skip", seed) + ["nan_policy=skip"], capsys)
    assert code == 0, err
    a = load_file(str(run / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "skip" / "final" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a if k != "model.embed_tokens.weight")
    assert torch.equal(a["model.embed_tokens.weight"].nan_to_num(), b["model.embed_tokens.weight"].nan_to_num())


@pytest.fixture
def gradient_overflow(monkeypatch):
    """The CLI's model gets a hook that makes the LM head's gradient inf at the third backward pass (a finite
    loss): how fp16 overflow or a bad kernel looks from the training loop."""
    import tokensift.train.loop as loop

    real_load_model = loop.load_model
    calls = {"backward": 0}

    def load_model(*args, **kwargs):
        model = real_load_model(*args, **kwargs)

        def overflow(grad):
            calls["backward"] += 1
            return grad * math.inf if calls["backward"] == 3 else grad

        model.lm_head.weight.register_hook(overflow)
        return model

    monkeypatch.setattr(loop, "load_model", load_model)
    return calls


@pytest.mark.parametrize("clip", ["1.0", "0"], ids=["clipped", "no-clipping"])
def test_non_finite_gradient_with_a_finite_loss_stops_the_run(clip, gradient_overflow, tmp_path, capsys):
    """With max_grad_norm=0 the norm was not measured before, and the inf gradient reached AdamW silently."""
    model = save_tiny_model(tmp_path / "model")
    data = write_pairs(tmp_path / "pairs.jsonl", n=10)
    run = tmp_path / "run"
    CASES["tried"] += 1
    code, out, err = run_cli(common(data, model, run, 0) + [f"max_grad_norm={clip}"], capsys)
    assert code == 2 and "Traceback" not in out + err
    head, _, rest = err.strip().partition("(loss=")
    loss, _, tail = rest.partition(", ")
    assert head == "error: step 3: the loss or gradient norm is not finite "
    assert math.isfinite(float(loss)), "the loss itself was finite"
    assert tail.startswith(f"grad_norm=inf); nothing was applied. Last good checkpoint: {run / 'checkpoint-00000002'}.")
    checkpoint_is_whole(run / "checkpoint-00000002", 2)
    weights = load_file(str(run / "checkpoint-00000002" / "model.safetensors"))
    assert all(torch.isfinite(t).all() for t in weights.values())


def test_skip_mode_counts_the_gradient_fault_and_finishes(gradient_overflow, tmp_path, capsys):
    model = save_tiny_model(tmp_path / "model")
    data = write_pairs(tmp_path / "pairs.jsonl", n=10)
    CASES["tried"] += 1
    code, _, err = run_cli(common(data, model, tmp_path / "run", 0) + ["nan_policy=skip", "max_grad_norm=0"], capsys)
    assert code == 0, err
    card = json.loads((tmp_path / "run" / "final" / "run_card.json").read_text())
    assert card["final_train_metrics"]["skipped_steps"] == 1 and card["steps"] == 5
    weights = load_file(str(tmp_path / "run" / "final" / "model.safetensors"))
    assert all(torch.isfinite(t).all() for t in weights.values()), "a skipped step still changed the weights"
