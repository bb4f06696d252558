"""Judged pairwise annotations from files, for `tokensift eval winrate` and `eval compare` (eval/winrate.py).

Three formats, told apart by their first row:
- AlpacaEval annotations (`annotations.json` of `alpaca_eval`, JSON array or JSON Lines): `instruction, output_1,
  output_2, generator_1, generator_2, preference`; output_1 is the baseline's answer and preference in [1, 2] is
  1 + P(output_2 is better) (0 and 1.5 are draws, as in AlpacaEval). Several models may share a file.
- a `tokensift eval generate` results file (with its items): the policy against the reference answers and/or
  the opponent. Pairwise judges give the continuous p_first, scoring judges the win/draw/loss outcome.
- a model-matrix file (`{prompt, responses: {generator: {text, p_better_than_reference}}}`): every generator
  against the one whose p_better_than_reference is always null (the reference).

A missing preference is an error naming file, row and field, unless `skip_missing` drops the row (counted).
Rows of the same model against the same baseline from several files are pooled: rows of one prompt are that
prompt's samples (eval/winrate.py clusters them).
"""

from __future__ import annotations

import csv
import gzip
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from tokensift.data.io import file_kind, iter_raw_rows
from tokensift.errors import DataError, UserError
from tokensift.eval.winrate import GamedRows, Judged

ANNOTATION_FIELDS = ("instruction", "output_1", "output_2", "generator_1", "generator_2", "preference")
FORMATS = ("AlpacaEval annotations (instruction, output_1, output_2, generator_1, generator_2, preference), "
           "a `tokensift eval generate` results file, or a model-matrix file ({prompt, responses})")


def prompt_key(prompt) -> str:
    """The instruction text for a string or a single user message, else the messages as JSON."""
    if isinstance(prompt, str):
        return prompt
    single = isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], dict)
    if single and prompt[0].get("role") == "user":
        return str(prompt[0].get("content", ""))
    return json.dumps(prompt, ensure_ascii=False, sort_keys=True)


def _rows(path: str) -> list[dict]:
    rows = []
    for row, record in iter_raw_rows(path):
        if isinstance(record, DataError):
            raise record
        rows.append(record)
    if not rows:
        raise UserError(f"{path}: no rows (expected {FORMATS})")
    return rows


def _number(value, path: str, row: int, name: str, skip_missing: bool | None = None):
    """A finite float; for a missing value None when skip_missing, else a DataError (a preference's says how
    to skip such rows; skip_missing=None: not a preference)."""
    if isinstance(value, str):  # CSV cells are text
        try:
            value = float(value)
        except ValueError:
            raise DataError(path, row, name, f"expected a number, got {value!r:.60}") from None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        if skip_missing:
            return None
        if skip_missing is None:
            raise DataError(path, row, name, "missing; expected a number")
        raise DataError(path, row, name, "missing preference (the judge gave no verdict); fix the file or set "
                        "skip_missing=true to leave such rows out")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DataError(path, row, name, f"expected a number, got {value!r:.60}")
    return float(value)


def _text(record: dict, name: str, path: str, row: int) -> str:
    value = record.get(name)
    if not isinstance(value, str):
        raise DataError(path, row, name, f"expected the answer text (a string), got {type(value).__name__}")
    return value


class _Collector:
    """Rows per (model, baseline) in file order; becomes Judged objects."""

    def __init__(self):
        self.rows = defaultdict(list)
        self.sources = defaultdict(list)

    def add(self, model, baseline, prompt, preference, model_text, baseline_text, source, score=None):
        self.rows[(model, baseline)].append((prompt, preference, len(model_text), len(baseline_text), score))
        if source not in self.sources[(model, baseline)]:
            self.sources[(model, baseline)].append(source)

    def judged(self) -> list[Judged]:
        out = []
        for (model, baseline), rows in self.rows.items():
            prompts, pref, mlen, blen, scores = zip(*rows)
            score = None if any(s is None for s in scores) else np.array(scores, dtype=np.float64)
            out.append(Judged(model, baseline, list(prompts), np.array(pref, dtype=np.float64),
                              np.array(mlen, dtype=np.float64), np.array(blen, dtype=np.float64), score,
                              self.sources[(model, baseline)]))
        return out


