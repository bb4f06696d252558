"""QLoRA: a 4-bit NF4 base (bitsandbytes) with LoRA adapters on top, where bitsandbytes and a CUDA GPU exist; a clear
error naming what is missing everywhere else (the CLI case is in tests/reliability/test_bad_inputs.py)."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from conftest import train_config, write_pairs

from tokensift.errors import UserError
from tokensift.models import load_model, quantization_4bit

AVAILABLE = importlib.util.find_spec("bitsandbytes") is not None and torch.cuda.is_available()


def test_the_4bit_settings_are_qloras():
    settings = quantization_4bit("bfloat16")
    assert settings.load_in_4bit and settings.bnb_4bit_quant_type == "nf4" and settings.bnb_4bit_use_double_quant
    assert settings.bnb_4bit_compute_dtype == torch.bfloat16  # the matmuls run in the run's dtype


@pytest.mark.skipif(AVAILABLE, reason="bitsandbytes and CUDA are both here: the error path cannot be reached")
def test_loading_a_4bit_base_without_its_requirements_names_them(model_dir):
    with pytest.raises(UserError, match=r"qlora=true \(a 4-bit base through bitsandbytes\) needs .*"
                                        r"without them train with lora=true"):
        load_model(str(model_dir), qlora=True)


@pytest.mark.skipif(not AVAILABLE, reason="QLoRA needs bitsandbytes and a CUDA GPU")
def test_qlora_trains_and_saves_an_unquantized_merge(tmp_path, model_dir):
    from tokensift.train.loop import Trainer

    data = write_pairs(tmp_path / "pairs.jsonl", n=8)
    result = Trainer(train_config(tmp_path, model_dir, data, loss="dpo", lora=True, qlora=True, dtype="bfloat16",
                                  lora_targets="q_proj,v_proj", max_steps=2)).run()
    config = json.loads((result.final_dir / "config.json").read_text())
    assert "quantization_config" not in config  # loads without bitsandbytes
    assert (result.final_dir / "adapter" / "adapter_model.safetensors").exists()
    assert "QLoRA (4-bit NF4 base)" in (result.final_dir / "README.md").read_text()
    load_model(str(result.final_dir))
