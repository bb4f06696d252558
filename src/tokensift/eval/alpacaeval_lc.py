"""AlpacaEval 2's length-controlled inputs shipped with the package: the 805 instruction difficulties and the
gamed baselines' rows (judge weighted_alpaca_eval_gpt4_turbo, baseline gpt4_1106_preview), which AlpacaEval itself
downloads from the hub at run time. Rebuilt from the public tatsu-lab/alpaca_eval repository (Apache-2.0) by
`tools/alpacaeval_lc_inputs.py`; the file's `#` lines say from which commit and how (docs/eval.md).

`eval winrate` uses them for a baseline's models when every row is an answer to one of AlpacaEval's instructions
(matched by text) compared with gpt4_1106_preview's own answer (matched by its length in characters): then one
model's file gives the leaderboard's LC.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
from dataclasses import dataclass
from importlib import resources

import numpy as np

from tokensift.eval.winrate import Judged

BASELINE = "gpt4_1106_preview"
JUDGE = "weighted_alpaca_eval_gpt4_turbo"
FILE = "alpacaeval/lc_inputs.csv.gz"


@dataclass
class AlpacaEvalInputs:
    """The shipped inputs: instructions in AlpacaEval's order, difficulty and baseline answer length per
    instruction, the gamed baselines' judged answers, and the file's provenance lines."""

    instructions: list[str]
    difficulty: dict[str, float]
    baseline_length: dict[str, int]
    gamed: list[Judged]
    provenance: list[str]

    def commit(self) -> str:
        for line in self.provenance:
            if " at commit " in line:
                return line.rsplit(" at commit ", 1)[1].strip()[:7]
        return "unknown"

    def describe(self) -> str:
        return (f"AlpacaEval's ({JUDGE} judge, {len(self.instructions)} instructions; shipped, rebuilt from "
                f"tatsu-lab/alpaca_eval@{self.commit()})")


@functools.lru_cache(maxsize=1)
def load() -> AlpacaEvalInputs:
    """Read the shipped file once."""
    raw = resources.files("tokensift.eval").joinpath(FILE).read_bytes()
    lines = gzip.decompress(raw).decode("utf-8").splitlines()
    provenance = [line[2:] for line in lines if line.startswith("# ")]
    rows = list(csv.DictReader(io.StringIO("\n".join(line for line in lines if not line.startswith("#")))))
    prompts = [r["instruction"] for r in rows]
    base = np.array([float(r["baseline_length"]) for r in rows])
    gamed = [Judged(f"{BASELINE}_{kind}", BASELINE, prompts, np.array([float(r[f"{kind}_preference"]) for r in rows]),
                    np.array([float(r[f"{kind}_length"]) for r in rows]), base, sources=[f"tokensift:{FILE}"])
             for kind in ("verbose", "concise")]
    return AlpacaEvalInputs(prompts, {r["instruction"]: float(r["instruction_difficulty"]) for r in rows},
                            {r["instruction"]: int(r["baseline_length"]) for r in rows}, gamed, provenance)


def applies(judged: list[Judged]) -> tuple[bool, str]:
    """Whether the shipped inputs fit these models (all against one baseline), and if not why: every row must
    answer one of AlpacaEval's instructions, and its baseline answer must be as long as gpt4_1106_preview's."""
    inputs = load()
    rows = sum(len(j) for j in judged)
    unknown = sum(p not in inputs.difficulty for j in judged for p in j.prompts)
    if unknown:
        return False, f"{unknown} of {rows} rows answer instructions that are not AlpacaEval's"
    other = sum(int(n) != inputs.baseline_length[p] for j in judged for p, n in zip(j.prompts, j.baseline_length))
    if other:
        return False, (f"the baseline's answer is not {BASELINE}'s (another length) on {other} of {rows} rows: "
                       "AlpacaEval's difficulties are against that baseline")
    return True, ""
