"""The training engine: accumulation invariance, reference cache reuse, kill-and-resume, NaN handling."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import train_config, write_pairs
from tokensift.errors import UserError
from tokensift.train.loop import Trainer, train
from tokensift.train.metrics import read_metrics


def final_weights(result):
    return load_file(str(Path(result.final_dir) / "model.safetensors"))


@pytest.mark.parametrize("loss", ["dpo", "sft", "sepo_like_simpo"])
def test_batch8_acc1_equals_batch1_acc8(tmp_path, model_dir, loss):
    loss = "simpo" if loss == "sepo_like_simpo" else loss
    data = write_pairs(tmp_path / "pairs.jsonl", n=16)
    runs = {}
    for batch, accum in ((8, 1), (1, 8)):
        cfg = train_config(tmp_path, model_dir, data, loss=loss, batch_size=batch, grad_accum=accum, epochs=2.0,
                           output_dir=str(tmp_path / f"run-{batch}x{accum}"))
        runs[batch] = (train(cfg), read_metrics(Path(cfg.output_dir) / "metrics.jsonl"))
    (res_a, log_a), (res_b, log_b) = runs[8], runs[1]
    assert len(log_a) == len(log_b) == 4
    for a, b in zip(log_a, log_b):
        assert abs(a["loss"] - b["loss"]) < 1e-5, (a["loss"], b["loss"])
        assert a["pairs"] == b["pairs"] == 8
    # the trajectory really moved: the last loss differs from the first
    assert abs(log_a[-1]["loss"] - log_a[0]["loss"]) > 1e-3
    # Weights agree closely too; Adam divides by sqrt(v), which magnifies float summation-order noise in
    # near-zero gradients, so the weight tolerance is looser than the loss tolerance.
    wa, wb = final_weights(res_a), final_weights(res_b)
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < 1e-4


@pytest.mark.parametrize("loss", ["dpo", "sft", "tdpo"])
def test_token_budget_micro_batches_take_the_same_steps(tmp_path, model_dir, loss):
    """max_tokens_per_batch: micro-batches of varying pair counts (and a zero-weight filler when a process runs
    short) weight their losses by the pairs (tokens for SFT) they hold, so the step equals one 8-pair batch."""
    from tokensift.train.data import token_micro_batches

    data = write_pairs(tmp_path / "pairs.jsonl", n=16)
    budget = 80 if loss == "sft" else 100  # one to three pairs (SFT runs prompt + chosen only)
    runs = {}
    for name, extra in (("pairs", {"batch_size": 8}), ("tokens", {"batch_size": 8, "max_tokens_per_batch": budget})):
        cfg = train_config(tmp_path, model_dir, data, loss=loss, epochs=2.0, output_dir=str(tmp_path / name),
                           **extra)
        runs[name] = (train(cfg), read_metrics(Path(cfg.output_dir) / "metrics.jsonl"))
    (res_a, log_a), (res_b, log_b) = runs["pairs"], runs["tokens"]
    assert [r["pairs"] for r in log_a] == [r["pairs"] for r in log_b] == [8, 8, 8, 8]
    for a, b in zip(log_a, log_b):
        assert abs(a["loss"] - b["loss"]) < 1e-5, (a["loss"], b["loss"])
    wa, wb = final_weights(res_a), final_weights(res_b)
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < 1e-4
    # the budget really split the steps: several micro-batches of different sizes, every one within budget
    trainer = Trainer(train_config(tmp_path, model_dir, data, loss=loss, batch_size=8, max_tokens_per_batch=budget,
                                   output_dir=str(tmp_path / "inspect")))
    steps = [token_micro_batches(trainer.schedule.batch(s), trainer.pair_tokens, budget, 0, 1) for s in range(4)]
    assert all(len(parts) > 1 for parts in steps) and len({len(p) for parts in steps for p in parts}) > 1
    assert all(trainer.pair_tokens[p].sum() <= budget or len(p) == 1 for parts in steps for p in parts)
    two = [token_micro_batches(trainer.schedule.batch(0), trainer.pair_tokens, budget, r, 2) for r in (0, 1)]
    assert len(two[0]) == len(two[1])  # processes stay in lockstep
    assert sorted(int(i) for parts in two for p in parts for i in p) == sorted(trainer.schedule.batch(0).tolist())


def test_reference_cache_is_computed_once_and_reused(tmp_path, model_dir, monkeypatch):
    data = write_pairs(tmp_path / "pairs.jsonl", n=8)
    calls = []
    import tokensift.train.ref_cache as ref_cache

    original = ref_cache.iter_pair_logps

    def counting(*args, **kwargs):
        calls.append(len(args[1]))
        yield from original(*args, **kwargs)

    monkeypatch.setattr(ref_cache, "iter_pair_logps", counting)
    cfg = train_config(tmp_path, model_dir, data, loss="dpo", max_steps=1, output_dir=str(tmp_path / "a"))
    Trainer(cfg)
    cfg2 = train_config(tmp_path, model_dir, data, loss="ipo", max_steps=1, output_dir=str(tmp_path / "b"))
    trainer = Trainer(cfg2)
    assert calls == [8]  # the second run (another loss, same data and reference) computed nothing
    # the cached sums are the reference model's own summed log-probs
    from tokensift.logprobs import token_logps
    from tokensift.data.collate import collate_pairs

    pair = trainer.data.train.pairs[0]
    batch = collate_pairs([pair], trainer.tokenizer.pad_token_id)
    with torch.no_grad():
        logps = token_logps(trainer.model, batch.input_ids, batch.prompt_lens, batch.response_mask).logps
    assert abs(trainer.ref_sums[pair.row][0] - float(logps[0].sum())) < 1e-4
    assert abs(trainer.ref_sums[pair.row][1] - float(logps[1].sum())) < 1e-4


DRIVER = """
import sys
sys.path.insert(0, {tests!r})
from conftest import train_config
from tokensift.train.loop import train
from pathlib import Path
cfg = train_config(Path({tmp!r}), Path({model!r}), Path({data!r}), loss="dpo", batch_size=2, epochs=3.0,
                   save_every=1, keep_checkpoints=2, output_dir={out!r}, resume={resume})
