"""Why SePO barely learned its own objective in a new user's run, one command, resumable.

    python experiments/sepo_diagnosis/run.py --out runs/sepo-diagnosis    # then see docs/experiments/sepo-diagnosis/

The run that raised the question (issue 15): `tokensift sepo` on 160 AlpacaEval pairs, 20 policy steps at lr 5e-6,
k = 0.3: the policy's key-token loss started at 1.0 (> ln 2) and stayed noisy. Here, on the same kind of data:
1. the oracle as the paper trains it (DPO from the reference on all the pairs), and its token scores;
2. where the key tokens sit in the starting policy's distribution: mean log-prob of the oracle's top chosen and
   bottom rejected tokens against all response tokens and against random tokens of the same count;
3. SePO's margin before any step (gamma = 1): per pair, mean log-prob of the selected chosen tokens minus that of
   the selected rejected ones, for the oracle's selection, random-k and all tokens (SimPO's reward);
4. 20 SePO steps for gamma in {1, 2.3} x lr in {5e-6, 2e-5}, and random-k at two of those settings (the
   user's gamma 1, lr 5e-6 and the paper's gamma 2.3 at lr 2e-5): the loss and batch accuracy per step, and the
   held-out accuracy of the same margin after training.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "alpacaeval-gpt4turbo-pairs.dev.jsonl.gz"


def pairs_file(out: Path, n: int) -> Path:
    path = out / "pairs.jsonl"
    if not path.exists():
        with gzip.open(DATA, "rt") as src:
            rows = [next(src) for _ in range(n)]
        path.write_text("".join(rows))
    return path


def oracle_and_scores(args, out: Path, data: Path) -> Path:
    from tokensift.config import build
    from tokensift.models import load_tokenizer
    from tokensift.sepo.config import OracleConfig, ScoreConfig
    from tokensift.sepo.oracle import train_oracle
    from tokensift.sepo.score import score_tokens, scores_complete
    from tokensift.train.run_folder import training_done

    common = dict(data=str(data), max_length=args.max_length, max_prompt_length=args.max_length // 2)
    oracle = build(OracleConfig, {**common, "model": args.model, "output_dir": str(out / "oracle"), "fraction": 1.0,
                                  "epochs": 2.0, "learning_rate": 5e-6, "beta": 0.1, "batch_size": 8,
                                  "resume": True, "save_every": 0, "progress": False})
    if not training_done(oracle):
        train_oracle(oracle)
    score = build(ScoreConfig, {**common, "oracle": str(out / "oracle" / "final"), "reference": args.model,
                                "output_dir": str(out / "scores"), "progress": False})
    if not scores_complete(score.output_dir, score, load_tokenizer(score.oracle)):
        score_tokens(score)
    return Path(score.output_dir)


def start_logps(args, out: Path, scores: Path) -> dict:
    """The starting policy's per-token log-probs of every scored response (the reference cache pass)."""
    import torch

    from tokensift.data.tokenize import TokenizedPair
    from tokensift.models import load_model, load_tokenizer
    from tokensift.scores import load_scores
    from tokensift.train.ref_cache import iter_pair_logps

    path = out / "start_logps.npz"
    _, records = load_scores(scores)
    if path.exists():
        saved = np.load(path, allow_pickle=True)
        return {int(k): tuple(v) for k, v in saved["items"].item().items()}
    model = load_model(args.model).eval()
    pairs = [TokenizedPair(r, rec["prompt_ids"], rec["chosen_ids"], rec["rejected_ids"]) for r, rec in records.items()]
    out_logps = {p.row: (c, r) for p, c, r in iter_pair_logps(model, pairs, 8, load_tokenizer(args.model).pad_token_id,
                                                              torch.device("cpu"))}
    np.savez(path, items=np.array(out_logps, dtype=object))
    return out_logps