def _annotations(path: str, rows: list[dict], skip_missing: bool, into: _Collector) -> int:
    dropped = 0
    for row, record in enumerate(rows):
        missing = [f for f in ANNOTATION_FIELDS if f not in record]
        if missing:
            raise DataError(path, row, missing[0],
                            f"missing; an AlpacaEval annotation has {', '.join(ANNOTATION_FIELDS)}")
        value = _number(record["preference"], path, row, "preference", skip_missing)
        if value is None:
            dropped += 1
            continue
        if value == 0:  # AlpacaEval's other way of writing a draw
            value = 1.5
        if not 1 <= value <= 2:
            raise DataError(path, row, "preference", f"must lie in [1, 2] (1: output_1 is better, 2: output_2 is "
                            f"better; 0 or 1.5: a draw), got {value:g}")
        into.add(str(record["generator_2"]), str(record["generator_1"]), prompt_key(record["instruction"]),
                 value - 1, _text(record, "output_2", path, row), _text(record, "output_1", path, row), path)
    return dropped


def _generate_results(path: str, result: dict, skip_missing: bool, into: _Collector) -> int:
    items = result.get("items")
    if not items:
        raise UserError(f"{path}: an `eval generate` results file without items; run it with save_items=true")
    config = result.get("config") or {}
    kind = ((result.get("metrics") or {}).get("judge") or {}).get("kind")
    if kind is None:
        raise UserError(f"{path}: an `eval generate` results file without a judge; run it with judge.type=...")
    model = str(config.get("model", path))
    sides = (("vs_reference", "reference_answer", f"reference answers ({config.get('reference_column')})"),
             ("vs_opponent", "opponent_answer", str(config.get("opponent"))))
    found = dropped = 0
    for name, other_field, baseline in sides:
        field = f"{name}_p_first" if kind == "pairwise" else f"{name}_outcome"
        if field not in items[0]:
            continue
        found += 1
        for row, item in enumerate(items):
            value = _number(item.get(field), path, row, f"items.{field}", skip_missing)
            if value is None:
                dropped += 1
                continue
            if not 0 <= value <= 1:
                raise DataError(path, row, f"items.{field}", f"must lie in [0, 1], got {value:g}")
            into.add(model, baseline, prompt_key(item.get("prompt")), value, _text(item, "answer", path, row),
                     _text(item, other_field, path, row), path, item.get("policy_score"))
    if not found:
        raise UserError(f"{path}: the results hold no judged comparison (vs reference answers or opponent)")
    return dropped


def _matrix(path: str, rows: list[dict], skip_missing: bool, into: _Collector) -> int:
    seen, with_value = set(), set()
    for record in rows:
        for name, cell in (record.get("responses") or {}).items():
            seen.add(name)
            if isinstance(cell, dict) and cell.get("p_better_than_reference") is not None:
                with_value.add(name)
    references = sorted(seen - with_value)
    if len(references) != 1:
        raise UserError(f"{path}: a model-matrix file needs exactly one generator without p_better_than_reference "
                        f"(the reference); found {references or 'none'}")
    reference = references[0]
    dropped = 0
    for row, record in enumerate(rows):
        responses = record.get("responses")
        if "prompt" not in record or not isinstance(responses, dict):
            raise DataError(path, row, "responses", "a model-matrix row is {prompt, responses: {generator: {text, "
                            "p_better_than_reference}}}")
        if reference not in responses:
            raise DataError(path, row, f"responses.{reference}", "the reference's answer is missing")
        if not isinstance(responses[reference], dict):
            raise DataError(path, row, f"responses.{reference}", "expected {text, p_better_than_reference}")
        baseline_text = _text(responses[reference], "text", path, row)
        for name, cell in responses.items():
            if name == reference:
                continue
            if not isinstance(cell, dict):
                raise DataError(path, row, f"responses.{name}", "expected {text, p_better_than_reference}")
            field = f"responses.{name}.p_better_than_reference"
            value = _number(cell.get("p_better_than_reference"), path, row, field, skip_missing)
            if value is None:
                dropped += 1
                continue
            if not 0 <= value <= 1:
                raise DataError(path, row, field, f"must lie in [0, 1], got {value:g}")
            into.add(name, reference, prompt_key(record["prompt"]), value, _text(cell, "text", path, row),
                     baseline_text, path)
    return dropped


def file_format(path: str, first: dict) -> str:
    if first.get("action") == "generate" and "metrics" in first:
        return "generate"
    if "responses" in first and "prompt" in first:
        return "matrix"
    if "preference" in first and ("output_1" in first or "generator_2" in first):
        return "annotations"
    keys = ", ".join(sorted(map(str, first))[:12]) or "none"
    raise UserError(f"{path}: unknown format (first row's keys: {keys}); expected {FORMATS}")


def read_judged(paths: list[str], skip_missing: bool = False) -> tuple[list[Judged], dict]:
    """Every (model, baseline) in the files, rows pooled across files; and {path: {format, dropped rows}}."""
    into, info = _Collector(), {}
    for path in paths:
        rows = _rows(path)
        kind = file_format(path, rows[0])
        if kind == "generate":
            dropped = _generate_results(path, rows[0], skip_missing, into)
        elif kind == "matrix":
            dropped = _matrix(path, rows, skip_missing, into)
        else:
            dropped = _annotations(path, rows, skip_missing, into)
        info[path] = {"format": kind, "dropped_rows_without_preference": dropped}
    return into.judged(), info


