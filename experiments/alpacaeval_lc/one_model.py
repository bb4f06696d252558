"""AlpacaEval 2 LC one model at a time, as a user with one annotations file gets it, against the leaderboard.

    python experiments/alpacaeval_lc/one_model.py PATH/TO/alpaca_eval              # shipped inputs + held out
    python experiments/alpacaeval_lc/one_model.py PATH/TO/alpaca_eval --no-held-out

For every model whose `results/<model>/weighted_alpaca_eval_gpt4_turbo/annotations.json` the clone holds and
that has a leaderboard LC: `tokensift eval winrate` on that file alone (the shipped difficulties and gamed rows,
eval/alpacaeval_lc.py) beside the leaderboard's LC. "held out" rebuilds the difficulties without that model (its
annotations, its published weights and its published LC all left out, tools/alpacaeval_lc_inputs.py) and fits
its LC with them: what a model that played no part in the rebuild gets. Prints a Markdown table and a summary
(docs/eval.md holds the output).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import alpacaeval_lc_inputs as rebuild  # noqa: E402

from tokensift.eval.annotations import read_judged  # noqa: E402
from tokensift.eval.config import WinrateConfig  # noqa: E402
from tokensift.eval.leaderboard import evaluate_winrates  # noqa: E402
from tokensift.eval.winrate import Judged, gamed_rows, length_controlled  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def held_out_lc(name: str, clone: Path, context: dict) -> float:
    """The model's LC with difficulties and gamed rows rebuilt without it."""
    c = context
    averages = rebuild.published_averages(c["weights"], c["board"], leave_out=[name])[1]
    d, _, _ = rebuild.fit(c["rows"], len(c["prompts"]), averages, c["gamed"], leave_out=[name])
    difficulty = dict(zip(c["prompts"], map(float, d)))
    gamed = [Judged(g.name, rebuild.BASELINE, c["prompts"], g.preference(d)[0], g.length, c["baseline_length"])
             for g in c["gamed"]]
    judged = [j for j in read_judged([str(c["files"][name])], skip_missing=True)[0] if j.model == name][0]
    return 100 * length_controlled(judged, difficulty, gamed_rows(gamed, difficulty)[0])["win_rate"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clone", type=Path, help="a local clone of github.com/tatsu-lab/alpaca_eval")
    parser.add_argument("--no-held-out", action="store_true", help="only the shipped inputs (fast)")
    args = parser.parse_args()
    clone = args.clone
    prompts, baseline_length = rebuild.instructions(clone)
    weights, board, files = rebuild.read_weights(clone), rebuild.read_leaderboard(clone), rebuild.annotation_files(clone)
    context = {"prompts": prompts, "baseline_length": baseline_length, "weights": weights, "board": board,
               "files": files, "rows": rebuild.judged_rows(files, weights, {p: k for k, p in enumerate(prompts)}),
               "gamed": rebuild.read_gamed(clone, files, weights, prompts, baseline_length)[0]}
    dropped = rebuild.disagreeing(context["rows"], context["gamed"], rebuild.published_averages(weights, board)[1],
                                  len(prompts))
    context["rows"] = {m: r for m, r in context["rows"].items() if m not in dropped}  # as the rebuild does
    matrix = set()
    if (SHARED / "alpacaeval-leaderboard.csv").is_file():
        matrix = {line.split(",")[0] for line in (SHARED / "alpacaeval-leaderboard.csv").read_text().splitlines()[1:]}
    names = sorted((m for m in files if m in board and m != rebuild.BASELINE and m not in rebuild.GAMED
                    and board[m].get("length_controlled_winrate")),
                   key=lambda m: -float(board[m]["length_controlled_winrate"]))
    header = ["model", "in shared matrix", "leaderboard LC", "ours LC (one file)", "Δ", "ours LC (held out)", "Δ",
              "leaderboard raw", "ours raw"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    gaps, held_gaps = [], []
    for name in names:
        row = evaluate_winrates(WinrateConfig(files=[str(files[name])]))["models"][0]
        published = float(board[name]["length_controlled_winrate"])
        ours = row["length_controlled_winrate"]
        gaps.append(ours - published)
        held = "-"
        if not args.no_held_out and name in context["rows"]:
            value = held_out_lc(name, clone, context)
            held_gaps.append(value - published)
            held = f"{value:.1f} | {value - published:+.1f}"
        elif not args.no_held_out:
            held = "- | -"
        cells = [name, "yes" if name in matrix else "", f"{published:.1f}",
                 f"{ours:.1f} ± {row['lc_standard_error']:.1f}", f"{ours - published:+.1f}"]
        cells += held.split(" | ") if not args.no_held_out else ["-", "-"]
        cells += [f"{float(board[name]['win_rate']):.1f}", f"{row['win_rate']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    print("\n".join(lines))
    for label, values in (("one file (shipped inputs)", gaps), ("held out", held_gaps)):
        if values:
            a = np.abs(values)
            beyond = len([m for m in names if m not in matrix])
            print(f"{label}: {len(a)} models ({beyond} beyond the shared matrix's 14), mean |Δ| {a.mean():.2f}, "
                  f"max {a.max():.2f}, mean Δ {np.mean(values):+.2f}, within 1 point {np.mean(a <= 1):.0%}")


if __name__ == "__main__":
    main()