def selection_statistics(records: dict, logps: dict, k: float) -> dict:
    """Where the oracle's key tokens sit in the starting policy's distribution, and SePO's margin at step 0."""
    from tokensift.selection import Selection, selected_count

    selection = Selection("per_response", k, k)
    rng = np.random.default_rng(0)
    stats = {name: [] for name in ("chosen_selected", "chosen_all", "chosen_random", "rejected_selected",
                                   "rejected_all", "rejected_random")}
    margins = {"oracle": [], "random": [], "all": []}
    for row, rec in records.items():
        c_logp, r_logp = logps[row]
        c_mask, r_mask = selection.chosen(rec["chosen_scores"]), selection.rejected(rec["rejected_scores"])
        c_rand = rng.choice(len(c_logp), selected_count(k, len(c_logp)), replace=False)
        r_rand = rng.choice(len(r_logp), selected_count(k, len(r_logp)), replace=False)
        stats["chosen_selected"].append(c_logp[c_mask].mean())
        stats["chosen_all"].append(c_logp.mean())
        stats["chosen_random"].append(c_logp[c_rand].mean())
        stats["rejected_selected"].append(r_logp[r_mask].mean())
        stats["rejected_all"].append(r_logp.mean())
        stats["rejected_random"].append(r_logp[r_rand].mean())
        margins["oracle"].append(c_logp[c_mask].mean() - r_logp[r_mask].mean())
        margins["random"].append(c_logp[c_rand].mean() - r_logp[r_rand].mean())
        margins["all"].append(c_logp.mean() - r_logp.mean())
    out = {f"mean_logp/{k_}": float(np.mean(v)) for k_, v in stats.items()}
    for name, values in margins.items():
        values = np.array(values)
        out[f"margin_at_start/{name}"] = {
            "mean": float(values.mean()), "stderr": float(values.std(ddof=1) / np.sqrt(len(values))),
            "accuracy": float((values > 0).mean()), "loss_gamma1": float(np.mean(np.log1p(np.exp(-values))))}
    return out


def train_runs(args, out: Path, scores: Path) -> dict:
    from tokensift.api import train_model
    from tokensift.config import build
    from tokensift.train.run_folder import training_done
    from tokensift.train.config import TrainConfig
    from tokensift.train.metrics import read_metrics

    results = {}
    grid = [("oracle", gamma, lr) for gamma in (1.0, 2.3) for lr in (5e-6, 2e-5)]
    grid += [("random", 1.0, 5e-6), ("random", 2.3, 2e-5)]
    for selector, gamma, lr in grid:
        name = f"{selector}-gamma{gamma:g}-lr{lr:g}"
        config = build(TrainConfig, {
            "model": args.model, "loss": "sepo", "selector": selector, "scores": str(scores),
            "sepo_gamma": gamma, "learning_rate": lr, "batch_size": 8, "max_steps": args.steps,
            "k_chosen": args.k, "k_rejected": args.k, "eval_fraction": 0.25, "seed": 0, "warmup_ratio": 0.0,
            "output_dir": str(out / name), "resume": True, "save_every": 0, "progress": False})
        if not training_done(config):
            train_model(config)
        rows = read_metrics(out / name / "metrics.jsonl")
        steps = [r for r in rows if "loss" in r]
        final = next((r for r in reversed(rows) if "eval/loss" in r), {})
        results[name] = {"loss": [round(r["loss"], 4) for r in steps],
                         "batch_accuracy": [r.get("rewards/accuracy") for r in steps],
                         "eval_loss": final.get("eval/loss"), "eval_accuracy": final.get("eval/rewards/accuracy")}
        print(f"[diagnosis] {name}: loss {results[name]['loss'][0]:.3f} -> {results[name]['loss'][-1]:.3f}, "
              f"held-out accuracy {results[name]['eval_accuracy']}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/sepo-diagnosis")
    parser.add_argument("--docs", default=str(ROOT / "docs" / "experiments" / "sepo-diagnosis"))
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--pairs", type=int, default=160)
    parser.add_argument("--max-length", type=int, default=128,
                        help="Prompt + response tokens (prompts get half); 128 keeps the run near an hour on 2 cores.")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--k", type=float, default=0.3)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from tokensift.scores import load_scores

    out, docs = Path(args.out), Path(args.docs)
    out.mkdir(parents=True, exist_ok=True)
    docs.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    scores = oracle_and_scores(args, out, pairs_file(out, args.pairs))
    _, records = load_scores(scores)
    statistics = selection_statistics(records, start_logps(args, out, scores), args.k)
    print(json.dumps(statistics, indent=2))
    runs = train_runs(args, out, scores)
    summary = {"selection_statistics": statistics, "runs": runs, "settings": vars(args),
               "minutes": (time.perf_counter() - started) / 60}
    (docs / "results.json").write_text(json.dumps(summary, indent=2))
    print(f"[diagnosis] wrote {docs / 'results.json'}")


if __name__ == "__main__":
    main()
