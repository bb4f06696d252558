"""Append-only Parquet shards keyed by dataset row: the storage of reference log-probs and token scores.

A long job (scoring a dataset, caching reference log-probs) writes its results a shard at a time. Each shard
is written to a temporary name and renamed into place, so a killed job leaves only whole shards; a restart
reads which rows are done and computes only the rest, so no row is missing or written twice. Shards carry the
writing process's rank in their name, so several processes can write into one folder without locks.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SHARD = re.compile(r"^part-r(\d+)-(\d{6})\.parquet$")


class ShardStore:
    """A folder of `part-r<rank>-<n>.parquet` files plus a `meta.json` describing what they hold."""

    def __init__(self, folder: str | Path, rank: int = 0):
        self.folder = Path(folder)
        self.rank = rank

    def shards(self) -> list[Path]:
        if not self.folder.exists():
            return []
        return sorted(p for p in self.folder.iterdir() if SHARD.match(p.name))

    def done_rows(self) -> set[int]:
        rows: set[int] = set()
        for path in self.shards():
            rows.update(pq.read_table(path, columns=["row"]).column("row").to_pylist())
        return rows

    def write(self, records: dict[str, list]) -> Path:
        """Write one shard atomically: temp file in the same folder, fsync, rename."""
        self.folder.mkdir(parents=True, exist_ok=True)
        mine = [int(SHARD.match(p.name).group(2)) for p in self.shards() if int(SHARD.match(p.name).group(1)) == self.rank]
        path = self.folder / f"part-r{self.rank}-{(max(mine) + 1) if mine else 0:06d}.parquet"
        tmp = self.folder / f".tmp-{uuid.uuid4().hex}.parquet"
        pq.write_table(pa.table(records), tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path

    def read(self, columns: list[str] | None = None) -> pa.Table | None:
        paths = self.shards()
        if not paths:
            return None
        return pa.concat_tables([pq.read_table(p, columns=columns) for p in paths])

    def iter_batches(self, columns: list[str] | None = None, batch_rows: int = 1024):
        """Stream rows shard by shard: memory stays flat in the dataset size."""
        for path in self.shards():
            for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=columns):
                yield batch

    def write_meta(self, meta: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".meta-{uuid.uuid4().hex}.json"
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True))
        os.replace(tmp, self.folder / "meta.json")

    def read_meta(self) -> dict | None:
        path = self.folder / "meta.json"
        return json.loads(path.read_text()) if path.exists() else None

    def clean_temporaries(self) -> None:
        """Remove temp files a killed writer left behind (never visible under a shard name)."""
        if self.folder.exists():
            for p in self.folder.glob(".tmp-*"):
                p.unlink(missing_ok=True)