train(cfg)
"""


def run_driver(tmp_path, model_dir, data, out, resume, kill_after_checkpoint=None):
    code = DRIVER.format(tests=str(Path(__file__).resolve().parents[1]), tmp=str(tmp_path), model=str(model_dir),
                         data=str(data), out=str(out), resume=resume)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if kill_after_checkpoint is None:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()[-2000:]
        return None
    target = Path(out) / f"checkpoint-{kill_after_checkpoint:08d}"
    deadline = time.time() + 120
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return proc.returncode


def test_sigkill_then_resume_gives_identical_weights(tmp_path, model_dir):
    data = write_pairs(tmp_path / "pairs.jsonl", n=12)
    straight = tmp_path / "straight"
    run_driver(tmp_path, model_dir, data, straight, resume=False)
    killed = tmp_path / "killed"
    code = run_driver(tmp_path, model_dir, data, killed, resume=False, kill_after_checkpoint=5)
    assert code == -signal.SIGKILL
    assert not (killed / "final").exists()  # it really died mid-run
    for folder in killed.glob("checkpoint-*"):  # whatever the kill interrupted, every checkpoint is whole
        assert {p.name for p in folder.iterdir()} == {"model.safetensors", "optimizer.pt", "scheduler.pt", "rng.pt",
                                                      "state.json"}
    run_driver(tmp_path, model_dir, data, killed, resume=True)
    a = load_file(str(straight / "final" / "model.safetensors"))
    b = load_file(str(killed / "final" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [r["step"] for r in read_metrics(killed / "metrics.jsonl") if "loss" in r]
    assert steps == sorted(set(steps)) and steps[-1] == 18  # no duplicate log lines after the resume


def test_nan_loss_stops_with_step_and_keeps_checkpoint(tmp_path, model_dir, monkeypatch):
    data = write_pairs(tmp_path / "pairs.jsonl", n=8)
    import tokensift.train.loop as loop

    original = loop.compute_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        out = original(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:  # the third micro-batch = step 3 with batch 4 x accum 1
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(loop, "compute_loss", poisoned)
    cfg = train_config(tmp_path, model_dir, data, loss="simpo", save_every=1, max_steps=5, batch_size=4)
    with pytest.raises(loop.NumericalError, match="step 3") as info:
        train(cfg)
    assert "checkpoint-00000002" in str(info.value)
    calls["n"] = 0
    cfg = train_config(tmp_path, model_dir, data, loss="simpo", max_steps=5, batch_size=4, nan_policy="skip",
                       output_dir=str(tmp_path / "skip"))
    result = train(cfg)
    assert result.train_metrics["skipped_steps"] == 1


def test_tensorboard_tracker_and_metrics_fields(tmp_path, model_dir):
    pytest.importorskip("tensorboard")
    data = write_pairs(tmp_path / "pairs.jsonl", n=8)
    cfg = train_config(tmp_path, model_dir, data, loss="dpo", max_steps=2, trackers="tensorboard", eval_fraction=0.25)
    result = train(cfg)
    events = list(Path(cfg.output_dir).rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    assert {"loss", "rewards/accuracy", "tokens_per_s", "peak_memory_mb"} <= set(acc.Tags()["scalars"])
    records = read_metrics(Path(cfg.output_dir) / "metrics.jsonl")
    for key in ("loss", "rewards/chosen", "rewards/rejected", "rewards/margin", "rewards/accuracy", "logps/chosen",
                "logps/rejected", "tokens_per_s", "peak_memory_mb", "grad_norm", "lr"):
        assert key in records[0], key
    assert "eval/rewards/accuracy" in records[-1]
    card = json.loads((Path(result.final_dir) / "run_card.json").read_text())
    assert card["config"]["loss"] == "dpo" and card["versions"]["torch"] and card["data"]["train_pairs"] == 6
