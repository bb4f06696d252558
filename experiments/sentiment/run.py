"""Controlled sentiment (in the style of the DPO paper): does choosing tokens matter? One command, resumable.

    python experiments/sentiment/run.py --out runs/sentiment          # then see docs/experiments/sentiment/

1. 400 prompts written here (10 templates x 40 topics), split 320 train / 80 test (never used in training).
2. The default model samples 4 answers per train prompt; the gold reward is VADER sentiment (PyPI
   vaderSentiment, a real external scorer); the most and least positive answers form each pair.
3. Oracles (DPO from the start model, beta 0.1) on 10%, 30% and 100% of the pairs, 2 epochs each; every one, after
   its first and its second epoch, scores all the pairs: how the oracle's key-token precision grows with data and
   training. The 100%, 2-epoch oracle (the paper's recipe: all the target data) supplies the frontier's scores.
4. Six methods from the same start, same pairs, batch and steps, each at three or more learning rates (a frontier
   is a curve, and reference-free methods drift further per step; selected-token DPO has five, because its first
   three went to KL 40 and beyond): DPO, SimPO, SePO (oracle key tokens, k = 0.3),
   random-k (SePO's loss on as many random tokens: the control), ConfPO-style (SimPO on the tokens below the
   policy's mean probability) and selected-token DPO (DPO summed over the oracle's key tokens, policy and
   reference alike). Then ORPO and KTO (KTO on the same pairs split into unpaired rows, 16 rows a step).
5. Every 20 steps each run is evaluated on fresh samples for the 80 test prompts: gold reward (mean VADER) and
   KL(policy || start) (Monte-Carlo on the same samples). Each method's reward at KL = 0.1, 1, 2 and 4 nats is read off
   its runs by interpolation (tokensift.eval.frontier), with standard errors; SePO against random-k and DPO.
6. Key-token precision of every selector: the share of the selected chosen tokens that lie on VADER-positive words,
   over what random tokens in the same numbers would give.
Every stage is resumable: rerunning skips what is done. About 2.5 hours on 2 CPU cores shared with another job.

    python experiments/sentiment/run.py --out runs/sentiment --methods orpo kto --reuse
    python experiments/sentiment/run.py --out runs/sentiment --report-only --reuse

--reuse reads the previous run's results.json (in --docs): its evaluations and the figures of methods whose run
folders are not in --out, so that methods added later are trained and evaluated alone (the pairs are sampled again
with the same seed, and their count is checked against the previous run's) and reported beside the others. The
oracles are trained only when a method reads their scores (or for the precision table, when it is not reused).
Longer than our ~400-line aim: one experiment's stages and its report read best in one file.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from precision import key_token_precision, oracle_precision, vader_scorer  # noqa: E402

K = {"k_chosen": 0.3, "k_rejected": 0.3}
REF_LRS, SEL_LRS, FREE_LRS = (1e-5, 2.5e-5, 5e-5), (2e-6, 5e-6, 2.5e-5, 5e-5, 1e-4), (1e-6, 2e-6, 4e-6)
NEW_LRS = (2e-6, 5e-6, 1e-5)  # below DPO's: DPO at 1e-5 was at KL 1.3 by step 20, past the table's first columns
# name: (label, colour, settings, learning rates). Reference-free runs (SePO, random-k) move further per step, and
# selected-token DPO's sums cover a third of the tokens (smaller rewards, smaller steps): each method's three
# rates are chosen so that its runs span KL 0-4 in 40 steps. "scores" is the frontier oracle's (run.py fills it in).
METHODS = {  # in the order they train: the comparison the experiment is for (SePO, its control, DPO) first
    "sepo": ("SePO (oracle, k=0.3)", "tab:red", {"loss": "sepo", "selector": "oracle", **K}, FREE_LRS),
    "random": ("random-k (k=0.3)", "tab:gray", {"loss": "sepo", "selector": "random", **K}, FREE_LRS),
    "dpo": ("DPO", "tab:blue", {"loss": "dpo", "beta": 0.1}, REF_LRS),
    "confpo": ("ConfPO-style", "tab:green",
               {"loss": "simpo", "beta": 2.0, "simpo_gamma": 0.5, "selector": "confidence"}, REF_LRS),
    "simpo": ("SimPO", "tab:orange", {"loss": "simpo", "beta": 2.0, "simpo_gamma": 0.5}, REF_LRS),
    "seldpo": ("selected-token DPO", "tab:purple", {"loss": "dpo", "beta": 0.1, "selector": "oracle", **K},
               SEL_LRS),
    # the losses TRL users bring (issue 25): ORPO (reference-free, with an NLL term) and KTO on the same pairs split
    # into unpaired rows (each pair a desirable and an undesirable row: batches of 16 rows keep 40 steps per epoch)
    "orpo": ("ORPO", "tab:brown", {"loss": "orpo", "beta": 0.1}, NEW_LRS),
    "kto": ("KTO (pairs split)", "tab:olive", {"loss": "kto", "beta": 0.1, "split_pairs": True, "batch_size": 16},
            NEW_LRS),
}
COMPARISONS = (("sepo", "random"), ("sepo", "dpo"), ("seldpo", "dpo"), ("confpo", "simpo"), ("orpo", "dpo"),
               ("kto", "dpo"))
ORACLE_FRACTIONS = (0.1, 0.3, 1.0)
TARGET_KLS = (0.1, 1.0, 2.0, 4.0)  # 0.1: where the random-k control reaches
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


def common(args, pairs: Path) -> dict:
    return dict(data=str(pairs), model=args.model, batch_size=8, epochs=1.0, warmup_ratio=0.0, max_length=160,
                max_prompt_length=96, save_every=args.eval_every, keep_checkpoints=100, seed=0, resume=True,
                progress=False)


def export_checkpoint(args, ckpt: Path, folder: Path) -> Path:
    """A training checkpoint as a loadable model folder (the oracle after its first epoch)."""
    from tokensift.models import load_tokenizer

    if not (folder / "config.json").exists():
        load_point(args, ckpt).save_pretrained(folder, safe_serialization=True)
        load_tokenizer(args.model).save_pretrained(folder)
    return folder


def oracles_and_scores(args, out: Path, pairs: Path) -> dict[str, Path]:
    """Oracles on each data fraction, scored after each epoch: {"f0.3-e1": scores folder, ...}."""
    from tokensift.config import build
    from tokensift.models import load_tokenizer
    from tokensift.sepo.config import OracleConfig, ScoreConfig
    from tokensift.sepo.oracle import train_oracle
    from tokensift.sepo.score import score_tokens, scores_complete
    from tokensift.train.run_folder import training_done

    n_pairs = len(pairs.read_text().splitlines())
    found = {}
    for fraction in ORACLE_FRACTIONS:
        name = f"oracle-f{fraction:g}"
        per_epoch = -(-round(n_pairs * fraction) // 8)
        config = build(OracleConfig, {**common(args, pairs), "output_dir": str(out / name), "fraction": fraction,
                                      "epochs": 2.0, "beta": 0.1, "learning_rate": args.lr_oracle,
                                      "save_every": per_epoch})
        if not training_done(config):
            print(f"[sentiment] training {name}")
            train_oracle(config)
        for epoch, model in ((1, out / name / f"checkpoint-{per_epoch:08d}"), (2, out / name / "final")):
            if epoch == 1:
                model = export_checkpoint(args, model, out / name / "epoch-1")
            folder = out / f"scores-f{fraction:g}-e{epoch}"
            score = build(ScoreConfig, {"data": str(pairs), "oracle": str(model), "reference": args.model,
                                        "output_dir": str(folder), "max_length": 160, "max_prompt_length": 96,
                                        "progress": False})
            if not scores_complete(score.output_dir, score, load_tokenizer(score.oracle)):
                score_tokens(score)
            found[f"f{fraction:g}-e{epoch}"] = folder
    return found


def run_name(method: str, lr: float) -> str:
    return f"{method}-lr{lr:g}"


def train_method(args, out: Path, pairs: Path, scores: Path, method: str) -> list[str]:
    """The method's runs, one per learning rate: their names."""
    from tokensift.api import train_model
    from tokensift.config import build
    from tokensift.train.run_folder import training_done
    from tokensift.train.config import TrainConfig

    names = []
    _, _, settings, lrs = METHODS[method]
    for lr in lrs:
        name = run_name(method, lr)
        values = {**common(args, pairs), **settings, "learning_rate": lr, "output_dir": str(out / name)}
        if settings.get("selector") == "oracle":
            values["scores"] = str(scores)
        if settings["loss"] == "sepo":
            values["sepo_gamma"] = args.sepo_gamma
        config = build(TrainConfig, values)
        if not training_done(config):
            print(f"[sentiment] training {name}")
            train_model(config)
        names.append(name)
    return names


