"""Real model shapes with random weights: what users train, built here without a download.

    python benchmarks/shapes.py qwen2.5-0.5b          # builds it once, prints its folder and parameter count

A step's time and memory depend on a model's shape (layers, widths, heads, vocabulary), never on its weights, so a
random-weight model of a real configuration costs what the real one costs. `model_folder(name)` saves one (seeded,
safetensors) with the default model's tokenizer beside it; every benchmark's `--model` takes `shape:NAME` for it.
The tokenizer's ids (49,152) all fall inside each shape's vocabulary; the LM head and its log-softmax still run over
the shape's whole vocabulary, which is the cost being measured.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

SHAPES = {  # the configurations of the published models (config.json), random weights
    # Qwen2.5-0.5B(-Instruct): 494M parameters, 151,936 vocabulary, tied head
    "qwen2.5-0.5b": dict(model_type="qwen2", vocab_size=151936, hidden_size=896, intermediate_size=4864,
                         num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                         tie_word_embeddings=True, rope_theta=1e6, max_position_embeddings=32768),
    # Gemma-3-1B(-it): 1.0B parameters, 262,144 vocabulary, 5 sliding (512) : 1 full layers, head_dim 256
    "gemma-3-1b": dict(model_type="gemma3_text", vocab_size=262144, hidden_size=1152, intermediate_size=6912,
                       num_hidden_layers=26, num_attention_heads=4, num_key_value_heads=1, head_dim=256,
                       sliding_window=512, query_pre_attn_scalar=256, rope_theta=1e6, rope_local_base_freq=10000.0,
                       max_position_embeddings=32768, tie_word_embeddings=True),
    # Qwen2.5-1.5B: 1.54B parameters (GPU only: its fp32 training state alone is 25 GB)
    "qwen2.5-1.5b": dict(model_type="qwen2", vocab_size=151936, hidden_size=1536, intermediate_size=8960,
                         num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
                         tie_word_embeddings=True, rope_theta=1e6, max_position_embeddings=32768),
    # Llama-3-8B (GPU, with LoRA)
    "llama-3-8b": dict(model_type="llama", vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                       num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                       tie_word_embeddings=False, rope_theta=500000.0, max_position_embeddings=8192),
    # four layers of real widths, for gpu_proof's correctness section
    "qwen2-4layers": dict(model_type="qwen2", vocab_size=151936, hidden_size=1536, intermediate_size=8960,
                          num_hidden_layers=4, num_attention_heads=12, num_key_value_heads=2,
                          tie_word_embeddings=True, max_position_embeddings=32768),
    "mistral-4layers-window": dict(model_type="mistral", vocab_size=32768, hidden_size=4096,
                                   intermediate_size=14336, num_hidden_layers=4, num_attention_heads=32,
                                   num_key_value_heads=8, sliding_window=256, max_position_embeddings=32768),
    # toys: the code paths at the real vocabulary, in seconds (dry runs)
    "toy": dict(model_type="qwen2", vocab_size=151936, hidden_size=64, intermediate_size=128,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                max_position_embeddings=4096),
    "toy-window": dict(model_type="mistral", vocab_size=49152, hidden_size=64, intermediate_size=128,
                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, sliding_window=16,
                       max_position_embeddings=4096),
}
PREFIX = "shape:"
DEFAULT_ROOT = Path(os.environ.get("TOKENSIFT_SHAPES", "/tmp/tokensift-shapes"))


def shape_config(name: str):
    import transformers

    if name not in SHAPES:
        sys.exit(f"unknown shape {name!r}; known: {', '.join(SHAPES)}")
    spec = dict(SHAPES[name])
    return transformers.AutoConfig.for_model(spec.pop("model_type"), **spec)


def parameter_count(name: str) -> int:
    import torch
    import transformers

    with torch.device("meta"):
        return sum(p.numel() for p in transformers.AutoModelForCausalLM.from_config(shape_config(name)).parameters())


def parameters_of(model: str) -> int:
    """The parameter count of a saved model folder or alias (from its configuration, nothing loaded)."""
    import torch
    import transformers

    from tokensift.models import resolve_model

    config = transformers.AutoConfig.from_pretrained(resolve_model(model))
    with torch.device("meta"):
        return sum(p.numel() for p in transformers.AutoModelForCausalLM.from_config(config).parameters())


def model_folder(name: str, root: Path = DEFAULT_ROOT, tokenizer_dir: str | Path | None = None,
                 dtype: str = "float32", device: str = "cpu") -> Path:
    """Save (once) a random-weight model of shape `name` with a tokenizer beside it; returns the folder."""
    import torch
    import transformers

    folder = Path(root) / f"{name}-{dtype}"
    if (folder / "config.json").exists() and (folder / "tokenizer_config.json").exists():
        return folder
    if tokenizer_dir is None:
        from tokensift.models import load_tokenizer

        tokenizer = load_tokenizer("smollm2-135m-instruct")
    else:
        tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_dir)
    config = shape_config(name)
    # the tokenizer's special ids, so that nothing reads an id the tokenizer cannot decode
    config.bos_token_id, config.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    torch.manual_seed(0)
    with torch.device(device):
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    partial = folder.with_name(folder.name + ".partial")
    model.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    del model
    partial.rename(folder)
    return folder


def resolve(model: str) -> str:
    """A benchmark's `--model`: `shape:NAME` becomes the folder of that random-weight shape, anything else stays."""
    if model.startswith(PREFIX):
        return str(model_folder(model[len(PREFIX):]))
    return model


def training_state_mb(parameters: int, dtype: str = "float32") -> float:
    """Weights + gradients + AdamW's two moments: the same for every trainer (fp32 moments; mixed precision
    keeps fp32 master weights, which torch's AdamW on bf16 weights does not)."""
    width = {"float32": 4, "bfloat16": 2, "float16": 2}[dtype]
    return parameters * (width + width + 2 * width) / 2**20


if __name__ == "__main__":
    for shape in sys.argv[1:] or ["qwen2.5-0.5b"]:
        print(model_folder(shape), f"{parameter_count(shape) / 1e6:.1f}M parameters")
