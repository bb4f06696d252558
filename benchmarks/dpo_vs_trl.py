"""DPO training throughput and peak memory: tokensift against TRL's DPOTrainer, side by side in one run.

    python benchmarks/dpo_vs_trl.py                          # default model, fp32 on CPU
    python benchmarks/dpo_vs_trl.py --steps 6 --batch-size 8 --max-length 256 --dtype bfloat16   # on a GPU
    python benchmarks/dpo_vs_trl.py --model shape:qwen2.5-0.5b --max-length 1024 --batch-size 4 --steps 3  # shapes.py

Same model, same pairs (the first steps x batch pairs of the HH-RLHF file), same batch (pairs per step), same
max length, one epoch over exactly those pairs, each contender in its own process:
- tokensift (as shipped): reference log-probs from the cache (the one-off caching pass is timed separately),
  pairs packed back to back without padding (packing=auto), gradient_checkpointing unset (on only when the
  activations would not fit: train/memory.py; the result says which);
- tokensift_pair_rows: the same with packing=pairs (one [prompt|chosen|rejected] row per pair, padded to the
  longest: the engine before padding-free batches);
- tokensift_ckpt: the same as shipped with gradient_checkpointing=true (TRL's default), like-for-like memory;
- trl (as shipped): DPOConfig defaults (live reference model, gradient checkpointing on), fp32 as asked;
- trl, no checkpointing: the same with gradient_checkpointing=False, for a like-for-like engine comparison;
- trl, precomputed reference: precompute_ref_log_probs=True (both caching).
Throughput is pairs/s converted to tokens/s with one token count of the same pairs for every contender, so the
ratios are exact ratios of time per pair. Peak memory is reported whole and above the training state (weights,
gradients and AdamW's moments, the same for every trainer: `shapes.training_state_mb`) and the process's own
memory before the model loads. Targets: padding-free >= 1.3x the pair rows; >= 5x TRL as shipped, peak
memory <= 0.6x TRL's as shipped (issue 13); >= 1.2x TRL with both caching.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PeakMemory, emit, out_of_memory, machine, median, preference_examples, run_child  # noqa: E402
from shapes import parameters_of, resolve, training_state_mb  # noqa: E402

CONTENDERS = ("tokensift", "tokensift_pair_rows", "tokensift_ckpt", "trl_shipped", "trl_no_ckpt", "trl_precompute")


def pair_tokens(args) -> tuple[list, int]:
    from tokensift.data.tokenize import TokenizeSettings, tokenize_examples
    from tokensift.models import load_tokenizer

    tokenizer = load_tokenizer(args.model)
    examples = preference_examples(args.steps * args.batch_size, args.data, args.sample_seed)
    pairs, _ = tokenize_examples(tokenizer, examples, TokenizeSettings(args.max_length, args.max_length // 2))
    return examples, sum(p.num_tokens for p in pairs)


def run_tokensift(args, examples, checkpointing: bool = False, packing: str = "auto",
                  share_prompt: bool = True) -> dict:

    from tokensift.train.config import TrainConfig
    from tokensift.train.loop import Trainer

    path = Path(args.out) / "pairs.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"prompt": e.prompt, "chosen": e.chosen, "rejected": e.rejected}) + "\n"
                            for e in examples))
    out = Path(args.out) / ("tokensift-ckpt" if checkpointing else "tokensift")
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    config = TrainConfig(data=str(path), model=args.model, output_dir=str(out), loss="dpo", beta=0.1,
                         batch_size=args.batch_size, epochs=1.0, dtype=args.dtype, learning_rate=1e-6,
                         max_length=args.max_length, max_prompt_length=args.max_length // 2, progress=False,
                         save_every=0, ref_cache_dir=str(Path(args.out) / "refcache-fresh"),
                         gradient_checkpointing=True if checkpointing else None, packing=packing,
                         share_prompt=share_prompt)
    shutil.rmtree(config.ref_cache_dir, ignore_errors=True)
    t0 = time.perf_counter()
    with PeakMemory() as mem:
        trainer = Trainer(config)  # loads the model and fills the reference cache
        cache_s = time.perf_counter() - t0
        mem.mark("setup")
        times = []
        for step in range(trainer.schedule.total_steps):
            t = time.perf_counter()
            trainer.train_step(step)
            times.append(time.perf_counter() - t)
            mem.mark(f"step {step + 1}")
    return {"step_s": median(times[1:]), "steps": len(times), "cache_s": cache_s, "peak_mb": mem.peak,
            "base_mb": mem.base, "phase_peaks_mb": mem.phases, "checkpointing": trainer.checkpointing}


def run_trl(args, examples, variant: str) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from tokensift.models import load_tokenizer, resolve_model

    source = resolve_model(args.model)
    tokenizer = load_tokenizer(args.model)
    rows = {"prompt": [e.prompt for e in examples], "chosen": [[{"role": "assistant", "content": e.chosen}] for e in examples],
            "rejected": [[{"role": "assistant", "content": e.rejected}] for e in examples]}
    dataset = Dataset.from_dict(rows)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    extra = {}
    if variant == "trl_no_ckpt":
        extra["gradient_checkpointing"] = False
    if variant == "trl_precompute":
        extra["precompute_ref_log_probs"] = True
    config = DPOConfig(output_dir=str(Path(args.out) / variant), per_device_train_batch_size=args.batch_size,
                       num_train_epochs=1, learning_rate=1e-6, beta=0.1, max_length=args.max_length,
                       bf16=args.dtype == "bfloat16", fp16=False, report_to=[], logging_steps=1000, save_strategy="no",
                       use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0, seed=0, **extra)

    class StepTimes(TrainerCallback):
        def __init__(self):
            self.times, self.t = [], None

        def on_step_begin(self, *a, **k):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.t = time.perf_counter()

        def on_step_end(self, *a, **k):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.times.append(time.perf_counter() - self.t)
            mem.mark(f"step {len(self.times)}")

    timer = StepTimes()
    t0 = time.perf_counter()
    with PeakMemory() as mem:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
        trainer = DPOTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                             callbacks=[timer])
        setup_s = time.perf_counter() - t0
        mem.mark("setup")
        trainer.train()
    return {"step_s": median(timer.times[1:]), "steps": len(timer.times), "cache_s": setup_s, "peak_mb": mem.peak,
            "base_mb": mem.base, "phase_peaks_mb": mem.phases}


def child(args) -> None:
    examples, tokens = pair_tokens(args)
    if args.contender.startswith("tokensift"):
        result = run_tokensift(args, examples, checkpointing=args.contender == "tokensift_ckpt",
                               packing="pairs" if args.contender == "tokensift_pair_rows" else "auto")
    else:
        result = run_trl(args, examples, args.contender)
    state = training_state_mb(parameters_of(args.model), args.dtype)
    result.update(contender=args.contender, tokens_per_step=tokens / args.steps,
                  tokens_per_s=tokens / args.steps / result["step_s"], state_mb=state,
                  above_state_mb=result["peak_mb"] - result["base_mb"] - state)
    emit(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--contender", choices=CONTENDERS)
    parser.add_argument("--only", nargs="*", choices=CONTENDERS, help="Run only these contenders.")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--data", default=None)
    parser.add_argument("--sample-seed", type=int, default=None,
                        help="Draw the pairs at random from the whole file with this seed (default: the first ones).")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--out", default="/tmp/tokensift-bench-trl")
    parser.add_argument("--memory-limit-gb", type=float, default=None,
                        help="Address-space limit of each contender's process: past it an allocation fails and the "
                             "contender is reported out of memory instead of the machine swapping or killing.")
    args = parser.parse_args()
    shape, args.model = args.model, resolve(args.model)
    if args.child:
        return child(args)
    common = ["--model", args.model, "--dtype", args.dtype, "--batch-size", str(args.batch_size), "--max-length",
              str(args.max_length), "--steps", str(args.steps), "--out", args.out]
    if args.data:
        common += ["--data", args.data]
    if args.sample_seed is not None:
        common += ["--sample-seed", str(args.sample_seed)]
    results = {}
    for c in args.only or CONTENDERS:
        try:
            results[c] = run_child(Path(__file__), ["--contender", c, *common], memory_limit_gb=args.memory_limit_gb)
        except RuntimeError as exc:  # one contender out of memory must not lose the others' figures
            results[c] = {"error": out_of_memory(str(exc))}
            print(f"{c}: {results[c]['error']}", flush=True)
    print(f"# DPO training: tokensift vs TRL {__import__('trl').__version__} DPOTrainer, {shape} {args.dtype}, "
          f"batch {args.batch_size} pairs, max_length {args.max_length}, {args.steps} steps (median of steps 2..), "
          f"pairs: {'the first ones' if args.sample_seed is None else f'random, seed {args.sample_seed}'}; "
          f"{machine()}")
    state = next((r["state_mb"] for r in results.values() if "state_mb" in r), float("nan"))
    print(f"training state (weights, gradients, AdamW moments): {state:.0f} MB; "
          f"memory limit per contender: {args.memory_limit_gb or 'none'} GB")
    print(f"{'contender':20s}{'step s':>9s}{'tokens/s':>10s}{'peak MB':>10s}{'above state':>12s}{'setup s':>10s}")
    for name, r in results.items():
        if "error" in r:
            print(f"{name:20s} {r['error']}")
            continue
        print(f"{name:20s}{r['step_s']:9.2f}{r['tokens_per_s']:10.0f}{r['peak_mb']:10.0f}{r['above_state_mb']:12.0f}"
              f"{r['cache_s']:10.1f}")
    results = {k: v for k, v in results.items() if "error" not in v}
    if "tokensift" in results and "tokensift_pair_rows" in results:
        ours, rows = results["tokensift"], results["tokensift_pair_rows"]
        print(f"tokensift/tokensift_pair_rows: throughput {ours['tokens_per_s'] / rows['tokens_per_s']:.2f}x "
              f"(target >= 1.3), peak memory {ours['peak_mb'] / rows['peak_mb']:.2f}x")
    print("JSON " + json.dumps(results))
    for mine in ("tokensift", "tokensift_ckpt"):
        if mine not in results:
            continue
        ours = results[mine]
        for name, target, memory in (("trl_shipped", 5.0, 0.6), ("trl_no_ckpt", None, None),
                                     ("trl_precompute", 1.2, None)):
            if name in results:
                r = results[name]
                goal = f" (target >= {target})" if target else ""
                bound = f" (target <= {memory})" if memory else ""
                print(f"{mine}/{name}: throughput {ours['tokens_per_s'] / r['tokens_per_s']:.2f}x{goal}, "
                      f"peak memory {ours['peak_mb'] / r['peak_mb']:.2f}x{bound}, above the training state "
                      f"{ours['above_state_mb'] / r['above_state_mb']:.2f}x")


if __name__ == "__main__":
    main()
