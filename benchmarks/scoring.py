"""Token-scoring throughput against the plain-forward limit, and how scoring scales with the data size.

    python benchmarks/scoring.py throughput            # default model, oracle = reference = the default model
    python benchmarks/scoring.py scaling --sizes 1000 10000 100000

throughput: scoring runs two models teacher-forced over every pair; nothing can beat two plain forward passes
(`model(input_ids)` with full logits, no grad) over the same batches. The script times both on the same
length-bucketed batches and prints the overhead (target: <= 25%).
scaling: the whole `score_tokens` job (read a JSONL file, tokenise, score, write shards) on a tiny in-process
model for each data size, each in a fresh process: wall time should grow linearly, peak memory stay flat.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PeakMemory, device, emit, machine, preference_examples, run_child, sync  # noqa: E402
from shapes import resolve  # noqa: E402


def throughput(args) -> None:
    import torch

    from tokensift.data.collate import collate_pairs
    from tokensift.data.tokenize import TokenizeSettings, tokenize_examples
    from tokensift.models import load_model, load_tokenizer
    from tokensift.sepo.score import score_pairs
    from tokensift.data.collate import length_buckets

    tokenizer = load_tokenizer(args.model)
    examples = preference_examples(args.pairs, args.data)
    pairs, _ = tokenize_examples(tokenizer, examples, TokenizeSettings(args.max_length, args.max_length // 2))
    oracle = load_model(args.model, dtype=args.dtype, device=device()).eval()
    reference = load_model(args.model, dtype=args.dtype, device=device()).eval()
    tokens = sum(p.num_tokens for p in pairs)

    def plain():
        with torch.no_grad():
            for group in length_buckets(pairs, args.batch_size):
                batch = collate_pairs(group, tokenizer.pad_token_id).to(device())
                for model in (oracle, reference):
                    model(input_ids=batch.input_ids, attention_mask=torch.ones_like(batch.input_ids)).logits.sum()

    def scoring():
        for _ in score_pairs(oracle, reference, pairs, args.batch_size, tokenizer.pad_token_id, 0.1, device()):
            pass

    timings = {"plain": [], "scoring": []}
    plain()  # warm-up
    for _ in range(args.repeats):
        for name, fn in (("plain", plain), ("scoring", scoring)):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            timings[name].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in timings.items()}
    print(f"# scoring throughput, {args.shape} {args.dtype}, {len(pairs)} pairs ({tokens} tokens incl. the prompt "
          f"twice), batch {args.batch_size}, max_length {args.max_length}; best of {args.repeats}; {machine()}")
    for name, seconds in best.items():
        print(f"{name:8s} {seconds:8.2f} s  {tokens / seconds:8.0f} tokens/s")
    print(f"scoring overhead over two plain forward passes: {best['scoring'] / best['plain'] - 1:+.1%} (target <= +25%)")


def write_data(path: Path, n: int) -> None:
    rng = random.Random(0)
    words = "good great fine bad awful sad happy movie day food place people time work".split()
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"prompt": f"Question {i}: " + " ".join(rng.choices(words, k=8)),
                                "chosen": " ".join(rng.choices(words, k=rng.randint(5, 30))),
                                "rejected": " ".join(rng.choices(words, k=rng.randint(5, 30)))}) + "\n")


def scaling_child(args) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import build_model, build_tokenizer

    from tokensift.sepo.config import ScoreConfig
    from tokensift.sepo.score import score_tokens

    work = Path(args.out) / f"scale-{args.size}"
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    tokenizer = build_tokenizer()
    for name, seed in (("ref", 0), ("oracle", 1)):
        build_model(len(tokenizer), seed=seed).save_pretrained(work / name)
        tokenizer.save_pretrained(work / name)
    write_data(work / "data.jsonl", args.size)
    config = ScoreConfig(data=str(work / "data.jsonl"), oracle=str(work / "oracle"), reference=str(work / "ref"),
                         output_dir=str(work / "scores"), batch_size=64, chunk_pairs=2048, progress=False,
                         max_length=128, max_prompt_length=64)
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        result = score_tokens(config)
        seconds = time.perf_counter() - t0
    emit({"size": args.size, "seconds": seconds, "peak_mb": mem.peak, "rows": result.rows_total,
          "tokens": result.tokens})
    shutil.rmtree(work, ignore_errors=True)


def scaling(args) -> None:
    results = [run_child(Path(__file__), ["scaling", "--size", str(n), "--out", args.out], timeout=7200)
               for n in args.sizes]
    print(f"# scoring scaling on a tiny model (2 layers, hidden 32), whole job incl. reading and writing; {machine()}")
    print(f"{'pairs':>8s}{'seconds':>10s}{'s per 1k':>10s}{'peak MB':>10s}")
    for r in results:
        print(f"{r['size']:8d}{r['seconds']:10.1f}{r['seconds'] / r['size'] * 1000:10.2f}{r['peak_mb']:10.0f}")
    first, last = results[0], results[-1]
    print(f"time per pair, largest/smallest: {last['seconds'] / last['size'] / (first['seconds'] / first['size']):.2f}x "
          f"(1.0 = linear); peak memory largest/smallest: {last['peak_mb'] / first['peak_mb']:.2f}x (1.0 = flat)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("mode", choices=("throughput", "scaling"))
    parser.add_argument("--model", default="smollm2-135m-instruct", help="A model, alias or shape:NAME (shapes.py).")
    parser.add_argument("--data", default=None)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--size", type=int)
    parser.add_argument("--out", default="/tmp/tokensift-bench-score")
    args = parser.parse_args()
    shape, args.model = args.model, resolve(args.model)
    if args.child:
        return scaling_child(args)
    args.shape = shape
    return throughput(args) if args.mode == "throughput" else scaling(args)


if __name__ == "__main__":
    main()
