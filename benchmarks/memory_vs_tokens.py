"""Peak memory of one DPO step against sequence length: tokensift and TRL's DPOTrainer, side by side in one run.

    python benchmarks/memory_vs_tokens.py --model shape:qwen2.5-0.5b --lengths 512 1024 2048 4096 --memory-limit-gb 22

Each pair is a real AlpacaEval instruction with its two answers, each answer joined with the next pairs' answers of
the same side until it is longer than the length, so every sequence (prompt + answer) is cut at exactly `length`
tokens by both trainers (`max_length = length`). One pair per step, `--steps` steps (the first allocates the
optimizer's state); each contender and length in its own process under the same address-space limit, so "out of
memory" means the same budget for both. Memory is reported whole and above the training state (weights, gradients,
AdamW moments: the same for every trainer) and the process before the model loaded. Contenders: tokensift (as
shipped: checkpointing decided per run), tokensift_ckpt (checkpointing on, as TRL's default),
tokensift_ckpt_separate (the same with share_prompt=false: chosen and rejected as two sequences, as TRL runs
them, instead of one [prompt | chosen | rejected] row), trl_shipped.

What should hold (issue 24): from 1024 to 4096 tokens, tokensift's memory above the training state grows no faster
than the tokens (the LM head is chunked: its buffers do not grow with tokens x vocabulary).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, emit, machine, out_of_memory, run_child  # noqa: E402
from shapes import parameters_of, resolve, training_state_mb  # noqa: E402

CONTENDERS = ("tokensift", "tokensift_ckpt", "tokensift_ckpt_separate", "trl_shipped")


def long_pairs(tokenizer, n: int, length: int, source: Path):
    """n pairs whose answers are each longer than `length` tokens, from real AlpacaEval text."""
    from tokensift.data.example import PreferenceExample
    from tokensift.data.load import load_preferences

    examples = load_preferences(str(source)).examples
    out = []
    for i in range(n):
        sides = []
        for side in ("chosen", "rejected"):
            parts, j, count = [], i, 0
            while count <= length:
                text = getattr(examples[j % len(examples)], side)
                parts.append(text)
                count += len(tokenizer(text, add_special_tokens=False).input_ids)
                j += 1
            sides.append("\n\n".join(parts))
        out.append(PreferenceExample(prompt=examples[i].prompt, chosen=sides[0], rejected=sides[1], row=i))
    return out


def child(args) -> None:
    import dpo_vs_trl

    from tokensift.data.tokenize import TokenizeSettings, tokenize_examples
    from tokensift.models import load_tokenizer

    tokenizer = load_tokenizer(args.model)
    examples = long_pairs(tokenizer, args.steps, args.length, Path(args.data))
    pairs, _ = tokenize_examples(tokenizer, examples, TokenizeSettings(args.length, args.length // 2))
    run = argparse.Namespace(model=args.model, out=str(Path(args.out) / f"{args.contender}-{args.length}"),
                             batch_size=1, dtype=args.dtype, max_length=args.length, steps=args.steps)
    if args.contender.startswith("tokensift"):
        result = dpo_vs_trl.run_tokensift(run, examples, checkpointing=args.contender != "tokensift",
                                          share_prompt=args.contender != "tokensift_ckpt_separate")
    else:
        result = dpo_vs_trl.run_trl(run, examples, args.contender)
    state = training_state_mb(parameters_of(args.model), args.dtype)
    tokens = sum(p.num_tokens for p in pairs) / len(pairs)
    result.update(contender=args.contender, length=args.length, tokens_per_pair=tokens, state_mb=state,
                  above_state_mb=result["peak_mb"] - result["base_mb"] - state, tokens_per_s=tokens / result["step_s"])
    emit(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--contender", choices=CONTENDERS)
    parser.add_argument("--length", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--only", nargs="*", choices=CONTENDERS, default=["tokensift", "trl_shipped"])
    parser.add_argument("--model", default="shape:qwen2.5-0.5b", help="A model, alias or shape:NAME (shapes.py).")
    parser.add_argument("--lengths", nargs="*", type=int, default=[512, 1024, 2048, 4096])
    parser.add_argument("--data", default=str(SHARED / "alpacaeval-gpt4turbo-pairs.dev.jsonl.gz"))
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--memory-limit-gb", type=float, default=None)
    parser.add_argument("--timeout", type=int, default=3600, help="Seconds each contender and length may take.")
    parser.add_argument("--out", default="/tmp/tokensift-bench-memory")
    args = parser.parse_args()
    shape, args.model = args.model, resolve(args.model)
    if args.child:
        return child(args)
    print(f"# one DPO step against length: {shape} {args.dtype}, 1 pair per step, {args.steps} steps, memory "
          f"limit {args.memory_limit_gb or 'none'} GB per process; {machine()}", flush=True)
    results = []
    for contender in args.only:
        for length in args.lengths:
            common = ["--contender", contender, "--length", str(length), "--model", args.model, "--data", args.data,
                      "--dtype", args.dtype, "--steps", str(args.steps), "--out", args.out]
            try:
                r = run_child(Path(__file__), common, timeout=args.timeout, memory_limit_gb=args.memory_limit_gb)
            except RuntimeError as exc:
                r = {"contender": contender, "length": length, "error": out_of_memory(str(exc))}
            except subprocess.TimeoutExpired:
                r = {"contender": contender, "length": length, "error": f"did not finish {args.steps} steps in "
                                                                        f"{args.timeout} s"}
            results.append(r)
            if "error" in r:
                print(f"{length:6d} {contender:16s} {r['error']}", flush=True)
            else:
                print(f"{length:6d} {contender:16s} step {r['step_s']:8.2f} s  peak {r['peak_mb']:8.0f} MB  above "
                      f"state {r['above_state_mb']:8.0f} MB  (state {r['state_mb']:.0f} MB, tokens/pair "
                      f"{r['tokens_per_pair']:.0f}; checkpointing {r.get('checkpointing', 'on (TRL default)')}); "
                      "phase peaks "
                      + ", ".join(f"{k} {v:.0f}" for k, v in r.get("phase_peaks_mb", {}).items()), flush=True)
    print("JSON " + json.dumps(results))
    for contender in args.only:
        rows = {r["length"]: r for r in results if r["contender"] == contender and "error" not in r}
        for a, b in ((1024, 4096), (1024, 2048), (2048, 4096)):
            if a in rows and b in rows:
                grow = rows[b]["above_state_mb"] / rows[a]["above_state_mb"]
                print(f"{contender}: memory above the training state {a} -> {b} tokens: {grow:.2f}x for "
                      f"{rows[b]['tokens_per_pair'] / rows[a]['tokens_per_pair']:.2f}x the tokens "
                      f"(target for tokensift: no faster than the tokens)")


if __name__ == "__main__":
    main()
