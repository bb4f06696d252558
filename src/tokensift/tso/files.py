"""Atomic JSON Lines and CSV files for the TSO run folder (candidates, judgements, pairs, review sheets).

Every file is written to a temporary name in the same folder, flushed, fsynced and renamed into place, so a
run killed at any moment leaves either the old file or the complete new one. The loop uses a file's
existence as "this sub-step is done", which is only sound because of that.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from tokensift.fsutil import write_text_atomic


def write_jsonl(path: Path, rows: list[dict]) -> None:
    write_text_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    """CSV with a header; values that are lists or dicts (prompt messages) are written as JSON."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else v
                         for k, v in row.items()})
    write_text_atomic(path, buffer.getvalue())


def write_table(path: Path, rows: list[dict], columns: list[str]) -> None:
    """JSON Lines, or CSV when the file name ends in .csv (people often edit review sheets in a spreadsheet)."""
    if str(path).endswith(".csv"):
        write_csv(path, rows, columns)
    else:
        write_jsonl(path, [{k: row.get(k) for k in columns} for row in rows])


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))
