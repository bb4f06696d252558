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


def write_json_atomic(path: Path, payload: dict) -> None:
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}.{uuid.uuid4().hex}")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(tmp, path)