def checkpoints(out: Path, name: str) -> list[tuple[int, Path | None]]:
    folder = out / name
    points = [(0, None)]
    card = json.loads((folder / "final" / "run_card.json").read_text())
    for ckpt in sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])):
        if int(ckpt.name.split("-")[1]) < card["steps"]:
            points.append((int(ckpt.name.split("-")[1]), ckpt))
    points.append((card["steps"], folder / "final"))
    return points


def load_point(args, path: Path | None):
    from safetensors.torch import load_file

    from tokensift.models import load_model

    if path is None or (path / "config.json").exists():
        return load_model(args.model if path is None else str(path)).eval()
    model = load_model(args.model).eval()
    weights = {k.removeprefix("model."): v for k, v in load_file(str(path / "model.safetensors")).items()}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if unexpected or [m for m in missing if "lm_head" not in m]:
        raise RuntimeError(f"{path}: checkpoint does not match the model ({unexpected[:3]} {missing[:3]})")
    return model


def evaluate(args, out: Path, runs: dict, tokenizer, base) -> dict:
    """Reward and KL of every checkpoint of every run on fresh samples for the held-out prompts."""
    from tokensift.eval.sampling import answer_logp_sums, kl_estimate
    from tokensift.generate import SamplingSettings, sample_answers

    path = out / args.evaluations_file
    results = read_evaluations(out)
    _, test = prompts_split()
    messages = [[{"role": "user", "content": p}] for p in test]
    _, score = vader_scorer()
    settings = SamplingSettings(max_new_tokens=args.max_new_tokens, temperature=1.0, top_p=1.0, batch_size=120, seed=7)
    names = [name for method in runs.values() for name in method]
    for name in names:
        for step, ckpt in checkpoints(out, name):
            key = "start@0" if step == 0 else f"{name}@{step}"
            if key in results:
                continue
            model = load_point(args, ckpt)
            samples, _ = sample_answers(model, tokenizer, messages, args.eval_samples, settings)
            policy = answer_logp_sums(model, samples, 64, tokenizer.pad_token_id)
            reference = policy if step == 0 else answer_logp_sums(base, samples, 64, tokenizer.pad_token_id)
            rewards = np.array([score(s.text) for s in samples])
            results[key] = {"step": step, "reward": float(rewards.mean()),
                            "reward_se": float(rewards.std(ddof=1) / np.sqrt(len(rewards))),
                            **{f"kl_{k}": v for k, v in kl_estimate(policy, reference).items()},
                            "mean_answer_tokens": float(np.mean([len(s.answer_ids) for s in samples]))}
            mine = json.loads(path.read_text()) if path.exists() else {}
            path.write_text(json.dumps({**mine, key: results[key]}, indent=2))
            print(f"[sentiment] {key}: reward {results[key]['reward']:+.3f}, KL {results[key]['kl_kl']:.2f}")
    return results


