"""AlpacaEval pairs, held-out prompts: DPO, SimPO, SePO and random-k with the same budget, several seeds, held-out
preference accuracy with confidence intervals. One command, resumable.

    python experiments/realdata/seeds.py --out runs/realdata-seeds      # then see docs/experiments/realdata/

The pairs are split by prompt as in run.py (80% of prompts for training, 20% never seen in training). The oracle is
the paper's recipe: DPO from the start model on all the training pairs. Each method trains once per seed (the seed
orders the data, and draws random-k's tokens) with the same pairs, steps, batch and learning rate. Each model is
scored on the held-out pairs by the DPO implicit reward against the start model (accuracy: the chosen response gets
the higher reward). Reported per method: the accuracy of each seed, the mean, and a 95% interval from a bootstrap
that resamples the held-out pairs and the seeds; and paired differences (SePO - random-k, SePO - DPO) with the
same bootstrap.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import alpaca_split, run_training  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
METHODS = {  # per seed in this order: SePO and its control first
    "sepo": {"loss": "sepo", "selector": "oracle", "k_chosen": 0.3, "k_rejected": 0.3},
    "random": {"loss": "sepo", "selector": "random", "k_chosen": 0.3, "k_rejected": 0.3},
    "dpo": {"loss": "dpo", "beta": 0.1},
    "simpo": {"loss": "simpo", "beta": 2.0, "simpo_gamma": 0.5},
}
PAIRS_OF_INTEREST = (("sepo", "random"), ("sepo", "dpo"), ("sepo", "simpo"), ("dpo", "simpo"))


def common(args, data: Path) -> dict:
    return {"data": str(data), "model": args.model, "learning_rate": args.lr, "batch_size": 8, "epochs": 1.0,
            "warmup_ratio": 0.1, "max_length": args.max_length, "max_prompt_length": args.max_prompt_length,
            "save_every": 0, "resume": True, "progress": False}


def oracle_scores(args, out: Path, train: Path) -> Path:
    from tokensift.config import build
    from tokensift.models import load_tokenizer
    from tokensift.sepo.config import OracleConfig, ScoreConfig
    from tokensift.sepo.oracle import train_oracle
    from tokensift.sepo.score import score_tokens, scores_complete
    from tokensift.train.run_folder import training_done

    oracle = build(OracleConfig, {**common(args, train), "seed": 0, "output_dir": str(out / "oracle"),
                                  "fraction": 1.0, "epochs": 2.0, "beta": 0.1})
    if not training_done(oracle):
        print("[seeds] training the oracle on all the training pairs")
        train_oracle(oracle)
    score = build(ScoreConfig, {"data": str(train), "oracle": str(out / "oracle" / "final"), "reference": args.model,
                                "output_dir": str(out / "scores"), "max_length": args.max_length,
                                "max_prompt_length": args.max_prompt_length, "progress": False})
    if not scores_complete(score.output_dir, score, load_tokenizer(score.oracle)):
        score_tokens(score)
    return out / "scores"


def correct_per_pair(args, test: Path, folders: dict[str, Path]) -> dict[str, list]:
    """1 where the model's DPO implicit reward (vs the start model) prefers the chosen response, per held-out pair."""
    from tokensift.config import build
    from tokensift.eval.preference import pair_margins, score_pairs
    from tokensift.models import load_model, load_tokenizer
    from tokensift.train.config import TrainConfig
    from tokensift.train.data import load_pairs

    tokenizer = load_tokenizer(args.model)
    config = build(TrainConfig, {"data": str(test), "max_length": args.max_length,
                                 "max_prompt_length": args.max_prompt_length})
    pairs = load_pairs(str(test), config, tokenizer).pairs
    start = score_pairs(load_model(args.model).eval(), pairs, 16, tokenizer.pad_token_id, "cpu")
    out = {}
    for name, folder in folders.items():
        policy = score_pairs(load_model(str(folder)).eval(), pairs, 16, tokenizer.pad_token_id, "cpu")
        out[name] = (pair_margins(pairs, policy, start, 0.1)["dpo"] > 0).astype(int).tolist()
    return out


