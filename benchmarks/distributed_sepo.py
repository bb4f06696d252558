"""The SePO pipeline with its policy sharded (FSDP2 or DeepSpeed ZeRO-3): tokens/s and MFU of the policy stage.

    python benchmarks/distributed_sepo.py --backend fsdp2 --processes 1           # one H100: a 1.2B policy
    python benchmarks/distributed_sepo.py --backend zero3 --processes 8 --size 1b
    python benchmarks/distributed_sepo.py --backend zero3 --processes 2 --size tiny   # CPU check (gloo)

Weak-to-strong, as in the paper: the oracle is the default model (SmolLM2-135M-Instruct, trained with DPO by the
pipeline on 30% of the pairs); the policy is a Llama-architecture model of about 1.2B parameters with the
same tokenizer (TinyLlama-1.1B's shape with SmolLM2's 49k vocabulary). The GPU machines reach no hub, so the
policy starts from random weights: the speed of a step does not depend on their values. The whole pipeline
(`tokensift sepo`) runs under `accelerate launch` with the shipped config `configs/accelerate/<backend>.yaml`.

Reported for the policy stage, median over the steps after the first two:
- tokens/s: real (non-pad) tokens of all processes per second of optimizer step;
- MFU: 6 x parameters x tokens/s / (processes x peak bf16 FLOP/s). 6N per token counts the forward and backward
  matmuls of every token; it leaves out attention scores and the LM head SePO skips at unselected tokens, so it
  is the usual (slightly low) model-FLOPs figure;
- peak memory per process (CUDA max allocated).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED, machine, median  # noqa: E402

SIZES = {  # LlamaConfig fields
    "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
               num_key_value_heads=4),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2),
}
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense, SXM


def build_policy(folder: Path, size: str, oracle: str) -> int:
    """Random-init Llama-architecture policy with the oracle's tokenizer; returns its parameter count."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tokensift.models import load_tokenizer

    tokenizer = load_tokenizer(oracle)
    config = LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=4096, tie_word_embeddings=False,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, **SIZES[size])
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    count = sum(p.numel() for p in model.parameters())
    if not (folder / "model.safetensors").exists() and not (folder / "model.safetensors.index.json").exists():
        model.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
    return count


def write_pairs(source: Path, target: Path, n: int) -> None:
    """The first n rows of a jsonl(.gz) preference file."""
    opener = gzip.open if source.suffix == ".gz" else open
    with opener(source, "rt") as f, open(target, "w") as out:
        for i, line in enumerate(f):
            if i >= n:
                break
            out.write(line)


def peak_tflops(override: float | None) -> float | None:
    import torch

    if override:
        return override
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("fsdp2", "zero3", "zero2", "ddp"), default="fsdp2")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--size", choices=tuple(SIZES), default="1b")
    parser.add_argument("--oracle", default="smollm2-135m-instruct")
    parser.add_argument("--data", default=str(SHARED / "hh-rlhf-harmless-test.dev.jsonl.gz"))
    parser.add_argument("--pairs", type=int, default=512)
    parser.add_argument("--steps", type=int, default=12, help="policy optimizer steps")
    parser.add_argument("--batch-size", type=int, default=8, help="pairs per process per micro-batch")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--k", type=float, default=0.3)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=None, help="per device; default from the GPU name")
    parser.add_argument("--output-dir", default="runs/bench-distributed")
    args = parser.parse_args()

    import torch

    gpu = torch.cuda.is_available()
    out = Path(args.output_dir) / f"{args.backend}-{args.size}-p{args.processes}"
    shutil.rmtree(out / "run", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    if not Path(args.data).exists():
        sys.exit(f"{args.data} not found; pass --data FILE (a jsonl or jsonl.gz preference file)")
    write_pairs(Path(args.data), out / "pairs.jsonl", args.pairs)
    params = build_policy(out / "policy", args.size, args.oracle)
    dtype = "bfloat16" if gpu else "float32"  # the model's own dtype: no autocast on top
    launcher = [shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate", "launch",
                "--config_file", str(ROOT / "configs" / "accelerate" / f"{args.backend}.yaml"),
                "--num_processes", str(args.processes), "--mixed_precision", "no", "--main_process_port", "29733"]
    common = [f"{stage}.{key}" for stage in ("oracle", "score", "policy")
              for key in (f"dtype={dtype}", f"batch_size={args.batch_size}")]
    cmd = [*launcher, "-m", "tokensift", "sepo", "--data", str(out / "pairs.jsonl"),
           "--output-dir", str(out / "run"), "--reference-model", args.oracle,
           "--policy-model", str(out / "policy"), "--max-length", str(args.max_length),
           "--max-prompt-length", str(args.max_length // 2), "--show-pairs", "0", *common,
           "oracle.max_steps=20", f"policy.max_steps={args.steps}", f"policy.k_chosen={args.k}",
           f"policy.k_rejected={args.k}", "policy.log_every=1",
           f"policy.gradient_checkpointing={str(args.gradient_checkpointing).lower()}"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    print(" ".join(cmd), flush=True)
    started = time.perf_counter()
    subprocess.run(cmd, env=env, check=True)
    wall = time.perf_counter() - started

    records = [json.loads(line) for line in open(out / "run" / "policy" / "metrics.jsonl")]
    steps = [r for r in records if "tokens_per_s" in r][2:] or [r for r in records if "tokens_per_s" in r]
    tokens_per_s = median([r["tokens_per_s"] for r in steps])
    peak = peak_tflops(args.peak_tflops)
    mfu = 6 * params * tokens_per_s / (args.processes * peak * 1e12) if peak else None
    result = {
        "machine": machine(), "backend": args.backend, "processes": args.processes, "policy_params": params,
        "oracle": args.oracle, "dtype": dtype, "batch_size_per_process": args.batch_size,
        "max_length": args.max_length, "k": args.k, "gradient_checkpointing": args.gradient_checkpointing,
        "policy_steps_measured": len(steps), "median_step_s": median([r["step_time_s"] for r in steps]),
        "tokens_per_s": tokens_per_s, "mfu": mfu, "peak_tflops_per_device": peak,
        "peak_memory_mb_per_process": max(r.get("peak_memory_mb") or 0 for r in steps),
        "pipeline_wall_s": wall,
    }
    (out / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"\npolicy {params / 1e9:.2f}B under {args.backend} x{args.processes}: {tokens_per_s:,.0f} tokens/s, "
          f"MFU {'n/a (no GPU peak known)' if mfu is None else f'{mfu:.1%}'}")


if __name__ == "__main__":
    main()