def reuse_previous(args, out: Path, docs: Path) -> dict | None:
    """--reuse: the previous run's results.json (kept as results-reused.json in --out by the first --reuse), its
    evaluations copied to evaluations-reused.json (read with the others; a run's own evaluations of the same
    checkpoint take precedence: they are read after it)."""
    if not args.reuse:
        return None
    kept = out / "results-reused.json"  # the first --reuse keeps the previous results: later runs rewrite --docs
    if not kept.exists():
        path = docs / "results.json"
        if not path.exists():
            sys.exit(f"[sentiment] --reuse: no previous results at {path}")
        kept.write_text(path.read_text())
    previous = json.loads(kept.read_text())
    target = out / "evaluations-reused.json"
    if not target.exists():
        target.write_text(json.dumps(previous["evaluations"], indent=2))
    return previous


def read_evaluations(out: Path) -> dict:
    """Every evaluation so far: evaluations*.json, one file per process that evaluated (--evaluations-file)."""
    results = {}
    for path in sorted(out.glob("evaluations*.json"), key=lambda p: p.name != "evaluations-reused.json"):
        results.update(json.loads(path.read_text()))
    return results


def trajectories(runs: dict, evaluations: dict) -> dict:
    from tokensift.eval.frontier import Point

    start = evaluations["start@0"]
    out = {}
    for method, names in runs.items():
        out[method] = {}
        for name in names:
            points = [Point(0.0, start["reward"], start["reward_se"], 0)]
            points += [Point(r["kl_kl"], r["reward"], r["reward_se"], r["step"])
                       for k, r in evaluations.items() if k.rsplit("@", 1)[0] == name]
            out[method][name] = sorted(points, key=lambda p: p.step)
    return out


