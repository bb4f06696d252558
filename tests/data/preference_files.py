"""Helpers for the data-loading tests: write rows to any supported container; find the shared real data.

Not named conftest.py: tests elsewhere import the root tests/conftest.py by that module name.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import pytest

# The repository is <root>/main; the read-only real data lives beside it in <root>/shared/data.
SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def real_data(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared data folder exists only beside the project checkout")
    return path


def write_rows(path: Path, rows: list[dict]) -> Path:
    """Write rows as .jsonl/.json/.csv/.parquet, gzipped when the name ends in .gz."""
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    if name.endswith(".jsonl"):
        data = "".join(json.dumps(row) + "\n" for row in rows).encode()
    elif name.endswith(".json"):
        data = json.dumps(rows).encode()
    elif name.endswith(".csv"):
        columns = list(dict.fromkeys(key for row in rows for key in row))
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_csv_cell(row.get(column)) for column in columns])
        data = text.getvalue().encode()
    elif name.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows), buffer)
        data = buffer.getvalue()
    else:
        raise ValueError(path)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def _csv_cell(value):
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return value
