"""How concentrated is the oracle's reward? The reward-mass curve of scored pairs.

For a pair, every token contributes to the chosen-minus-rejected reward gap: a chosen token with +s_c, a
rejected token with -s_r. For pairs the oracle ranks correctly (gap > 0) we sort the contributions from
largest to smallest and ask what share of the pair's tokens is needed to carry `target` (80%) of the gap.
The SePO paper reports that 35-40% of tokens carry 80% of the gap, which motivates training on ~30%.

Signed contributions can overshoot: when some tokens pull against the label, the largest positive ones pass
80% of the (net) gap early, and the curve rises above 100% before falling back. So we also report the
absolute-mass share: the share of tokens, largest |contribution| first, that carries 80% of the pair's total
|contribution|. It is bounded by 100% and does not depend on the net gap being large.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tokensift.fsutil import write_json_atomic
from tokensift.shards import ShardStore

GRID = np.linspace(0, 1, 21)


def pair_mass_curve(chosen_scores: np.ndarray, rejected_scores: np.ndarray):
    """(share of tokens needed for 80% of the gap, curve of gap share vs token share on GRID), or None."""
    contributions = np.concatenate([np.asarray(chosen_scores, np.float64), -np.asarray(rejected_scores, np.float64)])
    gap = contributions.sum()
    if len(contributions) == 0 or gap <= 0:
        return None
    ordered = np.sort(contributions)[::-1]
    cumulative = np.concatenate([[0.0], np.cumsum(ordered)]) / gap
    shares = np.arange(len(ordered) + 1) / len(ordered)
    curve = np.interp(GRID, shares, cumulative)
    return share_needed(cumulative, 0.8), curve


def share_needed(cumulative: np.ndarray, target: float) -> float:
    """Share of tokens needed before `cumulative` (fractions, starting at 0, one entry per token added) reaches
    `target`; all of them when it never does."""
    tokens = len(cumulative) - 1
    hits = cumulative >= target
    return int(np.argmax(hits)) / tokens if hits.any() else 1.0


def absolute_mass_share(chosen_scores: np.ndarray, rejected_scores: np.ndarray, target: float = 0.8) -> float | None:
    """Share of a pair's tokens, largest |contribution| first, carrying `target` of its total |contribution|."""
    magnitudes = np.abs(np.concatenate([np.asarray(chosen_scores, np.float64), np.asarray(rejected_scores, np.float64)]))
    total = magnitudes.sum()
    if len(magnitudes) == 0 or total <= 0:
        return None
    return share_needed(np.concatenate([[0.0], np.cumsum(np.sort(magnitudes)[::-1])]) / total, target)


def mass_summary(scores_dir: str | Path, target: float = 0.8) -> dict:
    """Stream the shards of a scoring run and summarise its reward-mass curve."""
    needed, absolute, curves, skipped = [], [], [], 0
    for batch in ShardStore(scores_dir).iter_batches(columns=["chosen_scores", "rejected_scores"]):
        chosen, rejected = batch.column(0).to_pylist(), batch.column(1).to_pylist()
        for c, r in zip(chosen, rejected):
            result = pair_mass_curve(np.asarray(c), np.asarray(r))
            if result is None:
                skipped += 1
                continue
            needed.append(result[0])
            curves.append(result[1])
            absolute.append(absolute_mass_share(np.asarray(c), np.asarray(r), target))
    if not needed:
        return {"pairs": 0, "pairs_oracle_disagrees": skipped}
    return {
        "pairs": len(needed),
        "pairs_oracle_disagrees": skipped,
        "token_share_for_80pct_gap": quartiles(needed),
        "token_share_for_80pct_abs_mass": quartiles(absolute),
        "curve": {"token_share": GRID.tolist(), "gap_share_mean": np.mean(curves, axis=0).tolist(),
                  "gap_share_median": np.median(curves, axis=0).tolist()},
    }


def quartiles(values) -> dict:
    values = np.asarray(values, np.float64)
    return {"median": float(np.median(values)), "mean": float(values.mean()),
            "p25": float(np.percentile(values, 25)), "p75": float(np.percentile(values, 75))}


def describe(summary: dict) -> str:
    if not summary.get("pairs"):
        return f"no pair with a positive reward gap ({summary.get('pairs_oracle_disagrees', 0)} where the oracle disagrees)"
    share = summary["token_share_for_80pct_gap"]
    text = (
        f"{share['median']:.1%} of a pair's tokens carry 80% of its reward gap (median over {summary['pairs']} pairs "
        f"the oracle ranks correctly; IQR {share['p25']:.1%}-{share['p75']:.1%}); the oracle disagrees with the "
        f"label on {summary['pairs_oracle_disagrees']} pairs"
    )
    absolute = summary.get("token_share_for_80pct_abs_mass")
    if absolute:
        text += f"; {absolute['median']:.1%} of the tokens carry 80% of the absolute reward mass"
    return text


def save_summary(summary: dict, folder: str | Path, title: str = "reward mass") -> list[Path]:
    """Write mass.json and, when matplotlib is installed, mass.png."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "mass.json"]
    write_json_atomic(written[0], summary)  # a kill never leaves half a summary under its name
    if not summary.get("pairs"):
        return written
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return written
    fig, ax = plt.subplots(figsize=(5, 4))
    curve = summary["curve"]
    x = np.asarray(curve["token_share"]) * 100
    ax.plot(x, np.asarray(curve.get("gap_share_median", curve["gap_share_mean"])) * 100, marker="o", ms=3,
            label="median over pairs")
    ax.axhline(80, color="grey", lw=0.8, ls="--")
    median = summary["token_share_for_80pct_gap"]["median"] * 100
    ax.axvline(median, color="tab:red", lw=0.8, ls="--", label=f"median {median:.0f}% of tokens for 80% of the gap")
    if "token_share_for_80pct_abs_mass" in summary:
        absolute = summary["token_share_for_80pct_abs_mass"]["median"] * 100
        ax.axvline(absolute, color="tab:green", lw=0.8, ls=":",
                   label=f"median {absolute:.0f}% for 80% of |reward| mass")
    ax.set_xlabel("share of tokens, largest contributions first (%)")
    ax.set_ylabel("share of the reward gap (%)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right")
    fig.tight_layout()
    tmp = folder / f".tmp-mass-{os.getpid()}.png"
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, folder / "mass.png")
    written.append(folder / "mass.png")
    return written
