"""Prompt sets for generation-based evaluation, from whichever file the user has.

Three kinds of source, told apart by the data itself:
- a `.txt` file: one prompt per non-empty line (row = 0-based line number);
- a preference source (its first readable row has chosen and rejected columns, after `columns` mapping):
  read through the project's preference loader, so every format it knows (HH dialogues, message lists,
  custom columns) yields the same prompt messages training saw; `reference_column` chosen or rejected
  names the normalised replies, any other name a column kept in the row's metadata;
- any other rows (.jsonl/.json/.csv/.parquet, dataset folders, hub ids): `prompt_column` holds a string or a
  list of chat messages; `reference_column`, when given, a string (or messages ending in an assistant turn).
A seeded `eval_fraction` split uses train/data.split_eval on the rows in source order, so a preference file
evaluated with the training run's data, limit, eval_fraction and seed gets exactly its held-out prompts.
Bad rows raise a DataError naming file, row and field, or with `skip_invalid` are listed in `skipped`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

from tokensift.data.example import ROLES
from tokensift.data.formats import parse_columns
from tokensift.data.io import iter_raw_rows
from tokensift.data.load import load_preferences
from tokensift.errors import DataError, UserError
from tokensift.train.data import split_eval


@dataclass
class PromptSet:
    source: str
    kind: str  # "text", "prompts" or "preferences"
    prompts: list[list[dict]]  # chat messages per prompt
    rows: list[int]  # 0-based row of each prompt in its source
    references: list[str] | None  # one reference answer per prompt, or None
    skipped: list[dict] = field(default_factory=list)  # {"row", "field", "reason"} of every skipped row
    notes: list[str] = field(default_factory=list)


def is_preference_source(source: str, split: str = "train", columns: dict | None = None) -> bool:
    """True when the first decodable row has both a chosen and a rejected column."""
    names = [(columns or {}).get(target, target) for target in ("chosen", "rejected")]
    rows = iter_raw_rows(source, split)
    try:
        for _, record in rows:
            if isinstance(record, dict):
                return all(name in record for name in names)
        return False
    finally:
        rows.close()


def load_prompt_set(source: str, prompt_column: str = "prompt", reference_column: str | None = None,
                    columns: str | None = None, split: str = "train", skip_invalid: bool = False,
                    limit: int | None = None, eval_fraction: float = 0.0, seed: int = 0) -> PromptSet:
    mapping = parse_columns(columns) if columns else None
    path = Path(source)
    if path.suffix.lower() == ".txt":
        if reference_column:
            raise UserError(f"{source}: a .txt prompt file has no columns, so reference_column="
                            f"{reference_column} cannot be read; use a .jsonl file with prompt and answer columns")
        items, skipped, notes, kind = _text_prompts(source, limit), [], [], "text"
    elif is_preference_source(source, split, mapping):
        items, skipped, notes = _preference_prompts(source, mapping, reference_column, split, skip_invalid,
                                                    limit, eval_fraction, seed)
        kind = "preferences"
    else:
        items, skipped, notes = _row_prompts(source, prompt_column, reference_column, split, skip_invalid, limit)
        kind = "prompts"
    if kind != "preferences" and eval_fraction > 0:
        _, items = split_eval(items, eval_fraction, seed)
    if eval_fraction > 0:
        notes.append(f"evaluating the {len(items)} prompts a seed-{seed} split with eval_fraction={eval_fraction} "
                     "holds aside")
    if not items:
        raise UserError(f"{source}: no usable prompts")
    if skipped:
        notes.append(f"{len(skipped)} bad rows skipped (listed under data.skipped in the results)")
    return PromptSet(source, kind, [messages for _, messages, _ in items], [row for row, _, _ in items],
                     [ref for _, _, ref in items] if reference_column else None, skipped, notes)


def _text_prompts(source: str, limit: int | None) -> list[tuple]:
    try:
        lines = Path(source).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"{source}: no such file") from None
    except UnicodeDecodeError:
        raise UserError(f"{source}: not UTF-8 text") from None
    items = [(row, [{"role": "user", "content": line.strip()}], None) for row, line in enumerate(lines)
             if line.strip()]
    return items[:limit] if limit else items


def _preference_prompts(source, mapping, reference_column, split, skip_invalid, limit, eval_fraction, seed):
    result = load_preferences(source, columns=mapping, skip_invalid=skip_invalid, split=split, limit=limit)
    if not result.examples:
        raise UserError(f"{source}: no valid preference rows")
    skipped = [{"row": r.row, "field": r.field, "reason": r.problem} for r in result.rejected]
    examples = result.examples
    if eval_fraction > 0:  # split the examples exactly as training splits its pairs
        _, examples = split_eval(examples, eval_fraction, seed)
    items = []
    for example in examples:
        reference = None
        if reference_column in ("chosen", "rejected"):
            reference = getattr(example, reference_column)
        elif reference_column:
            try:
                reference = _answer_text(example.metadata.get(reference_column), source, example.row,
                                         reference_column, list(example.metadata))
            except DataError as error:
                if not skip_invalid:
                    raise
                skipped.append({"row": example.row, "field": error.field, "reason": error.problem})
                continue
        items.append((example.row, example.prompt, reference))
    return items, skipped, [result.summary()]


def _row_prompts(source, prompt_column, reference_column, split, skip_invalid, limit):
    items, skipped, total = [], [], 0
    rows = iter_raw_rows(source, split)
    try:
        for row, record in itertools.islice(rows, limit):
            total += 1
            try:
                if isinstance(record, DataError):
                    raise record
                if not isinstance(record, dict):
                    raise DataError(source, row, None, f"row is {type(record).__name__}, not an object")
                messages = _prompt_messages(record.get(prompt_column), source, row, prompt_column, list(record))
                reference = None
                if reference_column:
                    reference = _answer_text(record.get(reference_column), source, row, reference_column,
                                             list(record))
            except DataError as error:
                if not skip_invalid:
                    raise
                skipped.append({"row": row, "field": error.field, "reason": error.problem})
                continue
            items.append((row, messages, reference))
    finally:
        rows.close()
    return items, skipped, [f"{source}: {total} rows read, {len(items)} prompts, {len(skipped)} skipped"]


def _prompt_messages(value, source: str, row: int, column: str, present: list) -> list[dict]:
    if value is None:
        raise DataError(source, row, column, f"missing prompt; the row has columns: {', '.join(map(str, present))}"
                        " (set prompt_column=NAME)")
    if isinstance(value, str):
        if not value.strip():
            raise DataError(source, row, column, "the prompt is empty")
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise DataError(source, row, column, f"expected a string or a non-empty list of messages, got "
                        f"{type(value).__name__}")
    messages = []
    for position, message in enumerate(value):
        where = f"{column}[{position}]"
        if not isinstance(message, dict) or not isinstance(message.get("content"), str) \
                or message.get("role") not in ROLES:
            raise DataError(source, row, where, f"expected {{role: one of {', '.join(ROLES)}, content: text}}, "
                            f"got {message!r:.100}")
        messages.append({"role": message["role"], "content": message["content"]})
    if messages[-1]["role"] == "assistant":
        raise DataError(source, row, column, "the prompt ends with an assistant turn; the answer must follow a "
                        "user (or system/tool) message")
    return messages


def _answer_text(value, source: str, row: int, column: str, present: list) -> str:
    """A reference answer: a non-empty string, or messages whose last turn is the assistant's answer."""
    if value is None:
        raise DataError(source, row, column, f"missing reference answer; the row has columns: "
                        f"{', '.join(map(str, present))}")
    if isinstance(value, list) and value and isinstance(value[-1], dict) and value[-1].get("role") == "assistant":
        value = value[-1].get("content")
    if not isinstance(value, str) or not value.strip():
        raise DataError(source, row, column, f"expected a non-empty answer text, got {value!r:.100}")
    return value
