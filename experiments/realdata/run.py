"""Real-data experiment: DPO, SimPO and SePO on AlpacaEval pairs, and the out-of-distribution HH-RLHF setting.

    python experiments/realdata/run.py --out runs/realdata            # then see docs/experiments/realdata/

Part A (in-distribution, AI feedback): the AlpacaEval GPT-4-Turbo pairs in ../shared/data, split by prompt
(80% of prompts for training, 20% held out, seeded), a random subset of each side for CPU, responses truncated.
The oracle is DPO on 30% of the training pairs; its token scores give the reward-mass summary (how few tokens
carry 80% of each pair's reward gap). DPO, SimPO and SePO (k = 0.3) then train from the default model with the
same budget, and each is scored on the held-out pairs: DPO implicit-reward accuracy (reference = the start
model) and reference-free mean-log-prob accuracy.
Part B (out of distribution, the paper's weak-data setting): HH-RLHF pairs, scored by the same AlpacaEval oracle,
train the default model with SePO (k = 0.3) against full-token training (DPO, and SePO with k = 1, which is SimPO
with beta = 1, gamma = 0). Evaluated on held-out HH pairs and on the held-out AlpacaEval pairs (does training on
weak data hurt the target task?).
Every stage is resumable.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"


def write_jsonl(path: Path, rows) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(path)


def alpaca_split(out: Path, n_train: int, n_test: int, seed: int = 0) -> tuple[Path, Path]:
    train_path, test_path = out / "alpaca-train.jsonl", out / "alpaca-test.jsonl"
    if train_path.exists() and test_path.exists():
        return train_path, test_path
    with gzip.open(SHARED / "alpacaeval-gpt4turbo-pairs.dev.jsonl.gz", "rt") as f:
        rows = [json.loads(line) for line in f]
    prompts = sorted({r["prompt"] for r in rows})
    random.Random(seed).shuffle(prompts)
    held = set(prompts[: len(prompts) // 5])
    train = [r for r in rows if r["prompt"] not in held]
    test = [r for r in rows if r["prompt"] in held]
    rng = random.Random(seed)
    write_jsonl(train_path, rng.sample(train, min(n_train, len(train))))
    write_jsonl(test_path, rng.sample(test, min(n_test, len(test))))
    print(f"[realdata] AlpacaEval: {len(prompts) - len(held)} train prompts / {len(held)} held-out prompts; "
          f"{n_train} / {n_test} pairs sampled")
    return train_path, test_path


def hh_split(out: Path, n_train: int, n_test: int, seed: int = 0) -> tuple[Path, Path]:
    train_path, test_path = out / "hh-train.jsonl", out / "hh-test.jsonl"
    if train_path.exists() and test_path.exists():
        return train_path, test_path
    with gzip.open(SHARED / "hh-rlhf-harmless-test.dev.jsonl.gz", "rt") as f:
        rows = [json.loads(line) for line in f]
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    write_jsonl(train_path, [rows[i] for i in order[:n_train]])
    write_jsonl(test_path, [rows[i] for i in order[n_train : n_train + n_test]])
    return train_path, test_path


def common(args) -> dict:
    return dict(model=args.model, learning_rate=args.lr, batch_size=8, epochs=1.0, warmup_ratio=0.1,
                max_length=args.max_length, max_prompt_length=args.max_prompt_length, save_every=10, seed=0,
                resume=True, progress=False)


def run_training(config) -> None:
    from tokensift.api import train_model as train
    from tokensift.train.run_folder import training_done

    if not training_done(config):
        print(f"[realdata] training {config.output_dir}")
        train(config)


def oracle_and_scores(args, out: Path, train_path: Path) -> Path:
    from tokensift.config import build
    from tokensift.sepo.config import OracleConfig
    from tokensift.sepo.oracle import train_oracle
    from tokensift.train.run_folder import training_done

    oracle = build(OracleConfig, {**common(args), "data": str(train_path), "output_dir": str(out / "oracle"),
                                  "fraction": 0.3, "epochs": 2.0, "beta": 0.1})
    if not training_done(oracle):
        print("[realdata] training the oracle on 30% of the AlpacaEval training pairs")
        train_oracle(oracle)
    return str(out / "oracle" / "final")


def score(args, data: Path, oracle: str, folder: Path) -> Path:
    from tokensift.config import build
    from tokensift.models import load_tokenizer
    from tokensift.sepo.config import ScoreConfig
    from tokensift.sepo.score import score_tokens, scores_complete

    config = build(ScoreConfig, {"data": str(data), "oracle": oracle, "reference": args.model,
                                 "output_dir": str(folder), "max_length": args.max_length,
                                 "max_prompt_length": args.max_prompt_length, "progress": False})
    if not scores_complete(folder, config, load_tokenizer(oracle)):
        print(f"[realdata] scoring {data.name}")
        score_tokens(config)
    return folder


def train_methods(args, out: Path, data: Path, scores: Path, prefix: str, methods: dict) -> None:
    from tokensift.config import build
    from tokensift.train.config import TrainConfig

    for name, extra in methods.items():
        values = {**common(args), "data": str(data), "output_dir": str(out / f"{prefix}-{name}"), **extra}
        if extra.get("loss") == "sepo":
            values["scores"] = str(scores)
        run_training(build(TrainConfig, values))


def training_compute(out: Path) -> dict:
    """Per training run (named by its folder): steps, pairs, wall seconds and the median step time."""
    compute = {}
    for card_path in sorted(out.glob("*/final/run_card.json")):
        folder = card_path.parent.parent
        card = json.loads(card_path.read_text())
        lines = (folder / "metrics.jsonl").read_text().splitlines() if (folder / "metrics.jsonl").exists() else []
        times = [r["step_time_s"] for r in map(json.loads, filter(str.strip, lines)) if "step_time_s" in r]
        compute[folder.name] = {"steps": card["steps"], "pairs": card["data"]["train_pairs"], "seconds": card["seconds"],
                                "median_step_seconds": float(np.median(times)) if times else None}
    return compute


class Evaluator:
    """Held-out preference accuracy; the start model's log-probs are computed once per test set."""

    def __init__(self, args, tokenizer):
        self.args, self.tokenizer = args, tokenizer
        self.sets: dict[str, tuple] = {}

    def pairs(self, path: Path):
        from tokensift.config import build
        from tokensift.eval.preference import score_pairs
        from tokensift.models import load_model
        from tokensift.train.config import TrainConfig
        from tokensift.train.data import load_pairs

        key = str(path)
        if key not in self.sets:
            cfg = build(TrainConfig, {"data": key, "max_length": self.args.max_length,
                                      "max_prompt_length": self.args.max_prompt_length})
            pairs = load_pairs(key, cfg, self.tokenizer).pairs
            start = load_model(self.args.model).eval()
            self.sets[key] = (pairs, score_pairs(start, pairs, 16, self.tokenizer.pad_token_id, "cpu"))
        return self.sets[key]

    def accuracy(self, model_path: str | None, test: Path) -> dict:
        from tokensift.eval.preference import pair_margins, score_pairs
        from tokensift.models import load_model

        pairs, reference = self.pairs(test)
        policy = reference if model_path is None else score_pairs(
            load_model(model_path).eval(), pairs, 16, self.tokenizer.pad_token_id, "cpu")
        margins = pair_margins(pairs, policy, reference, 0.1)
        return {"pairs": len(pairs), "dpo_reward_accuracy": float((margins["dpo"] > 0).mean()),
                "mean_logp_accuracy": float((margins["mean_logp"] > 0).mean()),
                "dpo_margin_mean": float(margins["dpo"].mean()),
                "chosen_logp_shift": float(np.mean(policy.chosen - reference.chosen)),
                "rejected_logp_shift": float(np.mean(policy.rejected - reference.rejected))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/realdata")
    parser.add_argument("--docs", default=str(ROOT / "docs" / "experiments" / "realdata"))
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--train-pairs", type=int, default=240)
    parser.add_argument("--test-pairs", type=int, default=160)
    parser.add_argument("--max-length", type=int, default=224)
    parser.add_argument("--max-prompt-length", type=int, default=96)
    parser.add_argument("--lr", type=float, default=5e-6)
    args = parser.parse_args()
    if not SHARED.exists():
        raise SystemExit(f"{SHARED} is absent: this experiment needs the shared data folder")
    from tokensift.models import load_tokenizer
    from tokensift.sepo.mass import describe, mass_summary, save_summary

    out, docs = Path(args.out), Path(args.docs)
    out.mkdir(parents=True, exist_ok=True)
    docs.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tokenizer = load_tokenizer(args.model)
    alpaca_train, alpaca_test = alpaca_split(out, args.train_pairs, args.test_pairs)
    hh_train, hh_test = hh_split(out, args.train_pairs, args.test_pairs)
    oracle = oracle_and_scores(args, out, alpaca_train)
    alpaca_scores = score(args, alpaca_train, oracle, out / "alpaca-scores")
    mass = mass_summary(alpaca_scores)
    save_summary(mass, docs, title="AlpacaEval pairs: reward concentration (oracle on 30%)")
    print(f"[realdata] reward mass: {describe(mass)}")
    sepo = {"loss": "sepo", "k_chosen": 0.3, "k_rejected": 0.3}
    train_methods(args, out, alpaca_train, alpaca_scores, "alpaca", {
        "dpo": {"loss": "dpo", "beta": 0.1}, "simpo": {"loss": "simpo", "beta": 2.0, "simpo_gamma": 0.5}, "sepo": sepo})
    hh_scores = score(args, hh_train, oracle, out / "hh-scores")
    hh_mass = mass_summary(hh_scores)
    train_methods(args, out, hh_train, hh_scores, "hh", {
        "dpo": {"loss": "dpo", "beta": 0.1}, "full": {"loss": "sepo", "k_chosen": 1.0, "k_rejected": 1.0},
        "sepo": sepo})
    evaluator = Evaluator(args, tokenizer)
    results = {"part_a_alpacaeval": {"start": evaluator.accuracy(None, alpaca_test)},
               "part_b_hh": {"start": {"hh": evaluator.accuracy(None, hh_test),
                                       "alpacaeval": evaluator.accuracy(None, alpaca_test)}}}
    for name in ("dpo", "simpo", "sepo"):
        results["part_a_alpacaeval"][name] = evaluator.accuracy(str(out / f"alpaca-{name}" / "final"), alpaca_test)
        print(f"[realdata] AlpacaEval {name}: {results['part_a_alpacaeval'][name]}")
    for name in ("dpo", "full", "sepo"):
        path = str(out / f"hh-{name}" / "final")
        results["part_b_hh"][name] = {"hh": evaluator.accuracy(path, hh_test),
                                      "alpacaeval": evaluator.accuracy(path, alpaca_test)}
        print(f"[realdata] HH {name}: {results['part_b_hh'][name]}")
    results["compute"] = training_compute(out)
    results["reward_mass_alpacaeval"] = mass
    results["reward_mass_hh"] = hh_mass
    results["settings"] = vars(args)
    results["total_minutes"] = (time.perf_counter() - started) / 60
    (docs / "results.json").write_text(json.dumps(results, indent=2))
    print(f"[realdata] wrote {docs / 'results.json'}")


if __name__ == "__main__":
    main()