def frontier_table(traj: dict) -> dict:
    from tokensift.eval.frontier import difference, method_at_kl

    table = {f"kl={t:g}": {m: method_at_kl(runs, t) for m, runs in traj.items()} for t in TARGET_KLS}
    for row in table.values():
        for a, b in COMPARISONS:
            if a in row and b in row:
                row[f"{a}_minus_{b}"] = difference(row[a], row[b])
    return table


def markdown(table: dict, precision: dict, oracle_growth: dict) -> str:
    def cell(entry):
        loose = entry.get("loose") or {}
        jumps = ", ".join(f"{a:.2g}->{b:.2g}" for a, b in loose.values())
        if entry["reward"] is None:
            return f"jumped past it (KL {jumps})" if loose else "not reached"
        return f"{entry['reward']:+.3f} ± {entry['se']:.3f} ({entry['runs']})" + (f"; jumped: {jumps}" if loose else "")

    lines = ["| method | " + " | ".join(f"reward at KL {t:g}" for t in TARGET_KLS) + " |",
             "|---|" + "---|" * len(TARGET_KLS)]
    for method, (label, *_rest) in METHODS.items():
        if method in table[f"kl={TARGET_KLS[0]:g}"]:
            lines.append(f"| {label} | " + " | ".join(cell(table[f'kl={t:g}'][method]) for t in TARGET_KLS) + " |")
    for a, b in COMPARISONS:
        key, label = f"{a}_minus_{b}", f"{METHODS[a][0]} - {METHODS[b][0]}"
        if key not in table[f"kl={TARGET_KLS[0]:g}"]:
            continue
        cells = []
        for t in TARGET_KLS:
            d = table[f"kl={t:g}"][key]
            cells.append("-" if d is None else f"{d['difference']:+.3f} ± {d['se']:.3f} (z = {d['z']:+.1f})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "| selector | selected chosen tokens | on positive words | random, same counts | lift |",
              "|---|---|---|---|---|"]
    for name, p in precision.items():
        lines.append(f"| {name} | {p['selected']:.0f} | {p['precision']:.3f} | {p['expected']:.3f} | {p['lift']:.2f}x |")
    lines += ["", "| oracle data | epochs | lift at k=0.1 | lift at k=0.3 | ceiling at k=0.3 |", "|---|---|---|---|---|"]
    for name, p in oracle_growth.items():
        fraction, epoch = name.split("-")
        lines.append(f"| {fraction[1:]} | {epoch[1:]} | {p['k=0.1']['lift']:.2f}x | {p['k=0.3']['lift']:.2f}x | "
                     f"{p['k=0.3']['ceiling_lift']:.2f}x |")
    return "\n".join(lines) + "\n"


