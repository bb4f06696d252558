"""Model loading: local folders, dtypes, LoRA, gradient checkpointing, tokenizer identity, the default alias."""

import json
from pathlib import Path

import pytest
import torch

from conftest import CORPUS, build_tokenizer, train_config, write_pairs
from tokensift.errors import UserError
from tokensift.models import (
    load_model, load_tokenizer, model_fingerprint, resolve_model, same_tokenizer, tokenizer_fingerprint,
)


def test_local_folder_dtype_and_dropout(model_dir):
    model = load_model(str(model_dir), dtype="bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16
    assert all(m.p == 0.0 for m in model.modules() if isinstance(m, torch.nn.Dropout))
    with pytest.raises(UserError, match="unknown dtype"):
        load_model(str(model_dir), dtype="float8")


def test_lora_and_gradient_checkpointing(model_dir):
    from tokensift.models import LoraSettings

    model = load_model(str(model_dir), lora=LoraSettings(r=4, alpha=8), gradient_checkpointing=True)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    base = model.get_base_model()
    assert getattr(base, "is_activation_checkpointing", None) or base.is_gradient_checkpointing


def test_gradient_checkpointing_gives_the_same_gradients(model_dir, tokenizer):
    from tokensift.data.collate import collate_pairs
    from tokensift.data.tokenize import tokenize_examples
    from tokensift.data.example import PreferenceExample
    from tokensift.logprobs import token_logps

    examples = [PreferenceExample([{"role": "user", "content": CORPUS[i]}], CORPUS[i + 1], CORPUS[i + 2], i)
                for i in range(3)]
    batch = collate_pairs(tokenize_examples(tokenizer, examples)[0], tokenizer.pad_token_id)
    grads = []
    for checkpointing in (False, True):
        model = load_model(str(model_dir), gradient_checkpointing=checkpointing)
        model.train()
        token_logps(model, batch.input_ids, batch.prompt_lens, batch.response_mask).logps.sum().backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    assert all(torch.allclose(grads[0][n], grads[1][n], atol=1e-6) for n in grads[0])


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(UserError, match="neither a local path"):
        resolve_model("no-such-model")
    with pytest.raises(UserError, match="does not exist"):
        resolve_model(str(tmp_path / "missing.gguf"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no config.json"):
        resolve_model(str(tmp_path / "empty"))
    with pytest.raises(UserError, match="could not load"):
        load_model("nobody/such-model-offline")  # HF_HUB_OFFLINE=1: not in the local hub cache


def test_tokenizer_identity(tokenizer, model_dir):
    same = load_tokenizer(str(model_dir))
    assert same_tokenizer(tokenizer, same)
    assert tokenizer_fingerprint(tokenizer) == tokenizer_fingerprint(same)
    other = build_tokenizer(vocab_size=300, seed_text=CORPUS[::-1])
    assert not same_tokenizer(tokenizer, other)
    assert tokenizer_fingerprint(tokenizer) != tokenizer_fingerprint(other)
    templated = build_tokenizer(chat_template="{{ messages[0]['content'] }}")
    assert not same_tokenizer(tokenizer, templated)  # same vocabulary, another chat template


def test_model_fingerprint_follows_content(tmp_path, model_dir):
    first = model_fingerprint(str(model_dir))
    assert first == model_fingerprint(str(model_dir))
    config = json.loads((model_dir / "config.json").read_text())
    config["rms_norm_eps"] = 1e-3
    (model_dir / "config.json").write_text(json.dumps(config))
    assert model_fingerprint(str(model_dir)) != first


def test_model_fingerprint_ignores_run_cards(model_dir):
    """Two runs that save bit-identical weights differ only in the timings of their run cards; a reference
    cache keyed on the model must not tell them apart (it made TSO's round-2 cache miss after a resume)."""
    first = model_fingerprint(str(model_dir))
    (model_dir / "run_card.json").write_text(json.dumps({"tokens_per_second": 123.4}))
    (model_dir / "tokenizer_config.json").write_text("{}")
    assert model_fingerprint(str(model_dir)) == first
    (model_dir / "model.safetensors").write_bytes((model_dir / "model.safetensors").read_bytes() + b" ")
    assert model_fingerprint(str(model_dir)) != first


def test_lora_training_saves_merged_model_and_adapter(tmp_path, model_dir):
    from tokensift.train.loop import train

    data = write_pairs(tmp_path / "pairs.jsonl", n=8)
    cfg = train_config(tmp_path, model_dir, data, loss="simpo", lora=True, lora_r=4, max_steps=3,
                       learning_rate=1e-2)
    result = train(cfg)
    final = Path(result.final_dir)
    assert (final / "adapter" / "adapter_config.json").exists()
    merged = load_model(str(final))
    base = load_model(str(model_dir))
    changed = [n for (n, a), (_, b) in zip(merged.named_parameters(), base.named_parameters()) if not torch.equal(a, b)]
    assert changed and all("proj" in n for n in changed)  # only the LoRA-adapted projections moved


@pytest.mark.slow
def test_default_alias_loads_offline_and_generates():
    tokenizer = load_tokenizer("smollm2-135m-instruct")
    model = load_model("smollm2-135m-instruct")
    assert Path(resolve_model("smollm2-135m-instruct"), "model.safetensors").exists()  # cached once
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2+2?"}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert "4" in tokenizer.decode(out[0, ids["input_ids"].shape[1]:])