def bootstrap(correct: np.ndarray, draws: int = 4000, seed: int = 0) -> tuple[float, float]:
    """95% interval of the mean of a [seeds, pairs] array, resampling pairs and seeds."""
    rng = np.random.default_rng(seed)
    n_seeds, n_pairs = correct.shape
    means = np.empty(draws)
    for i in range(draws):
        seeds = rng.integers(0, n_seeds, n_seeds)
        pairs = rng.integers(0, n_pairs, n_pairs)
        means[i] = correct[np.ix_(seeds, pairs)].mean()
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def summarise(correct: dict[str, np.ndarray]) -> dict:
    methods = {}
    for name, values in correct.items():
        low, high = bootstrap(values)
        methods[name] = {"per_seed": values.mean(axis=1).round(4).tolist(), "mean": float(values.mean()),
                         "ci95": [low, high], "pairs": values.shape[1], "seeds": values.shape[0]}
    differences = {}
    for a, b in PAIRS_OF_INTEREST:
        if a in correct and b in correct:
            low, high = bootstrap(correct[a] - correct[b])
            differences[f"{a}-{b}"] = {"mean": float((correct[a] - correct[b]).mean()), "ci95": [low, high]}
    return {"methods": methods, "differences": differences}


def markdown(summary: dict) -> str:
    lines = ["| method | accuracy per seed | mean | 95% interval |", "|---|---|---|---|"]
    for name, m in summary["methods"].items():
        lines.append(f"| {name} | {', '.join(f'{v:.3f}' for v in m['per_seed'])} | {m['mean']:.3f} | "
                     f"{m['ci95'][0]:.3f} to {m['ci95'][1]:.3f} |")
    lines += ["", "| difference | mean | 95% interval |", "|---|---|---|"]
    for name, d in summary["differences"].items():
        lines.append(f"| {name} | {d['mean']:+.3f} | {d['ci95'][0]:+.3f} to {d['ci95'][1]:+.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/realdata-seeds")
    parser.add_argument("--docs", default=str(ROOT / "docs" / "experiments" / "realdata"))
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--train-pairs", type=int, default=160)
    parser.add_argument("--test-pairs", type=int, default=200)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--max-prompt-length", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--sepo-gamma", type=float, default=2.3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from tokensift.config import build
    from tokensift.train.config import TrainConfig

    out, docs = Path(args.out), Path(args.docs)
    out.mkdir(parents=True, exist_ok=True)
    docs.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    train, test = alpaca_split(out, args.train_pairs, args.test_pairs)
    scores = oracle_scores(args, out, train)
    cache = out / "correct.json"
    done = json.loads(cache.read_text()) if cache.exists() else {}
    for seed in args.seeds:  # a whole seed at a time: after each, the summary covers the seeds finished so far
        folders = {}
        for name, settings in METHODS.items():
            values = {**common(args, train), **settings, "seed": seed, "output_dir": str(out / f"{name}-seed{seed}")}
            if settings["loss"] == "sepo":
                values.update(scores=str(scores), sepo_gamma=args.sepo_gamma)
            run_training(build(TrainConfig, values))
            folders[f"{name}-seed{seed}"] = out / f"{name}-seed{seed}" / "final"
        todo = {k: v for k, v in folders.items() if k not in done}
        if todo:
            done.update(correct_per_pair(args, test, todo))
            cache.write_text(json.dumps(done))
        finished = [s for s in args.seeds if all(f"{name}-seed{s}" in done for name in METHODS)]
        correct = {name: np.array([done[f"{name}-seed{s}"] for s in finished]) for name in METHODS}
        summary = {**summarise(correct), "seeds_finished": finished, "settings": vars(args),
                   "minutes": (time.perf_counter() - started) / 60}
        (docs / "seeds.json").write_text(json.dumps(summary, indent=2))
        (docs / "seeds.md").write_text(markdown(summary))
        print(markdown(summary))

if __name__ == "__main__":
    main()
