"""What each token selector adds to a training step, on the default model and the same batches.

    python benchmarks/selector_cost.py                  # SimPO's loss, HH-RLHF pairs, fp32 on CPU
    python benchmarks/selector_cost.py --steps 6 --max-length 384 --loss dpo

One trainer (one model, one optimizer) takes the steps; between steps its selector is swapped, round-robin, so every
selector steps on the same batch in each round and the machine's noise falls on all of them alike. Reported per
selector: the median step time and its ratio to training on every response token (selector none), the median of
the per-round ratios. Offline selectors (oracle, random, soft) are chosen at batch time; the LM head then runs only
on the selected tokens for masks (oracle, random). Online selectors (confidence, reference_gap) read the policy's
log-probs of every response token from the training forward itself: no extra forward, but the head runs on every
response token. reference_gap also reads the reference's per-token log-probs from the reference cache, built once
before training: its one-off cost is reported per pair. The oracle and soft scores are seeded random numbers here:
which tokens are chosen does not change the cost, only how many.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import device, machine, median, sync, tokenized_pairs  # noqa: E402

SELECTORS = ("none", "oracle", "random", "soft", "confidence", "reference_gap")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--data", default=None, help="Preference file (default: ../shared/data HH-RLHF).")
    parser.add_argument("--loss", default="simpo", help="A token-level pairwise loss: simpo, sepo, dpo ...")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5, help="Rounds: every selector steps once per round.")
    parser.add_argument("--k", type=float, default=0.3)
    parser.add_argument("--out", default="/tmp/tokensift-bench-selectors")
    args = parser.parse_args()

    import numpy as np
    import torch

    from tokensift.selectors import build_selector
    from tokensift.train.config import TrainConfig
    from tokensift.train.data import PairSet
    from tokensift.train.ref_cache import iter_pair_logps
    from tokensift.train.loop import TrainData, Trainer

    torch.manual_seed(0)
    tokenizer, pairs = tokenized_pairs(args.model, args.batch_size * (args.steps + 1), args.data, args.max_length)
    rng = np.random.RandomState(0)
    scores = {p.row: (rng.randn(len(p.chosen_ids)), rng.randn(len(p.rejected_ids))) for p in pairs}
    config = TrainConfig(data="-", model=args.model, output_dir=str(Path(args.out) / "run"), loss=args.loss,
                         selector="reference_gap", scores="-", k_chosen=args.k, k_rejected=args.k,
                         batch_size=args.batch_size, max_steps=len(SELECTORS) * (args.steps + 1), dtype=args.dtype,
                         learning_rate=1e-7, progress=False, save_every=0, max_length=args.max_length,
                         max_prompt_length=args.max_length // 2, ref_cache_dir=str(Path(args.out) / "refcache"))
    rows = [p.row for p in pairs]
    selectors = {name: None if name == "none" else build_selector(name, config, scores, rows) for name in SELECTORS}
    trainer = Trainer(config, data=TrainData(train=PairSet("bench", "bench", pairs), select=selectors["oracle"],
                                             reference_tokens=True))
    sync()
    t0 = time.perf_counter()  # what building the reference cache costs per pair: one no-grad forward
    for _ in iter_pair_logps(trainer.model, pairs, args.batch_size, tokenizer.pad_token_id, device()):
        pass
    sync()
    cache_s = time.perf_counter() - t0
    order = np.arange(len(pairs))
    trainer.schedule.epoch_order = lambda epoch: order  # batch r is pairs [r*B, (r+1)*B) for every selector
    times: dict[str, list[float]] = {name: [] for name in SELECTORS}
    for rnd in range(args.steps + 1):
        for name in SELECTORS:
            trainer.data.select = selectors[name]
            sync()
            t0 = time.perf_counter()
            trainer.train_step(rnd)  # step r is batch r (the identity order): the same pairs for every selector
            sync()
            if rnd:  # round 0 warms up (optimizer state, allocator)
                times[name].append(time.perf_counter() - t0)
    print(f"# Token selectors: one {args.loss} step each on the same batches, {args.model} {args.dtype}, batch "
          f"{args.batch_size} pairs, max_length {args.max_length}, k {args.k}, median of {args.steps} rounds; "
          f"{machine()}, device {device()}")
    print(f"{'selector':15s}{'step s':>9s}{'x none':>9s}")
    for name in SELECTORS:
        ratios = [t / base for t, base in zip(times[name], times["none"])]
        print(f"{name:15s}{median(times[name]):9.2f}{statistics.median(ratios):9.2f}")
    per_pair = median(times["none"]) / args.batch_size
    print(f"reference cache for reference_gap (once, before training): {cache_s / len(pairs):.3f} s per pair, "
          f"{cache_s / len(pairs) / per_pair:.2f}x a training step's time per pair")


if __name__ == "__main__":
    main()
