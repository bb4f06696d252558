"""What each loss costs per training step against DPO, on the same engine, model and batches.

    python benchmarks/loss_cost.py                       # every pairwise loss, HH-RLHF pairs, fp32 on CPU
    python benchmarks/loss_cost.py --steps 5 --batch-size 8 --max-length 256

One trainer (one model, one optimizer, the reference cache built once) takes the steps; between steps its loss is
swapped, round-robin, so every loss steps on the same batch in each round and the machine's noise falls on all of
them alike. Reported per loss: the median step time and the median of its per-round ratios to DPO. The losses
differ only after the forward pass (a few element-wise operations on [B] or [B, R] tensors), so the ratios show
what the loss itself adds: expected within noise of 1.0, a regression if not. KTO and BCO run on the same pairs
read as unpaired rows (the completion, and the other response as the mismatched one), labels alternating; a
mixture (dpo + bco_pair + sft) and DPO with rpo_alpha are timed as well. TDPO (a live reference: a second forward)
and SePO (a stage's selection) are the selector and engine benchmarks' subject, not this one's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import device, machine, median, sync, tokenized_pairs  # noqa: E402


def contenders() -> list[tuple[str, dict]]:
    from tokensift.losses import LOSSES

    names = [n for n, s in LOSSES.items() if s.pairwise and s.reference != "live" and s.selection == "none"]
    names.sort(key=lambda n: n != "dpo")  # DPO first: the baseline
    return [(n, {}) for n in names] + [("dpo,bco_pair,sft", {"loss_weights": [0.8, 0.2, 1.0]}),
                                       ("dpo", {"rpo_alpha": 0.5})]


def label(name: str, settings: dict) -> str:
    return name + "".join(f" {k}={v}" for k, v in settings.items() if k != "loss_weights")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--data", default=None, help="Preference file (default: ../shared/data HH-RLHF).")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3, help="Rounds: every loss steps once per round.")
    parser.add_argument("--out", default="/tmp/tokensift-bench-losses")
    args = parser.parse_args()

    import numpy as np
    import torch

    from tokensift.train.config import TrainConfig
    from tokensift.train.data import PairSet
    from tokensift.train.loop import TrainData, Trainer

    torch.manual_seed(0)
    _, pairs = tokenized_pairs(args.model, args.batch_size * (args.steps + 1), args.data, args.max_length)
    for i, pair in enumerate(pairs):  # for KTO and BCO: the chosen response as the completion, labels alternating
        pair.label = float(i % 2 == 0)
    runs = contenders()
    config = TrainConfig(data="-", model=args.model, output_dir=str(Path(args.out) / "run"), loss="dpo",
                         batch_size=args.batch_size, max_steps=len(runs) * (args.steps + 1), dtype=args.dtype,
                         learning_rate=1e-7, progress=False, save_every=0, max_length=args.max_length,
                         max_prompt_length=args.max_length // 2, ref_cache_dir=str(Path(args.out) / "refcache"),
                         overwrite=True)
    trainer = Trainer(config, data=TrainData(train=PairSet("bench", "bench", pairs)))
    order = np.arange(len(pairs))
    trainer.schedule.epoch_order = lambda epoch: order  # batch r is pairs [r*B, (r+1)*B) for every loss
    times: dict[str, list[float]] = {label(*run): [] for run in runs}
    losses: dict[str, float] = {}
    for rnd in range(args.steps + 1):
        for name, settings in runs:
            config.loss, config.loss_weights, config.rpo_alpha = name, settings.get("loss_weights"), \
                settings.get("rpo_alpha", 0.0)
            sync()
            t0 = time.perf_counter()
            metrics, _ = trainer.train_step(rnd)  # step r is batch r (the identity order): the same pairs
            sync()
            if rnd:  # round 0 warms up (optimizer state, allocator)
                times[label(name, settings)].append(time.perf_counter() - t0)
                losses[label(name, settings)] = metrics["loss"]
    print(f"# Losses: one step each on the same batches, {args.model} {args.dtype}, batch {args.batch_size} pairs, "
          f"max_length {args.max_length}, median of {args.steps} rounds; {machine()}, device {device()}")
    print(f"{'loss':28s}{'step s':>9s}{'x dpo':>8s}{'loss value':>12s}")
    base = times["dpo"]
    for name in times:
        ratios = [t / b for t, b in zip(times[name], base)]
        print(f"{name:28s}{median(times[name]):9.2f}{statistics.median(ratios):8.2f}{losses[name]:12.4f}")


if __name__ == "__main__":
    main()
