"""Small judged-annotation files for the `eval winrate` / `eval compare` tests, written in tmp folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

INSTRUCTIONS = [f"Question number {i}: explain something." for i in range(24)]


def synthetic_rows(model: str, quality: float, verbosity: float, seed: int, baseline: str = "reference",
                   instructions: list[str] = INSTRUCTIONS) -> list[dict]:
    """AlpacaEval annotation rows: preference = 1 + P(model beats the baseline), from quality, length and noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for k, instruction in enumerate(instructions):
        base_len = 200 + 37 * (k % 9)
        length = max(5, int(base_len * np.exp(verbosity + rng.normal(0, 0.4))))
        logit = quality + 0.8 * np.tanh((length - base_len) / 150) + rng.normal(0, 1)
        rows.append({"instruction": instruction, "output_1": "b" * base_len, "output_2": "m" * length,
                     "generator_1": baseline, "generator_2": model,
                     "preference": round(1 + 1 / (1 + np.exp(-logit)), 6)})
    return rows


def write_json(path: Path, value) -> Path:
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


def matrix_rows(annotations: list[dict]) -> list[dict]:
    """The same annotations as model-matrix rows: {prompt, responses: {generator: {text, p_better_than_reference}}}."""
    rows: dict[str, dict] = {}
    for a in annotations:
        row = rows.setdefault(a["instruction"], {"prompt": a["instruction"], "responses": {
            a["generator_1"]: {"text": a["output_1"], "p_better_than_reference": None}}})
        row["responses"][a["generator_2"]] = {"text": a["output_2"], "p_better_than_reference": a["preference"] - 1}
    return list(rows.values())
