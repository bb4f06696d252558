"""`tokensift eval compare`: paired differences between runs judged against the same baseline on the same
prompts, with bootstrap confidence intervals.

Why paired and by prompt: two checkpoints answer the same prompts, and most of the spread in win rates comes
from the prompts (some are hard for every model). Differences per prompt cancel that, so the interval of a
difference is much narrower than the two separate intervals suggest. Answers to one prompt (several samples,
several seeds of a run, all pooled) are not independent, so the bootstrap resamples prompts, each with all of
its rows, never single answers: one draw picks J prompts with replacement, the same draw for every run.

Per run and draw: the win rate (mean over prompts of the mean preference), the judge's mean score (scoring
judges), the mean answer length, and the LC win rate, refitted on the drawn prompts (rows weighted by how often
their prompt was drawn) at the C the full data chose and with the same instruction difficulties. Intervals are
percentiles of the draws; `p_value` is twice the smaller share of draws on either side of 0.
"""

from __future__ import annotations

import numpy as np

from tokensift.errors import UserError
from tokensift.eval.leaderboard import glm_inputs, read_glm_extras, read_models
from tokensift.eval.winrate import (MIN_PROMPTS_FOR_LC, Judged, glm_problem, prompt_means,
                                    standardised_length_difference)

METRICS = {"length_controlled_winrate": "LC win rate (%)", "win_rate": "win rate (%)", "score": "judge score",
           "avg_length": "answer length (characters)"}


def restrict(j: Judged, keep: set[str]) -> Judged:
    """Only the rows of the prompts in `keep`."""
    rows = np.array([p in keep for p in j.prompts], dtype=bool)
    return Judged(j.model, j.baseline, [p for p, k in zip(j.prompts, rows) if k], j.preference[rows],
                  j.model_length[rows], j.baseline_length[rows], None if j.score is None else j.score[rows],
                  j.sources)


class RunStatistics:
    """One run's metrics for any prompt weighting (weights[k] = how often common prompt k was drawn)."""

    def __init__(self, judged: Judged, common: list[str], inputs):
        prompts, index = judged.prompt_index()
        position = {p: k for k, p in enumerate(common)}
        self.order = np.array([position[p] for p in prompts])  # run's prompt -> common prompt
        count = len(prompts)
        self.per_prompt = {"win_rate": 100 * prompt_means(judged.preference, index, count),
                           "avg_length": prompt_means(judged.model_length, index, count)}
        if judged.score is not None:
            self.per_prompt["score"] = prompt_means(judged.score, index, count)
        self.problem, self.coef, self.C = None, None, None
        std = standardised_length_difference(judged.model_length, judged.baseline_length)
        if std is not None and count >= MIN_PROMPTS_FOR_LC and judged.model != judged.baseline:
            self.problem = glm_problem(judged, inputs.difficulty, inputs.gamed, std)
            self.coef, self.C = self.problem.fit()

    def values(self, weights: np.ndarray | None = None) -> dict[str, float]:
        w = np.ones(len(self.order)) if weights is None else weights[self.order]
        out = {name: float(np.sum(w * v) / np.sum(w)) for name, v in self.per_prompt.items()}
        if self.problem is not None:
            lc = (float(self.problem.predict(self.coef).mean()) if weights is None
                  else self.problem.resampled_lc(w, self.C, self.coef))
            out["length_controlled_winrate"] = 100 * lc
        return out


def _interval(draws: np.ndarray, confidence: float) -> list[float]:
    tail = 100 * (1 - confidence) / 2
    return [float(np.percentile(draws, tail)), float(np.percentile(draws, 100 - tail))]


def paired_bootstrap(stats: list[RunStatistics], n_prompts: int, samples: int, seed: int,
                     confidence: float) -> dict:
    """Point estimates, per-run intervals and paired differences against the first run, for every metric all
    runs have. Seeded: the same seed gives the same draws."""
    rng = np.random.default_rng(seed)
    point = [s.values() for s in stats]
    names = [m for m in METRICS if all(m in p for p in point)]
    draws = np.empty((samples, len(stats), len(names)))
    for b in range(samples):
        weights = np.bincount(rng.integers(0, n_prompts, n_prompts), minlength=n_prompts).astype(np.float64)
        for r, s in enumerate(stats):
            values = s.values(weights)
            draws[b, r] = [values[m] for m in names]
    estimates, differences = [], []
    for r in range(len(stats)):
        estimates.append({m: {"value": point[r][m], "interval": _interval(draws[:, r, k], confidence),
                         "bootstrap_stderr": float(draws[:, r, k].std(ddof=1))} for k, m in enumerate(names)})
        if r == 0:
            continue
        block = {}
        for k, m in enumerate(names):
            delta = draws[:, r, k] - draws[:, 0, k]
            share_below = float(np.mean(delta <= 0)) if np.any(delta != 0) else 0.5
            share_above = float(np.mean(delta >= 0)) if np.any(delta != 0) else 0.5
            block[m] = {"difference": point[r][m] - point[0][m], "interval": _interval(delta, confidence),
                        "bootstrap_stderr": float(delta.std(ddof=1)),
                        "p_value": min(1.0, 2 * min(share_below, share_above))}
        differences.append(block)
    return {"metrics": names, "estimates": estimates, "differences": differences}


