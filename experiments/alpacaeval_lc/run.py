"""Our AlpacaEval 2 win rates beside the published leaderboard, for the 14 models of the shared model matrix.

    python experiments/alpacaeval_lc/run.py                       # the dev prompts of ../shared/data
    python experiments/alpacaeval_lc/run.py --full DIR            # also AlpacaEval's own 805-prompt annotations

The leaderboard (`alpacaeval-leaderboard.csv`) was computed by AlpacaEval on all 805 instructions with its
published instruction difficulties and gamed-baseline rows (hub files of tatsu-lab/alpaca_eval). Ours run the
same GLM through `tokensift eval winrate` on the dev prompts of `alpacaeval-model-matrix.dev.jsonl.gz` (585, about
73%) with difficulties fitted across the 14 models and no gamed rows (length_controlled_noreg), since the hub
files are not reachable offline. `--full DIR` reads AlpacaEval's public annotations of the same models (DIR holds
`<model>.json`, copies of `results/<model>/weighted_alpaca_eval_gpt4_turbo/annotations.json` from a clone of
tatsu-lab/alpaca_eval) and runs the same set-up on all 805 prompts: what is left between that column and the
leaderboard comes from the difficulties and the missing regularisation, not from the prompt sample.
Prints a Markdown table. This is the comparison from before tokensift shipped AlpacaEval's own difficulties
(eval/alpacaeval_lc.py), kept with `difficulties=fit`; experiments/alpacaeval_lc/one_model.py compares the
default (shipped) set-up one model at a time, and docs/eval.md holds its table.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

from tokensift.eval.config import WinrateConfig
from tokensift.eval.leaderboard import evaluate_winrates

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def ours(files: list[str]) -> dict[str, dict]:
    result = evaluate_winrates(WinrateConfig(files=files, difficulties="fit"))
    return {row["model"]: row for row in result["models"]}


def cell(value: float, error: float | None) -> str:
    return f"{value:.1f}" if error is None else f"{value:.1f} ± {error:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", help="folder of AlpacaEval's 805-prompt annotation files, one <model>.json each")
    args = parser.parse_args()
    board = {r["model"]: r for r in csv.DictReader(open(SHARED / "alpacaeval-leaderboard.csv", encoding="utf-8"))}
    dev = ours([str(SHARED / "alpacaeval-model-matrix.dev.jsonl.gz")])
    full = ours(sorted(str(p) for p in Path(args.full).glob("*.json"))) if args.full else {}
    header = ["model", "leaderboard LC", "ours LC (dev)", "Δ LC / SE", "leaderboard raw", "ours raw (dev)",
              "Δ raw / SE"] + (["ours LC (805)", "ours raw (805)"] if full else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    deltas = {"lc": [], "raw": []}
    for name, published in sorted(board.items(), key=lambda kv: -float(kv[1]["length_controlled_winrate"])):
        mine = dev[name]
        lc, raw = float(published["length_controlled_winrate"]), float(published["win_rate"])
        se_lc = float(published["lc_standard_error"]) if published["lc_standard_error"] else None
        d_lc = (mine["length_controlled_winrate"] - lc) / mine["lc_standard_error"]
        d_raw = (mine["win_rate"] - raw) / mine["standard_error"]
        deltas["lc"].append(d_lc)
        deltas["raw"].append(d_raw)
        row = [name, cell(lc, se_lc), cell(mine["length_controlled_winrate"], mine["lc_standard_error"]),
               f"{d_lc:+.1f}", cell(raw, float(published["standard_error"])),
               cell(mine["win_rate"], mine["standard_error"]), f"{d_raw:+.1f}"]
        if full:
            row += [cell(full[name]["length_controlled_winrate"], full[name]["lc_standard_error"]),
                    cell(full[name]["win_rate"], full[name]["standard_error"])]
        lines.append("| " + " | ".join(row) + " |")
    print("\n".join(lines))
    for key in ("lc", "raw"):
        values = deltas[key]
        print(f"\n{key}: mean |Δ| / SE = {sum(map(abs, values)) / len(values):.2f}, "
              f"root mean square {math.sqrt(sum(v * v for v in values) / len(values)):.2f}, "
              f"largest {max(values, key=abs):+.1f}")


if __name__ == "__main__":
    main()
