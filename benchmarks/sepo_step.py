"""One training step of SePO (k=0.3) against SimPO and DPO, on the default model and the same batches.

    python benchmarks/sepo_step.py                 # default model, fp32 on CPU (bf16 on GPU with --dtype bfloat16)
    python benchmarks/sepo_step.py --steps 5 --batch-size 8 --max-length 256

Each contender runs in its own process through the real engine (`Trainer.train_step`: forward, loss,
backward, optimizer step) and reports the median step time and the peak memory while stepping:
- sepo:        reference-free, LM head only at the selected key tokens (k_chosen = k_rejected = 0.3);
- simpo:       reference-free, LM head at every response token;
- dpo_cached:  reference log-probs read from the cache (computed before timing);
- dpo_live:    what DPO costs without a cache: the same step plus a no-grad reference forward per batch;
- simpo_full_logits: SimPO as it is usually implemented (full-vocabulary logits at every position, chosen and
  rejected as separate padded sequences), for context: how much of SePO's edge the engine gives every loss.
Which tokens SePO selects does not change its cost, only how many: the scores here are seeded random numbers.
Targets (the SePO issue): sepo <= 0.8 x simpo and <= 0.6 x dpo_live.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PeakMemory, device, emit, machine, median, preference_examples, run_child, sync  # noqa: E402
from shapes import resolve  # noqa: E402

CONTENDERS = ("sepo", "simpo", "dpo_cached", "dpo_live", "simpo_full_logits")


def child(args) -> None:
    import numpy as np
    import torch

    from tokensift.data.tokenize import TokenizeSettings, tokenize_examples
    from tokensift.logprobs import token_logps
    from tokensift.models import load_model, load_tokenizer
    from tokensift.selection import Selection, selection_masks
    from tokensift.train.config import TrainConfig
    from tokensift.train.data import PairSet
    from tokensift.train.loop import TrainData, Trainer

    torch.manual_seed(0)
    name = args.contender
    loss = {"sepo": "sepo", "simpo": "simpo", "simpo_full_logits": "simpo"}.get(name, "dpo")
    tokenizer = load_tokenizer(args.model)
    examples = preference_examples(args.batch_size * (args.steps + 1), args.data)
    pairs, _ = tokenize_examples(tokenizer, examples, TokenizeSettings(args.max_length, args.max_length // 2))
    rng = np.random.RandomState(0)
    scores = {p.row: (rng.randn(len(p.chosen_ids)), rng.randn(len(p.rejected_ids))) for p in pairs}
    selection = Selection("per_response", args.k, args.k)
    select = None
    if loss == "sepo":
        def select(batch):
            rows = batch.rows.tolist()
            return selection_masks(selection, [scores[r][0] for r in rows], [scores[r][1] for r in rows],
                                   batch.response_mask.shape[1])
    config = TrainConfig(data="-", model=args.model, output_dir=str(Path(args.out) / name), loss=loss,
                         scores="-" if loss == "sepo" else None, batch_size=args.batch_size, max_steps=args.steps + 1,
                         dtype=args.dtype, learning_rate=1e-6, progress=False, save_every=0,
                         ref_cache_dir=str(Path(args.out) / "refcache"), max_length=args.max_length,
                         max_prompt_length=args.max_length // 2)
    trainer = Trainer(config, data=TrainData(train=PairSet("bench", "bench", pairs), select=select))
    trainer.schedule.epoch_order = lambda epoch: np.arange(len(pairs))  # the same batches for every contender
    ref = load_model(args.model, dtype=args.dtype, device=device()).eval() if name == "dpo_live" else None
    if name == "simpo_full_logits":
        from tokensift.logprobs import TokenLogps, full_logits_logps

        trainer.pack = False
        inner = trainer.wrapper.model
        trainer.wrapper.forward = lambda input_ids, prompt_lens, mask, *rest: TokenLogps(
            full_logits_logps(inner, input_ids, prompt_lens, mask), None, None)
    trainer.train_step(0)  # warm-up (allocates the optimizer state)
    times, tokens = [], []
    with PeakMemory() as mem:
        for step in range(1, args.steps + 1):
            sync()
            t0 = time.perf_counter()
            if ref is not None:
                batch = trainer.build_batch([pairs[i] for i in trainer.schedule.batch(step)]).to(device())
                with torch.no_grad():
                    token_logps(ref, batch.input_ids, batch.prompt_lens, batch.response_mask)
            metrics, _ = trainer.train_step(step)
            sync()
            times.append(time.perf_counter() - t0)
            tokens.append(metrics["tokens"])
    batch = trainer.build_batch([pairs[i] for i in trainer.schedule.batch(1)])
    read_tokens = int((batch.select_mask if batch.select_mask is not None else batch.response_mask).sum())
    emit({"contender": name, "step_s": median(times), "tokens_per_s": sum(tokens) / sum(times),
          "peak_mb": mem.peak, "step_delta_mb": mem.peak - mem.base, "labels_read": read_tokens,
          "response_tokens": int(batch.response_mask.sum())})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--contender", choices=CONTENDERS)
    parser.add_argument("--only", nargs="*", choices=CONTENDERS, help="Run only these contenders.")
    parser.add_argument("--model", default="smollm2-135m-instruct", help="A model, alias or shape:NAME (shapes.py).")
    parser.add_argument("--data", default=None, help="Preference file (default: ../shared/data HH-RLHF).")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--k", type=float, default=0.3)
    parser.add_argument("--out", default="/tmp/tokensift-bench")
    args = parser.parse_args()
    shape, args.model = args.model, resolve(args.model)
    if args.child:
        return child(args)
    common = ["--model", args.model, "--dtype", args.dtype, "--batch-size", str(args.batch_size), "--max-length",
              str(args.max_length), "--steps", str(args.steps), "--k", str(args.k), "--out", args.out]
    if args.data:
        common += ["--data", args.data]
    results = {c: run_child(Path(__file__), ["--contender", c, *common]) for c in (args.only or CONTENDERS)}
    print(f"# SePO vs SimPO vs DPO step, {shape} {args.dtype}, batch {args.batch_size} pairs, max_length "
          f"{args.max_length}, median of {args.steps} steps; {machine()}")
    print(f"{'contender':12s}{'step s':>9s}{'tokens/s':>10s}{'peak MB':>10s}{'step +MB':>10s}{'labels read':>13s}")
    for name, r in results.items():
        print(f"{name:12s}{r['step_s']:9.2f}{r['tokens_per_s']:10.0f}{r['peak_mb']:10.0f}{r['step_delta_mb']:10.0f}"
              f"{r['labels_read']:>8d}/{r['response_tokens']}")
    if "sepo" not in results:
        return
    s = results["sepo"]
    for other, target in (("simpo", 0.8), ("dpo_live", 0.6), ("dpo_cached", 0.7), ("simpo_full_logits", None)):
        if other in results:
            goal = f" (target <= {target})" if target else ""
            print(f"sepo/{other}: step time {s['step_s'] / results[other]['step_s']:.2f}x{goal}, peak memory "
                  f"{s['peak_mb'] / results[other]['peak_mb']:.2f}x, step memory "
                  f"{s['step_delta_mb'] / max(results[other]['step_delta_mb'], 1e-9):.2f}x")

if __name__ == "__main__":
    main()
