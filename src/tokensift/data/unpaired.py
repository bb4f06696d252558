"""Unpaired preference data for KTO and BCO: rows of (prompt, completion, label), TRL's unpaired format, where
label true marks a desirable completion and false an undesirable one. Or a paired file split into unpaired rows
on request (`split_pairs=true`): each pair gives (prompt, chosen, true) and (prompt, rejected, false).

The engine trains on pairs, so each unpaired row becomes a `PreferenceExample` whose chosen side is the row's
completion and whose rejected side is a *mismatched* completion: the completion of the next row (in file order,
cyclically) whose prompt differs. KTO's reference point z0 is estimated from those mismatched (x_i, y_j) pairs, as
the paper does (Ethayarajh et al. 2024, section 4.1: "mismatched pairs"); TRL takes the previous row's completion
within each batch instead, we fix the mismatch once when loading, so a row's pair does not depend on batching.
The row's label is in `metadata["label"]` (a bool).

Errors name the file, the row and the field: a label that is not true/false, a missing column (with the column
mapping, e.g. `columns=prompt=question,completion=answer,label=thumbs_up`), a file with one class only, or a file
whose every prompt is the same (no mismatched completion exists).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field

from tokensift.data.example import PreferenceExample
from tokensift.data.formats import SURROGATE, _Row
from tokensift.data.io import iter_raw_rows
from tokensift.data.load import load_preferences
from tokensift.errors import DataError, UserError

UNPAIRED_FIELDS = ("prompt", "completion", "label", "system", "id")


@dataclass
class UnpairedResult:
    source: str
    examples: list[PreferenceExample] = field(default_factory=list)  # chosen = completion, rejected = mismatched
    desirable: int = 0
    undesirable: int = 0
    split_from_pairs: bool = False

    def summary(self) -> str:
        total = self.desirable + self.undesirable
        origin = " (paired rows split in two)" if self.split_from_pairs else ""
        return (f"{self.source}: {total} unpaired rows{origin}: {self.desirable} desirable, {self.undesirable} "
                f"undesirable ({self.desirable / max(total, 1):.0%} desirable)")


def parse_unpaired_columns(text: str | dict | None) -> dict[str, str]:
    """'prompt=question,completion=answer,label=ok' -> {'prompt': 'question', ...}; our fields are
    prompt, completion, label, system, id."""
    if not text:
        return {}
    items = text.items() if isinstance(text, dict) else (
        (piece.strip() for piece in item.partition("=")[::2]) for item in str(text).split(",") if item.strip())
    mapping = {}
    for target, column in items:
        if target not in UNPAIRED_FIELDS:
            raise UserError(f"columns: unknown field '{target}' for unpaired data; fields: {', '.join(UNPAIRED_FIELDS)}")
        if not column:
            raise UserError(f"columns: {target} must map to a column name")
        mapping[target] = column
    return mapping


def is_unpaired_row(row, columns: dict[str, str] | None = None) -> bool:
    columns = columns or {}
    return isinstance(row, dict) and columns.get("completion", "completion") in row and \
        columns.get("label", "label") in row


def unpaired_row(row: dict, index: int, source: str, columns: dict[str, str]) -> tuple[list[dict], str, bool, dict]:
    """(prompt messages, completion text, label, metadata) of one row, or a DataError naming row and field."""
    if not isinstance(row, dict):
        raise DataError(source, index, None, f"row is {type(row).__name__}, not an object with prompt, completion "
                        "and label")
    rules = _Row(row, index, source, columns)
    prompt = rules.value("prompt")
    completion = rules.value("completion")
    label = rules.value("label")
    if not isinstance(label, bool):
        rules.fail(rules.name("label"), f"label must be true or false (true: a desirable completion), got "
                   f"{label!r} ({type(label).__name__})")
    if isinstance(prompt, str):
        if not prompt.strip():
            rules.fail(rules.name("prompt"), "the prompt is empty")
        messages = [{"role": "user", "content": prompt}]
    elif isinstance(prompt, list):
        messages = rules.messages("prompt", prompt)
        if messages[-1]["role"] == "assistant":
            rules.fail(rules.name("prompt"), "the prompt ends with an assistant turn")
    else:
        rules.fail(rules.name("prompt"), f"expected a string or a list of messages, got {type(prompt).__name__}")
    if isinstance(completion, list):
        turns = rules.messages("completion", completion)
        if len(turns) != 1 or turns[0]["role"] != "assistant":
            rules.fail(rules.name("completion"), "a message-list completion must be exactly one assistant message")
        completion = turns[0]["content"]
    if not isinstance(completion, str) or not completion.strip():
        rules.fail(rules.name("completion"), f"the completion must be non-empty text, got {completion!r}")
    system = rules.value("system", required=False) if "system" in columns or "system" in row else None
    if system:
        messages = [{"role": "system", "content": str(system)}] + messages
    for target, text in [("prompt", m["content"]) for m in messages] + [("completion", completion)]:
        if SURROGATE.search(text):
            rules.fail(rules.name(target), "holds an unpaired UTF-16 surrogate, which is not valid Unicode text")
    return messages, completion, label, rules.metadata()


def load_unpaired(source, columns=None, split: str = "train", limit: int | None = None,
                  split_pairs: bool = False) -> UnpairedResult:
    """Every row of an unpaired file (or of a paired one, split in two when `split_pairs`), each with its
    mismatched completion for the KL estimate. Raises a DataError / UserError naming what is wrong."""
    source = os.fspath(source) if isinstance(source, os.PathLike) else source
    result = UnpairedResult(source=str(source), split_from_pairs=split_pairs)
    rows: list[tuple[int, list[dict], str, bool, dict]] = []
    if split_pairs:
        loaded = load_preferences(source, columns=columns, split=split, limit=limit)
        for ex in loaded.examples:
            rows.append((2 * ex.row, ex.prompt, ex.chosen, True, dict(ex.metadata, source_row=ex.row)))
            rows.append((2 * ex.row + 1, ex.prompt, ex.rejected, False, dict(ex.metadata, source_row=ex.row)))
    else:
        mapping = parse_unpaired_columns(columns)
        raw = iter_raw_rows(source, split)
        try:
            for index, record in itertools.islice(raw, limit):
                if isinstance(record, DataError):
                    raise record
                if index == 0 and isinstance(record, dict) and not is_unpaired_row(record, mapping) \
                        and "chosen" in record and "rejected" in record:
                    raise UserError(f"{source}: paired rows (prompt, chosen, rejected); KTO and BCO train on "
                                    "unpaired rows (prompt, completion, label): set split_pairs=true to split each "
                                    "pair into a desirable and an undesirable row")
                rows.append((index, *unpaired_row(record, index, str(source), mapping)))
        finally:
            raw.close()
    if not rows:
        raise UserError(f"{source}: no rows")
    labels = [label for _, _, _, label, _ in rows]
    result.desirable, result.undesirable = sum(labels), len(labels) - sum(labels)
    if not result.desirable or not result.undesirable:
        kind = "desirable (true)" if result.desirable else "undesirable (false)"
        raise DataError(str(source), rows[0][0], (parse_unpaired_columns(columns) if not split_pairs else {}).get(
            "label", "label"), f"every one of the {len(rows)} rows is labelled {kind}; KTO and BCO need both "
            "desirable and undesirable completions")
    keys = [repr(prompt) for _, prompt, _, _, _ in rows]
    for i, (index, prompt, completion, label, metadata) in enumerate(rows):
        other = next((j % len(rows) for j in range(i + 1, i + len(rows)) if keys[j % len(rows)] != keys[i]), None)
        if other is None:
            raise UserError(f"{source}: every row has the same prompt, so no mismatched completion exists for "
                            "KTO's KL estimate")
        result.examples.append(PreferenceExample(prompt, completion, rows[other][2], index,
                                                 dict(metadata, label=label)))
    return result
