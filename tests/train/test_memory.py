"""gradient_checkpointing unset: the activation estimate, and the trainer turning checkpointing on when it would not
fit (train/memory.py)."""

from __future__ import annotations

import logging

import pytest
import torch
import transformers

from conftest import train_config, write_pairs
from tokensift.train import memory
from tokensift.train.config import TrainConfig

QWEN_05B = dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                num_attention_heads=14, num_key_value_heads=2)


def test_the_estimate_at_the_qwen_shape_by_hand():
    config = transformers.AutoConfig.for_model("qwen2", **QWEN_05B)
    # 3 x 896 (residuals, MLP input) + 2 x 14 x 64 (queries, attention output) + 2 x 2 x 64 (keys, values)
    # + 2 x 4864 (gate and up)
    assert memory.stored_floats_per_layer(config) == 2688 + 1792 + 256 + 9728
    per_position = memory.activation_bytes(config, 1, "float32")
    assert per_position == 24 * 14464 * 4  # 1.39 MB; measured 1.15 MB on the CPU (BENCHMARKS.md)
    assert memory.activation_bytes(config, 1, "bfloat16") == per_position // 2


def test_the_largest_micro_batch_is_an_upper_bound():
    assert memory.largest_micro_batch([10, 50, 30, 40], batch_size=2, max_tokens=None) == 90
    assert memory.largest_micro_batch([10, 50, 30, 40], batch_size=2, max_tokens=64) == 64
    assert memory.largest_micro_batch([10, 500], batch_size=1, max_tokens=64) == 500  # one pair over the cap
    assert memory.largest_micro_batch([], batch_size=4, max_tokens=None) == 0


def choice(free_gib: float, positions: int, monkeypatch, **settings):
    monkeypatch.setattr(memory, "available_bytes", lambda device: int(free_gib * 2**30))
    config = TrainConfig(data="x.jsonl", model="m", **settings)
    model_config = transformers.AutoConfig.for_model("qwen2", **QWEN_05B)
    return memory.choose_checkpointing(config, model_config, [positions], torch.device("cpu"), sharded=False,
                                       loaded_parameters=None)


def test_unset_turns_checkpointing_on_only_when_the_activations_would_not_fit(monkeypatch):
    # 494M parameters: 16 bytes each (weights to load, gradients, two moments) = 7.4 GiB of training state
    fits = choice(24, 4000, monkeypatch)  # 1.5 x 5.2 GiB of activations, 0.8 x (24 - 7.4) GiB to spare
    assert not fits.on and "unset: off" in fits.reason and "4,000 positions" in fits.reason
    too_long = choice(24, 8000, monkeypatch)  # one pair of two 4,096-token sequences: 1.5 x 10.3 GiB
    assert too_long.on and "unset: on" in too_long.reason
    assert choice(8, 2000, monkeypatch).on  # the same batch on a smaller machine
    assert not choice(8, 2000, monkeypatch, gradient_checkpointing=False).on  # set: as set
    assert choice(80, 10, monkeypatch, gradient_checkpointing=True).reason == "set"


def test_an_address_space_limit_binds_before_the_machine(monkeypatch):
    import resource

    free = memory.available_bytes(torch.device("cpu"))
    assert free is not None and free > 0
    used = memory._proc_field("/proc/self/status", "VmSize:")
    monkeypatch.setattr(resource, "getrlimit", lambda kind: (used + 2**20, resource.RLIM_INFINITY))
    assert memory.available_bytes(torch.device("cpu")) == min(free, 2**20)


def test_under_fsdp_or_deepspeed_unset_means_off(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1)
    config = TrainConfig(data="x.jsonl", model="m")
    model_config = transformers.AutoConfig.for_model("qwen2", **QWEN_05B)
    assert not memory.choose_checkpointing(config, model_config, [10**6], torch.device("cpu"), sharded=True).on


@pytest.mark.parametrize("free_gib,expected", [(0.001, True), (10**4, False)])
def test_the_trainer_follows_the_estimate(tmp_path, model_dir, monkeypatch, caplog, free_gib, expected):
    from tokensift.train.loop import Trainer

    monkeypatch.setattr(memory, "available_bytes", lambda device: int(free_gib * 2**30))
    data = write_pairs(tmp_path / "pairs.jsonl", n=4)
    config = train_config(tmp_path, model_dir, data, loss="simpo", batch_size=2, max_steps=1)
    assert config.gradient_checkpointing is None  # the default: unset
    with caplog.at_level(logging.INFO, logger="tokensift.train.loop"):
        trainer = Trainer(config)
    assert trainer.checkpointing is expected
    assert bool(getattr(trainer.model, "is_activation_checkpointing", False)) is expected
    # selective recomputation is the other way round: only without whole-layer checkpointing
    assert any(getattr(m, "_tokensift_recompute", False) for m in trainer.model.modules()) is (not expected)
    assert f"gradient_checkpointing unset: {'on' if expected else 'off'}" in caplog.text
    assert trainer.config.gradient_checkpointing is None  # the recorded setting stays unset
