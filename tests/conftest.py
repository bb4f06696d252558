"""Shared fixtures: real (tiny) tokenizers and models built in-process, never downloaded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny test models are all small matrix products: one thread is faster than two (no OpenMP hand-offs), and it
# keeps the suite quick on a shared 2-core machine. Child processes inherit it through the environment.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "I love this movie, it is wonderful and great!",
    "This is terrible, awful and sad. I hate it.",
    "Human: how do I bake bread? Assistant: Mix flour, water, salt and yeast, then bake.",
    "Please answer the question politely and briefly.",
    "What is the capital of France? Paris is the capital of France.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000.",
    "Happy joyful excellent good nice fine okay bad worse worst.",
]


def shared_data(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared data folder exists only beside the project checkout)")
    return path


def build_tokenizer(vocab_size: int = 400, chat_template: str | None = CHATML, seed_text: list[str] | None = None):
    """A byte-level BPE tokenizer trained on a few sentences: real merges, real special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator((seed_text or CORPUS) * 3, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token="<|im_start|>"
    )
    fast.chat_template = chat_template
    return fast


def build_model(vocab_size: int, seed: int = 0, layers: int = 2, hidden: int = 32):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        attn_implementation="sdpa",
    )
    model = LlamaForCausalLM(config)
    model.eval()
    return model


@pytest.fixture(scope="session")
def tokenizer():
    return build_tokenizer()


@pytest.fixture
def model(tokenizer):
    return build_model(len(tokenizer))


@pytest.fixture
def model_dir(tmp_path, tokenizer):
    """A tiny model + tokenizer saved as safetensors: what `load_model(path)` reads."""
    path = tmp_path / "tiny-model"
    build_model(len(tokenizer)).save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def write_pairs(path: Path, n: int = 16, seed: int = 0) -> Path:
    """A JSONL preference file of `n` pairs with varied prompt and response lengths."""
    import json
    import random

    rng = random.Random(seed)
    good = CORPUS[1].split() + CORPUS[7].split()[:5]
    bad = CORPUS[2].split() + CORPUS[7].split()[6:]
    lines = []
    for i in range(n):
        prompt = " ".join(rng.choice(CORPUS).split()[: rng.randint(2, 9)]) + f" ({i})"
        chosen = " ".join(rng.choice(good) for _ in range(rng.randint(1, 12)))
        rejected = " ".join(rng.choice(bad) for _ in range(rng.randint(1, 12)))
        lines.append(json.dumps({"prompt": prompt, "chosen": chosen, "rejected": rejected}))
    path.write_text("\n".join(lines) + "\n")
    return path


def train_config(tmp_path: Path, model_dir: Path, data: Path, **overrides):
    """A small, fast TrainConfig on the tiny model (isolated reference cache, no progress bar)."""
    from tokensift.train.config import TrainConfig

    values = dict(data=str(data), model=str(model_dir), output_dir=str(tmp_path / "run"), learning_rate=1e-3,
                  batch_size=4, epochs=1.0, ref_cache_dir=str(tmp_path / "refcache"), progress=False, save_every=0,
                  warmup_ratio=0.0)
    values.update(overrides)
    config = TrainConfig(**values)
    config.validate()
    return config
