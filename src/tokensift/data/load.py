"""Load preference data: source -> validated `PreferenceExample`s, with every bad row accounted for.

By default the first bad row raises its DataError (file, row, field, problem). With `skip_invalid=True`
bad rows are skipped, and each one is written to a rejects file (JSON Lines: row, field, reason, raw text)
and counted in the result: nothing is dropped silently.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from tokensift.data.example import PreferenceExample
from tokensift.data.formats import normalise_row, parse_columns, validate_columns
from tokensift.data.io import RAW_LIMIT, RowDecodeError, iter_raw_rows, safe_name
from tokensift.errors import DataError, UserError


@dataclass
class RejectedRow:
    """A skipped row: its 0-based index, the field at fault (None for the whole row), why, and its text."""

    row: int
    field: str | None
    problem: str
    raw: str


@dataclass
class LoadResult:
    """What a load produced and what it skipped. `iter_preferences` fills one without keeping examples."""

    examples: list[PreferenceExample] = field(default_factory=list)
    source: str = ""
    total_rows: int = 0
    formats: Counter = field(default_factory=Counter)
    rejected: list[RejectedRow] = field(default_factory=list)
    rejects_path: str | None = None
    empty_replies: int = 0  # kept examples whose chosen or rejected reply is empty (HH's explicit empty turn)

    @property
    def valid(self) -> int:
        return self.total_rows - len(self.rejected)

    def summary(self) -> str:
        """A few human lines: rows read, valid, skipped by reason, formats, where the rejects went."""
        lines = [f"{self.source}: {self.total_rows:,} rows read, {self.valid:,} valid, "
                 f"{len(self.rejected):,} skipped"]
        if self.formats:
            lines.append("formats: " + ", ".join(f"{name} {count:,}" for name, count in self.formats.most_common()))
        if self.empty_replies:
            lines.append(f"{self.empty_replies:,} kept with an empty reply (the dialogue ends in an empty "
                         "Assistant turn)")
        if self.rejected:
            reasons = Counter(reason_label(item) for item in self.rejected)
            lines.append("skipped: " + "; ".join(f"{count:,} x {label}" for label, count in reasons.most_common()))
        if self.rejects_path:
            lines.append(f"rejected rows written to {self.rejects_path}")
        return "\n".join(lines)


def reason_label(item: RejectedRow) -> str:
    """A short grouping key: the field without message positions, and the problem's leading phrase."""
    phrase = re.split(r"[;:(]", item.problem, maxsplit=1)[0].strip()
    if item.field is None:
        return phrase
    field_name = re.sub(r"\[-?\d+\]$", "", item.field)
    return f"{field_name}: {phrase}"


def load_preferences(source: str, columns: dict[str, str] | str | None = None, skip_invalid: bool = False,
                     rejects_path: str | None = None, split: str = "train",
                     limit: int | None = None) -> LoadResult:
    """Read every row of `source` (file, save_to_disk folder or hub id) into PreferenceExamples.

    columns:      our field -> your column name, as a dict or 'prompt=instruction,chosen=good,...'.
    skip_invalid: skip bad rows (written to the rejects file) instead of raising at the first one.
    rejects_path: where to write skipped rows; default `<cwd>/<safe_name(source)>.rejects.jsonl`.
                  Written only when some row was skipped.
    limit:        read only the first `limit` rows of the source (valid or not).
    """
    result = LoadResult(source=source)
    for example in iter_preferences(source, columns, skip_invalid, rejects_path, split, limit, result=result):
        result.examples.append(example)
    return result


def iter_preferences(source: str, columns: dict[str, str] | str | None = None, skip_invalid: bool = False,
                     rejects_path: str | None = None, split: str = "train", limit: int | None = None,
                     result: LoadResult | None = None) -> Iterator[PreferenceExample]:
    """Stream validated examples, for data too large to hold; same validation as `load_preferences`.

    Pass `result=LoadResult(source=source)` to receive the counts and rejected rows (examples are not kept
    in it); they are complete once the iteration ends. Rejects are written as they are found.
    """
    if isinstance(columns, str):
        columns = parse_columns(columns)
    elif columns:
        columns = validate_columns(columns)
    if limit is not None and limit < 0:
        raise UserError(f"limit must be >= 0, got {limit}")
    if result is None:
        result = LoadResult(source=source)
    path = rejects_path or os.path.join(os.getcwd(), f"{safe_name(source)}.rejects.jsonl")
    rejects_file = None
    rows = iter_raw_rows(source, split)
    try:
        # islice stops before reading past the limit; row indices are consecutive from 0.
        for row, record in itertools.islice(rows, limit):
            result.total_rows += 1
            try:
                if isinstance(record, DataError):
                    raise record
                example, kind = normalise_row(record, row, source, columns)
            except DataError as error:
                if not skip_invalid:
                    raise
                rejected = RejectedRow(row, error.field, error.problem, _raw(error, record))
                result.rejected.append(rejected)
                if rejects_file is None:  # opened at the first bad row: no empty rejects files
                    try:
                        # backslashreplace: a rejected row may hold text no encoder accepts (lone surrogates)
                        rejects_file = open(path, "w", encoding="utf-8", errors="backslashreplace")
                    except OSError as open_error:
                        raise UserError(f"cannot write the rejects file {path}: {open_error.strerror}") from None
                    result.rejects_path = path
                rejects_file.write(json.dumps({"source": str(source), "row": row, "field": rejected.field,
                                               "reason": rejected.problem, "raw": rejected.raw},
                                              ensure_ascii=False) + "\n")
                rejects_file.flush()
                continue
            result.formats[kind] += 1
            if not example.chosen.strip() or not example.rejected.strip():
                result.empty_replies += 1
            yield example
    finally:
        rows.close()  # release the file (and a .parquet.gz temporary copy) even when the caller stops early
        if rejects_file is not None:
            rejects_file.close()


def _raw(error: DataError, record) -> str:
    """The original row as text, at most ~2 kB, for the rejects file."""
    if isinstance(error, RowDecodeError):
        return error.raw
    text = json.dumps(record, ensure_ascii=False, default=str)
    return text if len(text) <= RAW_LIMIT else text[:RAW_LIMIT] + f"... [truncated, {len(text)} characters]"
