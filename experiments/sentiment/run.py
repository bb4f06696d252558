"""Controlled sentiment experiment (in the style of the DPO paper), one command end to end, ~1 hour on 2 cores.

    python experiments/sentiment/run.py --out runs/sentiment          # then see docs/experiments/sentiment/

1. 400 prompts written here (10 templates x 40 topics), split 320 train / 80 test.
2. The default model samples 4 answers per train prompt; the gold reward is VADER sentiment (PyPI
   vaderSentiment, a real external scorer); the most and least positive answers form each pair.
3. DPO, SimPO and SePO train from the same start with the same budget (same pairs, steps, batch, learning rate),
   and SePO once more at a fifth of the learning rate (it has no reference to hold it near the start);
   SePO's oracle is DPO on 30% of the pairs, and SePO trains on k = 0.3 of each response's tokens.
4. Every 10 steps each method is evaluated on fresh samples for the test prompts: gold reward (mean VADER)
   against KL(policy || start) (the Monte-Carlo estimate on the same samples): the reward-KL frontier.
5. Key-token precision: the share of SePO's selected chosen tokens that fall on VADER-lexicon positive words,
   against random selection of the same number of tokens.
Every stage is resumable: rerunning skips what is done.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
METHODS = {"dpo": ("DPO", "tab:blue"), "simpo": ("SimPO", "tab:orange"), "sepo": ("SePO (k=0.3)", "tab:red"),
           "sepo-slow": ("SePO (k=0.3), lr / 5", "tab:purple")}
TEMPLATES = (
    "Describe your last visit to {} in one sentence.", "What do you think about {}? Answer in one sentence.",
    "Write a one-sentence review of {}.", "Tell a friend about {} in one sentence.",
    "How was your experience with {}? One sentence, please.", "Write a short note about {}.",
    "Give your honest opinion of {} in one sentence.", "Summarise a day spent at {} in one sentence.",
    "What would you tell a stranger about {}? Keep it to one sentence.", "Write one sentence about {}.",
)
TOPICS = (
    "the beach", "a new restaurant in town", "the library", "a rainy Monday", "your favourite park", "a train journey",
    "a concert", "the dentist", "a birthday party", "a museum", "a long flight", "the gym", "a bakery",
    "a job interview", "a mountain hike", "a traffic jam", "a summer festival", "a hospital waiting room",
    "a cooking class", "an old bookshop", "a football match", "the post office", "a family dinner",
    "a camping trip", "a crowded bus", "a art gallery", "a coffee shop", "a snowy morning", "a school reunion",
    "a theme park", "a night market", "a rooftop garden", "the city zoo", "a village fair", "a long queue",
    "a science fair", "a ferry ride", "a yoga class", "a flea market", "a wedding",
)


def prompts_split(seed: int = 0):
    prompts = [t.format(topic) for t in TEMPLATES for topic in TOPICS]
    random.Random(seed).shuffle(prompts)
    return prompts[80:], prompts[:80]


def vader_scorer():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    return analyzer, (lambda text: analyzer.polarity_scores(text)["compound"])


def build_pairs(args, out: Path, tokenizer, model) -> Path:
    from tokensift.generate import SamplingSettings, sample_answers

    path = out / "pairs.jsonl"
    if path.exists():
        return path
    train, _ = prompts_split()
    _, score = vader_scorer()
    messages = [[{"role": "user", "content": p}] for p in train]
    samples, _ = sample_answers(model, tokenizer, messages, args.samples,
                                SamplingSettings(max_new_tokens=args.max_new_tokens, temperature=1.0, top_p=1.0,
                                                 batch_size=64, seed=0), desc="sampling train answers")
    by_prompt: dict[int, list[str]] = {}
    for s in samples:
        by_prompt.setdefault(s.prompt_index, []).append(s.text)
    rows = []
    for i, prompt in enumerate(train):
        ranked = sorted({a for a in by_prompt[i] if a}, key=score)
        if len(ranked) >= 2 and score(ranked[-1]) - score(ranked[0]) >= 0.05:
            rows.append({"prompt": prompt, "chosen": ranked[-1], "rejected": ranked[0],
                         "chosen_vader": score(ranked[-1]), "rejected_vader": score(ranked[0])})
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(path)
    print(f"[sentiment] {len(rows)} pairs from {len(train)} prompts ({len(train) - len(rows)} without a clear winner)")
    return path


def train_methods(args, out: Path, pairs_path: Path) -> dict:
    from tokensift.config import build
    from tokensift.sepo.config import OracleConfig, ScoreConfig
    from tokensift.sepo.oracle import train_oracle
    from tokensift.sepo.pipeline import training_done
    from tokensift.sepo.score import score_tokens, scores_complete
    from tokensift.train.config import TrainConfig
    from tokensift.api import train_model as train

    common = dict(data=str(pairs_path), model=args.model, learning_rate=args.lr, batch_size=8, epochs=1.0,
                  warmup_ratio=0.0, max_length=160, max_prompt_length=96, save_every=args.eval_every,
                  keep_checkpoints=100, seed=0, resume=True, progress=False)
    seconds = {}
    oracle = build(OracleConfig, {**common, "output_dir": str(out / "oracle"), "fraction": 0.3, "epochs": 2.0,
                                  "beta": 0.1, "save_every": 0})
    t0 = time.perf_counter()
    if not training_done(oracle):
        train_oracle(oracle)
    score = build(ScoreConfig, {"data": str(pairs_path), "oracle": str(out / "oracle" / "final"),
                                "reference": args.model, "output_dir": str(out / "scores"), "max_length": 160,
                                "max_prompt_length": 96, "progress": False})
    from tokensift.models import load_tokenizer

    if not scores_complete(score.output_dir, score, load_tokenizer(score.oracle)):
        score_tokens(score)
    seconds["sepo_oracle_and_scoring"] = time.perf_counter() - t0
    methods = {
        "dpo": {"loss": "dpo", "beta": 0.1},
        "simpo": {"loss": "simpo", "beta": 2.0, "simpo_gamma": 0.5},
        "sepo": {"loss": "sepo", "scores": str(out / "scores"), "k_chosen": 0.3, "k_rejected": 0.3,
                 "sepo_gamma": args.sepo_gamma},
    }
    # SePO has no reference to hold it back: the same run at a smaller learning rate traces its frontier at
    # the KL the baselines reach.
    methods["sepo-slow"] = {**methods["sepo"], "learning_rate": args.sepo_slow_lr}
    for name, extra in methods.items():
        config = build(TrainConfig, {**common, **extra, "output_dir": str(out / name)})
        t0 = time.perf_counter()
        if not training_done(config):
            print(f"[sentiment] training {name}")
            train(config)
        seconds[name] = time.perf_counter() - t0
    return seconds


def checkpoints(out: Path, name: str) -> list[tuple[int, Path | None]]:
    folder = out / name
    points = [(0, None)]
    for ckpt in sorted(folder.glob("checkpoint-*")):
        points.append((int(ckpt.name.split("-")[1]), ckpt))
    card = json.loads((folder / "final" / "run_card.json").read_text())
    points.append((card["steps"], folder / "final"))
    return points


def load_point(args, path: Path | None):
    from safetensors.torch import load_file

    from tokensift.models import load_model

    if path is None or path.name == "final":
        return load_model(args.model if path is None else str(path)).eval()
    model = load_model(args.model).eval()
    weights = {k.removeprefix("model."): v for k, v in load_file(str(path / "model.safetensors")).items()}
    model.load_state_dict(weights, strict=False)
    return model


def evaluate(args, out: Path, tokenizer, base) -> dict:
    from tokensift.eval.sampling import answer_logp_sums, kl_estimate
    from tokensift.generate import SamplingSettings, sample_answers

    path = out / "frontier.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    _, test = prompts_split()
    messages = [[{"role": "user", "content": p}] for p in test]
    _, score = vader_scorer()
    settings = SamplingSettings(max_new_tokens=args.max_new_tokens, temperature=1.0, top_p=1.0, batch_size=80, seed=7)
    for name in METHODS:
        for step, ckpt in checkpoints(out, name):
            key = f"{name}@{step}"
            if key in results or (step == 0 and "start@0" in results):
                continue
            model = load_point(args, ckpt)
            samples, _ = sample_answers(model, tokenizer, messages, args.eval_samples, settings, desc=key)
            policy = answer_logp_sums(model, samples, 32, tokenizer.pad_token_id)
            reference = answer_logp_sums(base, samples, 32, tokenizer.pad_token_id)
            rewards = np.array([score(s.text) for s in samples])
            record = {"method": name if step else "start", "step": step, "reward": float(rewards.mean()),
                      "reward_stderr": float(rewards.std(ddof=1) / np.sqrt(len(rewards))),
                      **{f"kl_{k}": v for k, v in kl_estimate(policy, reference).items()},
                      "mean_answer_tokens": float(np.mean([len(s.answer_ids) for s in samples]))}
            results["start@0" if step == 0 else key] = record
            path.write_text(json.dumps(results, indent=2))
            print(f"[sentiment] {key}: reward {record['reward']:+.3f}, KL {record['kl_kl']:.2f}")
    return results


def key_token_precision(args, out: Path, tokenizer) -> dict:
    """Share of selected chosen tokens on VADER-positive words vs random selection of as many tokens."""
    from tokensift.data.load import load_preferences
    from tokensift.sepo.project import response_spans
    from tokensift.sepo.score import load_scores
    from tokensift.selection import Selection

    analyzer, _ = vader_scorer()
    positive = {w for w, v in analyzer.lexicon.items() if v > 0}
    _, records = load_scores(out / "scores")
    examples = {ex.row: ex for ex in load_preferences(str(out / "pairs.jsonl")).examples}
    selection = Selection("per_response", 0.3, 0.3)
    rng = np.random.RandomState(0)
    hit = picked = random_hit = expected = 0.0
    for row, rec in records.items():
        ex = examples[row]
        spans_of = response_spans(tokenizer, ex.prompt, ex.chosen)
        ids, spans = spans_of.ids, spans_of.chars
        n = len(rec["chosen_ids"])
        if list(ids[:n]) != list(rec["chosen_ids"]):
            continue
        words = [(m.start(), m.end()) for m in re.finditer(r"[A-Za-z']+", ex.chosen)
                 if m.group().lower() in positive]
        on_positive = np.array([any(a < we and b > ws for ws, we in words) for a, b in spans[:n]])
        mask = selection.chosen(rec["chosen_scores"])
        hit += on_positive[mask].sum()
        picked += mask.sum()
        random_hit += on_positive[rng.permutation(n)[: mask.sum()]].sum()
        expected += on_positive.mean() * mask.sum()
    return {"selected_tokens": int(picked), "precision_sepo": hit / picked, "precision_random_draw": random_hit / picked,
            "precision_random_expected": expected / picked, "lift": (hit / picked) / (expected / picked)}


def training_compute(folder: Path) -> dict:
    """Steps, pairs, wall time and the median step time (robust to a machine pause during one step)."""
    card = json.loads((folder / "final" / "run_card.json").read_text())
    steps = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    times = [r["step_time_s"] for r in steps if "step_time_s" in r]
    return {"steps": card["steps"], "pairs": card["data"]["train_pairs"], "train_seconds": card["seconds"],
            "median_step_seconds": float(np.median(times)) if times else None}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    start = results["start@0"]
    for name, (label, colour) in METHODS.items():
        points = sorted([r for k, r in results.items() if k.startswith(name + "@")], key=lambda r: r["step"])
        if not points:
            continue
        xs = [start["kl_kl"]] + [r["kl_kl"] for r in points]
        ys = [start["reward"]] + [r["reward"] for r in points]
        ax.plot(xs, ys, marker="o", color=colour, label=label)
    ax.set_xlabel("KL(policy || start), nats per answer (Monte-Carlo)")
    ax.set_ylabel("gold reward: mean VADER compound")
    ax.set_title("Controlled sentiment: reward vs KL (80 held-out prompts)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/sentiment")
    parser.add_argument("--docs", default=str(ROOT / "docs" / "experiments" / "sentiment"))
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--sepo-gamma", type=float, default=1.0)
    parser.add_argument("--sepo-slow-lr", type=float, default=2e-6, help="learning rate of the second SePO run")
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--eval-samples", type=int, default=2)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from tokensift.models import load_model, load_tokenizer

    out, docs = Path(args.out), Path(args.docs)
    out.mkdir(parents=True, exist_ok=True)
    docs.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tokenizer = load_tokenizer(args.model)
    base = load_model(args.model).eval()
    pairs = build_pairs(args, out, tokenizer, base)
    seconds = train_methods(args, out, pairs)
    results = evaluate(args, out, tokenizer, base)
    precision = key_token_precision(args, out, tokenizer)
    plot(results, docs / "frontier.png")
    compute = {m: training_compute(out / m) for m in (*METHODS, "oracle")}
    summary = {"frontier": results, "key_token_precision": precision, "compute": compute,
               "stage_seconds": seconds, "total_minutes": (time.perf_counter() - started) / 60,
               "settings": vars(args)}
    (docs / "results.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({"key_token_precision": precision, "compute": compute}, indent=2))
    print(f"[sentiment] wrote {docs / 'results.json'} and {docs / 'frontier.png'}")


if __name__ == "__main__":
    main()