def _select(judged: list[Judged], spec: str) -> list[Judged]:
    """The files of one run spec (`a.json,b.json` or `a.json#model`) -> one Judged per baseline."""
    wanted = spec.rsplit("#", 1)[1] if "#" in spec else None
    if wanted is not None:
        judged = [j for j in judged if j.model == wanted]
        if not judged:
            raise UserError(f"run {spec}: no model {wanted!r} in its files")
    out = {}
    for j in judged:
        if j.baseline in out:
            models = sorted({x.model for x in judged if x.baseline == j.baseline})
            raise UserError(f"run {spec}: its files hold several models against {j.baseline} ({', '.join(models)}); "
                            f"pick one with FILE#MODEL")
        out[j.baseline] = j
    return list(out.values())


def evaluate_comparison(config) -> dict:
    """The `eval compare` result for every baseline all runs share."""
    per_run = []
    for spec in config.runs:
        files = spec.rsplit("#", 1)[0] if "#" in spec else spec
        per_run.append(_select(read_models(config, [f for f in files.split(",") if f])[0], spec))
    published, gamed = read_glm_extras(config)
    baselines = set.intersection(*({j.baseline for j in run} for run in per_run))
    if not baselines:
        raise UserError("the runs share no baseline: compare runs judged against the same reference answers")
    labels = _labels(config.runs, per_run)
    blocks = []
    for baseline in sorted(baselines):
        complete = [next(j for j in run if j.baseline == baseline) for run in per_run]
        common = set.intersection(*(set(j.prompts) for j in complete))
        if not common:
            raise UserError(f"the runs share no prompt against {baseline}: compare runs on the same prompts")
        order = [p for p in dict.fromkeys(complete[0].prompts) if p in common]
        runs = [restrict(j, common) for j in complete]
        inputs = glm_inputs(runs, config, published, gamed)
        stats = [RunStatistics(j, order, inputs) for j in runs]
        block = paired_bootstrap(stats, len(order), config.bootstrap_samples, config.seed, config.confidence)
        left_out = {label: len(set(j.prompts)) - len(common) for label, j in zip(labels, complete)}
        blocks.append({"baseline": baseline, "prompts": len(order), "prompts_left_out": left_out,
                       "rows": {label: len(j) for label, j in zip(labels, runs)},
                       "difficulties": inputs.difficulties_source, "runs": labels, **block})
    return {"action": "compare", "unit": "percent (win rates); characters (length)", "runs": config.runs,
            "bootstrap_samples": config.bootstrap_samples, "confidence": config.confidence, "comparisons": blocks}


def _labels(specs: list[str], per_run: list[list[Judged]]) -> list[str]:
    """The model name of each run when the names differ, else the run spec."""
    names = [run[0].model for run in per_run]
    return names if len(set(names)) == len(names) else list(specs)


def _cell(entry: dict, key: str) -> str:
    low, high = entry["interval"]
    return f"{entry[key]:+.2f} [{low:+.2f}, {high:+.2f}]" if key == "difference" else \
        f"{entry[key]:.2f} [{low:.2f}, {high:.2f}]"


def markdown_table(result: dict) -> str:
    """One table per baseline: each metric of each run with its interval, then each run minus the first."""
    level = f"{100 * result['confidence']:g}%"
    out = []
    for block in result["comparisons"]:
        first = block["runs"][0]
        header = ["metric"] + block["runs"] + [f"{run} − {first}" for run in block["runs"][1:]]
        out += [f"against {block['baseline']}: {block['prompts']} common prompts, {level} paired bootstrap "
                f"intervals ({result['bootstrap_samples']} draws of prompts)", "",
                "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for m in block["metrics"]:
            cells = [_cell(r[m], "value") for r in block["estimates"]]
            diffs = [f"{_cell(d[m], 'difference')} (p={d[m]['p_value']:.3f})" for d in block["differences"]]
            out.append("| " + " | ".join([METRICS[m]] + cells + diffs) + " |")
        out.append("")
    return "\n".join(out).rstrip()


def plot_differences(result: dict, path: str) -> None:
    """A forest plot: each run minus the first, per metric, with its interval (one panel per metric)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks = result["comparisons"]
    metrics = sorted({m for b in blocks for m in b["metrics"]}, key=list(METRICS).index)
    rows = sum(len(b["differences"]) for b in blocks)
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), max(1.8, 0.8 + 0.45 * rows)), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        labels, values, low, high = [], [], [], []
        for b in blocks:
            for run, d in zip(b["runs"][1:], b["differences"]):
                if m in d:
                    labels.append(f"{run} − {b['runs'][0]}" + (f"\nvs {b['baseline']}" if len(blocks) > 1 else ""))
                    values.append(d[m]["difference"])
                    low.append(d[m]["difference"] - d[m]["interval"][0])
                    high.append(d[m]["interval"][1] - d[m]["difference"])
        y = np.arange(len(values))[::-1]
        ax.errorbar(values, y, xerr=[low, high], fmt="o", capsize=3)
        ax.axvline(0, color="grey", lw=0.8, ls="--")
        ax.set_yticks(y, labels if ax is axes[0][0] else [""] * len(labels))
        ax.set_title(METRICS[m], fontsize=9)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=120)
    except OSError as exc:
        raise UserError(f"cannot write the plot {path}: {exc.strerror}") from None
    finally:
        plt.close(fig)