def _difficulty_rows(path: str) -> list[dict]:
    """Rows of a difficulty table. A CSV written by pandas with its index has an unnamed first column, which the
    project's CSV reader refuses (it wants named columns): that column is read here as `index`."""
    if Path(path).is_file() and file_kind(path)[0] == "csv":
        opener = gzip.open if file_kind(path)[1] else open
        with opener(path, "rt", encoding="utf-8", newline="") as handle:
            header, *lines = list(csv.reader(handle))
        if header and header[0] == "":
            rows = []
            for row, line in enumerate(lines):
                try:
                    rows.append({"index": int(line[0]), **{k: float(v) for k, v in zip(header[1:], line[1:])}})
                except (ValueError, IndexError):
                    raise DataError(path, row, None, f"expected a position and numbers, got {line!r:.80}") from None
            return rows
    return _rows(path)


def _instructions_at(path: str, positions: list[int], instructions: str | None) -> list[str]:
    """The instruction texts at AlpacaEval positions, from `instructions`: rows listing its instructions in order."""
    if not instructions:
        raise UserError(f"{path}: holds AlpacaEval positions, not instruction texts: set instructions=FILE (rows with "
                        "an `instruction` field in AlpacaEval's order, e.g. its eval set or any 805-row results file)")
    order = [prompt_key(r.get("instruction")) for r in _rows(instructions)]
    if max(positions) >= len(order):
        raise UserError(f"{path}: position {max(positions)} is beyond the {len(order)} instructions of {instructions}")
    return [order[p] for p in positions]


def read_difficulties(path: str, instructions: str | None = None) -> dict[str, float]:
    """Published instruction difficulties: rows with `instruction` and `instruction_difficulty`, or AlpacaEval's
    `instruction_difficulty.csv` (position in AlpacaEval's 805 instructions -> difficulty) together with
    `instructions`."""
    rows = _difficulty_rows(path)
    if "instruction_difficulty" not in rows[0]:
        raise DataError(path, 0, "instruction_difficulty", "missing; expected rows of instruction (or index) and "
                        "instruction_difficulty")
    values = [_number(r.get("instruction_difficulty"), path, k, "instruction_difficulty")
              for k, r in enumerate(rows)]
    if "instruction" in rows[0]:
        return {prompt_key(r.get("instruction")): v for r, v in zip(rows, values)}
    positions = [int(r["index"]) if "index" in r else k for k, r in enumerate(rows)]
    return dict(zip(_instructions_at(path, positions, instructions), values))


def read_gamed(paths: list[str], lam: float, instructions: str | None = None
               ) -> tuple[GamedRows | None, dict[str, float] | None, list[Judged]]:
    """The gamed baselines' annotations, either AlpacaEval's published `df_gamed.csv` (rows ready for the GLM,
    and the difficulties AlpacaEval's LC reads from it, by position: they need `instructions`), or annotation
    files of the gamed generators against the baseline (any format above; their rows are prepared once the
    difficulties are known, see winrate.gamed_rows). Returns (published rows, their difficulties, annotations)."""
    published, judged = [], []
    for path in paths:
        rows = _rows(path)
        if "std_delta_len" in rows[0] and "instruction_difficulty" in rows[0]:
            published.append((path, rows))
        else:
            judged += read_judged([path])[0]
    if not published:
        return None, None, judged
    if len(published) > 1 or judged:
        raise UserError("give AlpacaEval's df_gamed.csv alone, or annotation files of the gamed baselines, not both")
    path, rows = published[0]
    rows = [r for r in rows if str(r.get("not_gamed_baseline", False)).lower() in ("false", "0", "0.0")]
    if not rows:
        raise UserError(f"{path}: no gamed-baseline rows (not_gamed_baseline false)")
    need = ("preference", "std_delta_len", "instruction_difficulty")
    columns = {name: np.array([_number(r.get(name), path, k, name) for k, r in enumerate(rows)]) for name in need}
    names = sorted({str(r.get("model", "gamed")) for r in rows})
    gamed = GamedRows(columns["preference"], columns["std_delta_len"], columns["instruction_difficulty"],
                      np.full(len(rows), lam / len(names)), names)
    difficulty = None
    if instructions and all("index" in r for r in rows):
        texts = _instructions_at(path, [int(_number(r["index"], path, k, "index")) for k, r in enumerate(rows)],
                                 instructions)
        difficulty = {}
        for text, value in zip(texts, columns["instruction_difficulty"]):
            difficulty.setdefault(text, float(value))
    return gamed, difficulty, judged
