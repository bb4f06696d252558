"""Rebuild AlpacaEval 2's length-controlled (LC) inputs from its public repository, for `tokensift eval winrate`.

    python tools/alpacaeval_lc_inputs.py PATH/TO/alpaca_eval                 # a clone of tatsu-lab/alpaca_eval
    python tools/alpacaeval_lc_inputs.py PATH/TO/alpaca_eval --check-only    # compare, write nothing

AlpacaEval's LC GLM (weighted_alpaca_eval_gpt4_turbo judge, baseline gpt4_1106_preview) needs two inputs it
downloads from the hub at run time (`df_gamed.csv`): a difficulty per instruction and the judged answers of the
baseline prompted to be verbose and concise (the "gamed" rows). Both are rebuilt here from what the repository
holds:

- Difficulties. `src/alpaca_eval/metrics/weights/weighted_alpaca_eval_gpt4_turbo/length_controlled_v1/
  baseline_gpt4_1106_preview.csv` holds every leaderboard model's fitted weights (w_len, w_diff, w_model), fitted
  with the published difficulties. With them fixed, logit P(model m beats the baseline on instruction i) =
  w_len_m tanh(std_delta_len_mi) + w_model_m + w_diff_m d_i leaves one unknown per instruction, fitted over every
  model whose annotations (`results/<model>/weighted_alpaca_eval_gpt4_turbo/annotations.json`) the clone holds
  (eval/difficulty.py: difficulties_given_weights), under an empirical-Bayes normal prior, with two soft
  constraints: every leaderboard model's LC is the mean over instructions of sigmoid(w_diff d_i + w_model), and
  every model's published weights are the optimum of its own GLM (the loss gradient there is about 0).
- Gamed rows. From `results/gpt4_1106_preview_{verbose,concise}/weighted_alpaca_eval_gpt4_turbo/annotations.json`
  when the clone has them (the judge's preferences). A shallow or size-capped copy may lack them (each is over
  4 MiB); then the preference of each gamed answer is the GLM's expectation under that gamed generator's own
  published weights, from its answer's length (`model_outputs.json`) and the rebuilt difficulty. The provenance
  header says which.

Check printed at the end: each published model's LC predicted from its published weights and the rebuilt
difficulties (the mean over instructions of sigmoid(w_diff d_i + w_model), which is how AlpacaEval computes the
LC once the weights are fitted) against the leaderboard's LC.

Writes `src/tokensift/eval/alpacaeval/lc_inputs.csv.gz` (805 rows in AlpacaEval's order) with `#` provenance
lines (repository, commit, licence, method); eval/alpacaeval.py reads it.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tokensift.eval.annotations import read_judged  # noqa: E402
from tokensift.eval.difficulty import difficulties_given_weights, lc_averages  # noqa: E402
from tokensift.eval.winrate import sigmoid, standardised_length_difference  # noqa: E402

BASELINE = "gpt4_1106_preview"
ANNOTATOR = "weighted_alpaca_eval_gpt4_turbo"
WEIGHTS = f"src/alpaca_eval/metrics/weights/{ANNOTATOR}/length_controlled_v1/baseline_{BASELINE}.csv"
LEADERBOARD = f"src/alpaca_eval/leaderboards/data_AlpacaEval_2/{ANNOTATOR}_leaderboard.csv"
GAMED = (f"{BASELINE}_verbose", f"{BASELINE}_concise")
AVERAGE_PRECISION = 1e6  # a published LC (fraction) known to about 0.001
OUTLIER = 3.0
STATIONARITY_PRECISION = 10.0  # a model's loss gradient at its published weights: 0 up to about 0.3 (the L1 term)
OUTPUT = ROOT / "src" / "tokensift" / "eval" / "alpacaeval" / "lc_inputs.csv.gz"
COLUMNS = ["index", "instruction", "instruction_difficulty", "difficulty_se", "n_models", "baseline_length"]
for _g in ("verbose", "concise"):
    COLUMNS += [f"{_g}_length", f"{_g}_preference"]


def read_weights(clone: Path) -> dict[str, tuple[float, float, float]]:
    """model -> (w_len, w_diff, w_model), AlpacaEval's published per-model GLM weights."""
    with open(clone / WEIGHTS, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    return {r[0]: (float(r[1]), float(r[2]), float(r[3])) for r in rows[1:]}


def read_leaderboard(clone: Path) -> dict[str, dict]:
    with open(clone / LEADERBOARD, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    header = ["model"] + rows[0][1:]
    return {r[0]: dict(zip(header, r)) for r in rows[1:]}


def instructions(clone: Path) -> tuple[list[str], np.ndarray]:
    """AlpacaEval's 805 instructions in order and the baseline's answer lengths (characters)."""
    rows = json.loads((clone / "results" / BASELINE / "model_outputs.json").read_text(encoding="utf-8"))
    return [r["instruction"] for r in rows], np.array([len(r["output"]) for r in rows], dtype=np.float64)


def annotation_files(clone: Path) -> dict[str, Path]:
    """Model name -> its annotations file, for every model whose file the clone holds (non-empty)."""
    found = {}
    for path in sorted((clone / "results").glob(f"*/{ANNOTATOR}/annotations.json")):
        if path.stat().st_size > 0:
            found[path.parts[-3]] = path
    return found


def judged_rows(files: dict[str, Path], weights: dict, order: dict[str, int], skip=()) -> dict[str, dict]:
    """Per model with weights (baseline and gamed generators excluded): instruction index, offset, slope and
    target of each judged row. Read one file at a time."""
    rows = {}
    for name, path in files.items():
        if name in skip or name == BASELINE or name in GAMED or name not in weights:
            continue
        judged = [j for j in read_judged([str(path)], skip_missing=True)[0] if j.baseline == BASELINE]
        if len(judged) != 1 or judged[0].model != name:
            continue  # a file of several models or another baseline: not the layout AlpacaEval's results use
        j = judged[0]
        w_len, w_diff, w_model = weights[name]
        std = standardised_length_difference(j.model_length, j.baseline_length)
        known = np.array([p in order for p in j.prompts])
        if std is None or w_diff == 0 or not known.all():
            continue
        rows[name] = {"instruction": np.array([order[p] for p in j.prompts]), "tanh": np.tanh(std),
                      "weights": np.array(weights[name]), "offset": w_len * np.tanh(std) + w_model,
                      "slope": np.full(len(j), w_diff),
                      "target": np.asarray(j.preference, dtype=np.float64)}
    return rows


def published_averages(weights: dict, board: dict[str, dict], leave_out=()) -> tuple[list[str], tuple]:
    """Models with published weights and a leaderboard LC: (names, (w_diff, w_model, LC as a fraction))."""
    names = [m for m in weights if m in board and m != BASELINE and m not in leave_out
             and board[m].get("length_controlled_winrate")]
    return names, (np.array([weights[m][1] for m in names]), np.array([weights[m][2] for m in names]),
                   np.array([float(board[m]["length_controlled_winrate"]) / 100 for m in names]))


class Gamed:
    """A gamed generator's answers in AlpacaEval's order: tanh of their standardised length difference, and either
    the judge's preferences (`fixed`) or, without them, the GLM's expectation under its published weights."""

    def __init__(self, name: str, length: np.ndarray, baseline_length: np.ndarray, weights: tuple,
                 fixed: np.ndarray | None):
        self.name, self.length, self.fixed = name, length, fixed
        self.tanh = np.tanh(standardised_length_difference(length, baseline_length))
        self.weights = np.array(weights)

    def preference(self, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(preferences, their derivative in d_i)."""
        if self.fixed is not None:
            return self.fixed, np.zeros_like(self.fixed)
        w_len, w_diff, w_model = self.weights
        p = sigmoid(w_len * self.tanh + w_diff * d + w_model)
        return p, w_diff * p * (1 - p)


def stationarity(rows: dict[str, dict], gamed: list[Gamed], n: int, lam: float = 0.2):
    """A constraint for difficulties_given_weights: each model's published weights minimise its own GLM's loss
    (its rows weight 1, the gamed rows lam / 2 each, AlpacaEval's length_controlled_v1), so at the true
    difficulties the loss's gradient in the three weights is about 0 (exactly -sign(w) / C under the L1 penalty,
    small beside these sums). Returns d -> (the gradients of every model [3 * models], Jacobian [.., n])."""
    models = list(rows.values())
    position = np.arange(n)

    def gradients(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        values, jacobian = [], []
        gamed_p = [g.preference(d) for g in gamed]
        for r in models:
            w_len, w_diff, w_model = r["weights"]
            parts = [(r["instruction"], r["tanh"], 1.0, r["target"], 0.0, 1.0)]
            parts += [(position, g.tanh, 0.0, p, dp, lam / len(gamed)) for g, (p, dp) in zip(gamed, gamed_p)]
            value, block = np.zeros(3), np.zeros((3, n))
            for where, tanh, own, target, d_target, weight in parts:
                q = sigmoid(w_len * tanh + w_diff * d[where] + w_model * own)
                residual, slope = weight * (q - target), weight * q * (1 - q) * w_diff
                x = (tanh, d[where], own)
                for k in range(3):
                    x_k = np.broadcast_to(x[k], q.shape)
                    value[k] += np.sum(x_k * residual)
                    # d/d d_i of x_k (q - t): x_k (q(1-q) w_diff - dt/dd_i), plus (q - t) for the d column
                    block[k] += np.bincount(where, x_k * (slope - weight * d_target), n)
                block[1] += np.bincount(where, residual, n)
            values.append(value)
            jacobian.append(block)
        return np.concatenate(values), np.concatenate(jacobian)

    return gradients


def fit(rows: dict[str, dict], n: int, averages: tuple | None, gamed: list[Gamed] | None = None,
        leave_out=()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(difficulties, their standard errors, how many models answered each instruction). First every d_i on its
    own (a weak prior), whose spread estimates the prior (empirical Bayes: the mean, and the variance less the
    mean squared standard error); then again under that prior with the published LCs as averages and, with
    `gamed`, every model's published weights as the optimum of its own GLM (stationarity)."""
    used = {name: r for name, r in rows.items() if name not in leave_out}
    stack = {k: np.concatenate([r[k] for r in used.values()]) for k in ("instruction", "offset", "slope", "target")}
    args = (stack["instruction"], stack["offset"], stack["slope"], stack["target"], n)
    first, first_se = difficulties_given_weights(*args)
    variance = max(float(first.var() - np.mean(first_se ** 2)), 0.1)
    constraints = [] if averages is None else [(lc_averages(*averages), AVERAGE_PRECISION)]
    if gamed:
        constraints.append((stationarity(used, gamed, n), STATIONARITY_PRECISION))
    d, se = difficulties_given_weights(*args, prior_mean=float(first.mean()), prior_precision=1 / variance,
                                       constraints=constraints)
    return d, se, np.bincount(stack["instruction"], minlength=n)


def disagreeing(rows: dict[str, dict], gamed: list[Gamed], averages: tuple, n: int) -> list[str]:
    """Models whose published weights disagree with the rest: at the difficulties fitted with every model, the
    difficulty component of their GLM's loss gradient is more than OUTLIER times the median model's (a few older
    leaderboard entries, w_diff about 0.45 where the others have 0.8 to 1.1, were fitted with other difficulties).
    The rebuild leaves their judged answers and their weights out (their published LC stays among the averages)."""
    d, _, _ = fit(rows, n, averages, gamed)
    gradient = np.abs(stationarity(rows, gamed, n)(d)[0].reshape(-1, 3)[:, 1])
    return [name for name, g in zip(rows, gradient) if g > OUTLIER * np.median(gradient)]


def held_out_check(rows: dict[str, dict], n: int, weights: dict, board: dict, gamed: list[Gamed]) -> np.ndarray:
    """Fit with the published LCs of every other model (by LC rank), predict the rest: the gaps in points."""
    names, (a, b, lc) = published_averages(weights, board)
    half = np.zeros(len(names), dtype=bool)
    half[np.argsort(lc)[::2]] = True
    d, _, _ = fit(rows, n, (a[half], b[half], lc[half]), gamed, leave_out=[m for m, h in zip(names, half) if not h])
    return 100 * (sigmoid(np.outer(a[~half], d) + b[~half, None]).mean(axis=1) - lc[~half])


def read_gamed(clone: Path, files: dict[str, Path], weights: dict, prompts: list[str],
               baseline_length: np.ndarray) -> tuple[list[Gamed], str]:
    """The gamed generators' answers in AlpacaEval's order (their judged preferences when the clone has their
    annotations), and a sentence saying where the preferences come from."""
    gamed, origins = [], []
    for name in GAMED:
        outputs = json.loads((clone / "results" / name / "model_outputs.json").read_text(encoding="utf-8"))
        if [o["instruction"] for o in outputs] != prompts:
            raise SystemExit(f"{name}/model_outputs.json: not AlpacaEval's 805 instructions in order")
        length = np.array([len(o["output"]) for o in outputs], dtype=np.float64)
        fixed = None
        if name in files:
            judged = [j for j in read_judged([str(files[name])])[0] if j.model == name and j.baseline == BASELINE][0]
            position = {p: k for k, p in enumerate(judged.prompts)}
            fixed = np.array([judged.preference[position[p]] for p in prompts])
            origins.append(f"{name}: the judge's preferences (annotations.json)")
        else:
            origins.append(f"{name}: GLM expectation from its published weights (annotations.json not in the clone)")
        gamed.append(Gamed(name, length, baseline_length, weights[name], fixed))
    return gamed, "; ".join(origins)


def predicted_lc(weights: dict, d: np.ndarray, board: dict[str, dict]) -> list[tuple[str, float, float]]:
    """(model, LC predicted from its published weights and d, leaderboard LC) for the models in both."""
    out = []
    for name, (_, w_diff, w_model) in weights.items():
        if name in board and board[name].get("length_controlled_winrate") and name != BASELINE:
            lc = 100 * float(sigmoid(w_diff * d + w_model).mean())
            out.append((name, lc, float(board[name]["length_controlled_winrate"])))
    return out


def commit_of(clone: Path, given: str | None) -> str:
    if given:
        return given
    try:
        return subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git clone; pass --commit)"


def write(path: Path, provenance: list[str], columns: dict[str, list]) -> None:
    text = io.StringIO()
    for line in provenance:
        text.write(f"# {line}\n")
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS)
    for k in range(len(columns["index"])):
        writer.writerow([columns[c][k] for c in COLUMNS])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile("lc_inputs.csv", "wb", fileobj=raw, mtime=0) as handle:
        handle.write(text.getvalue().encode("utf-8"))  # no time, one name: the same inputs give the same bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clone", type=Path, help="a local clone of github.com/tatsu-lab/alpaca_eval")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--commit", help="the clone's commit, when it is not a git checkout")
    parser.add_argument("--check-only", action="store_true", help="print the check, write nothing")
    args = parser.parse_args()
    clone = args.clone
    prompts, baseline_length = instructions(clone)
    order = {p: k for k, p in enumerate(prompts)}
    weights, board, files = read_weights(clone), read_leaderboard(clone), annotation_files(clone)
    rows = judged_rows(files, weights, order)
    print(f"{len(rows)} models with annotations and published weights (of {len(weights)} weighted, "
          f"{len(files)} annotation files in the clone)")
    gamed, origin = read_gamed(clone, files, weights, prompts, baseline_length)
    dropped = disagreeing(rows, gamed, published_averages(weights, board)[1], len(prompts))
    rows = {name: r for name, r in rows.items() if name not in dropped}
    print(f"left out, published weights disagree with the rest: {', '.join(dropped) or 'none'}")
    held_out = np.abs(held_out_check(rows, len(prompts), weights, board, gamed))
    print(f"held out: difficulties fitted with half the published LCs predict the other {held_out.size} models' "
          f"LC within mean {held_out.mean():.2f}, max {held_out.max():.2f} points")
    d, se, counts = fit(rows, len(prompts), published_averages(weights, board)[1], gamed)
    check = predicted_lc(weights, d, board)
    gaps = np.array([abs(mine - theirs) for _, mine, theirs in check])
    print(f"LC from published weights and these difficulties vs the leaderboard, {len(check)} models: mean |gap| "
          f"{gaps.mean():.2f}, max {gaps.max():.2f} points, {np.mean(gaps <= 1):.0%} within 1 point")
    for name, mine, theirs in sorted(check, key=lambda c: -abs(c[1] - c[2]))[:5]:
        print(f"  largest: {name}: {mine:.2f} vs {theirs:.2f}")
    print(f"difficulties: mean {d.mean():.3f}, sd {d.std():.3f}, median se {np.median(se):.3f}, "
          f"models per instruction {counts.min()}..{counts.max()}")
    if args.check_only:
        return
    licence = (clone / "LICENSE").read_text(encoding="utf-8").splitlines()[0:3]
    provenance = [
        "AlpacaEval 2 length-controlled win-rate inputs, rebuilt by tools/alpacaeval_lc_inputs.py of tokensift",
        f"source: github.com/tatsu-lab/alpaca_eval at commit {commit_of(clone, args.commit)}",
        "licence of the source: " + " ".join(s.strip() for s in licence if s.strip()) +
        " (Apache-2.0); this file is derived from its results/ annotations and published GLM weights",
        f"judge {ANNOTATOR}, baseline {BASELINE}; rows in AlpacaEval's instruction order (index)",
        f"instruction_difficulty: one-parameter logistic fit per instruction over {len(rows)} models' judged answers "
        f"(left out, weights disagreeing with the rest: {', '.join(dropped) or 'none'}) "
        "with each model's published length_controlled_v1 weights fixed; difficulty_se from the fit's curvature",
        f"and under a normal prior (empirical Bayes) with the leaderboard's LC of {len(check)} models as soft "
        "constraints (LC = mean over instructions of sigmoid(w_diff d + w_model)), and each annotated model's "
        "published weights as the optimum of its own GLM",
        f"gamed rows: {origin}",
        f"check: LC predicted from published weights vs the leaderboard: mean |gap| {gaps.mean():.2f}, max "
        f"{gaps.max():.2f} points; fitted with every other model's LC, the rest's within mean {held_out.mean():.2f}, "
        f"max {held_out.max():.2f} points",
    ]
    columns = {"index": list(range(len(prompts))), "instruction": prompts,
               "instruction_difficulty": [f"{v:.6f}" for v in d], "difficulty_se": [f"{v:.4f}" for v in se],
               "n_models": counts.tolist(), "baseline_length": baseline_length.astype(int).tolist()}
    for g, short in zip(gamed, ("verbose", "concise")):
        columns[f"{short}_length"] = g.length.astype(int).tolist()
        columns[f"{short}_preference"] = [f"{v:.6f}" for v in g.preference(d)[0]]
    write(args.output, provenance, columns)
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
