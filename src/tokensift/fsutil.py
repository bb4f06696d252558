"""Atomic file-system moves: nothing partial is ever visible under a final name, whenever a process dies."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path


def remove_dir(folder: Path) -> None:
    """Rename away, then delete: a kill mid-deletion leaves only a hidden temporary folder."""
    folder = Path(folder)
    if folder.exists():
        doomed = folder.with_name(f".tmp-deleting-{uuid.uuid4().hex}")
        os.replace(folder, doomed)
        shutil.rmtree(doomed, ignore_errors=True)


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a fully written temporary folder to its final name, replacing what was there."""
    remove_dir(final)
    os.replace(tmp, final)


def write_text_atomic(path: Path, text: str) -> None:
    """Temporary file in the same folder, flushed and fsynced, then renamed: the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}.{uuid.uuid4().hex}")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, payload: dict) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n")