def plot(traj: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.8))
    for method, (label, colour, *_rest) in METHODS.items():
        first = True
        for points in traj.get(method, {}).values():
            ax.plot([p.kl for p in points], [p.reward for p in points], marker="o", ms=3, color=colour, alpha=0.8,
                    label=label if first else None)
            first = False
    for t in TARGET_KLS:
        ax.axvline(t, color="k", lw=0.5, ls=":")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(left=0.0)
    ax.set_xlabel("KL(policy || start), nats per answer (Monte-Carlo)")
    ax.set_ylabel("gold reward: mean VADER compound")
    ax.set_title("Reward vs KL on 80 held-out prompts (3-5 learning rates per method)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def training_compute(folder: Path) -> dict:
    card = json.loads((folder / "final" / "run_card.json").read_text())
    steps = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    times = [r["step_time_s"] for r in steps if "step_time_s" in r]
    return {"steps": card["steps"], "pairs": card["data"]["train_pairs"], "train_seconds": card["seconds"],
            "median_step_seconds": float(np.median(times)) if times else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/sentiment")
    parser.add_argument("--docs", default=str(ROOT / "docs" / "experiments" / "sentiment"))
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--lr-oracle", type=float, default=1e-5)
    parser.add_argument("--sepo-gamma", type=float, default=2.3, help="SePO's scale (the paper's 2.1-2.5 range).")
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--eval-samples", type=int, default=3, help="Samples per held-out prompt per checkpoint.")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS),
                        help="Methods to train, evaluate and report, in this order (default: all).")
    parser.add_argument("--evaluations-file", default="evaluations.json",
                        help="Where this process writes its evaluations (all evaluations*.json files are read), so "
                             "that two processes can evaluate different methods at once.")
    parser.add_argument("--report-only", action="store_true",
                        help="Train and evaluate nothing: write the tables, plot and results from the finished runs "
                             "and the evaluations so far.")
    parser.add_argument("--train-only", nargs="+", choices=list(METHODS), default=None,
                        help="Only train these methods' runs (after the pairs and oracles exist) and exit: a second "
                             "process can train the last methods while the main run evaluates the first ones.")
    parser.add_argument("--reuse", action="store_true",
                        help="Reuse the previous run's results.json (in --docs): its evaluations, and the figures of "
                             "methods whose run folders are not in --out (see the docstring).")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from tokensift.models import load_model, load_tokenizer

    out, docs = Path(args.out), Path(args.docs)
    out.mkdir(parents=True, exist_ok=True)
    docs.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tokenizer = load_tokenizer(args.model)
    base = load_model(args.model).eval()
    previous = reuse_previous(args, out, docs)
    pairs = build_pairs(args, out, tokenizer, base)
    if previous:
        count = len(pairs.read_text().splitlines())
        before = {c["pairs"] for c in previous["compute"].values()}
        if before and before != {count}:
            sys.exit(f"[sentiment] {count} pairs sampled now, {sorted(before)} in the reused run: not the same pairs")
    reading = [m for m in (args.train_only or args.methods) if METHODS[m][2].get("selector") == "oracle"]
    # reusing a previous run, the oracles are trained only for a method that trains here on their scores
    scores = oracles_and_scores(args, out, pairs) if not previous or (reading and not args.report_only) else {}
    if args.train_only:
        for method in args.train_only:
            train_method(args, out, pairs, scores.get("f1-e2"), method)
        return
    growth = ({name: oracle_precision(pairs, folder, tokenizer) for name, folder in scores.items()}
              if scores else previous["oracle_precision_growth"])
    runs, precision = {}, (previous or {}).get("key_token_precision", {})
    for method in args.methods:  # each method trained, then evaluated; the outputs are rewritten after each
        if args.report_only:
            evaluations = read_evaluations(out)
            runs[method] = [run_name(method, lr) for lr in METHODS[method][3]
                            if (out / run_name(method, lr) / "final" / "run_card.json").exists()
                            or any(key.startswith(run_name(method, lr) + "@") for key in evaluations)]
        else:
            runs[method] = train_method(args, out, pairs, scores.get("f1-e2"), method)
            evaluations = evaluate(args, out, {method: runs[method]}, tokenizer, base)
        if method == "dpo" and scores and (out / run_name("dpo", REF_LRS[1]) / "final").exists():
            precision = key_token_precision(args, out, pairs, scores["f1-e2"], tokenizer, base,
                                            trained=out / run_name("dpo", REF_LRS[1]) / "final")
        traj = trajectories(runs, evaluations)
        table = frontier_table(traj)
        plot(traj, docs / "frontier.png")
        compute = {name: training_compute(out / name) if (out / name / "final").exists()
                   else (previous or {}).get("compute", {}).get(name) for names in runs.values() for name in names}
        summary = {"frontier": table, "key_token_precision": precision, "oracle_precision_growth": growth,
                   "evaluations": evaluations, "compute": compute, "methods_done": list(runs),
                   "total_minutes": (time.perf_counter() - started) / 60, "settings": vars(args)}
        (docs / "results.json").write_text(json.dumps(summary, indent=2))
        (docs / "tables.md").write_text(markdown(table, precision, growth))
        print(markdown(table, precision, growth))
        print(f"[sentiment] {method} done; wrote {docs / 'results.json'}, {docs / 'tables.md'} and "
              f"{docs / 'frontier.png'}")

if __name__ == "__main__":
    main()
