"""File-system helpers: atomic moves (nothing partial is ever visible under a final name, whenever a process dies)
and the check every stage runs on its output folder before any work."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from tokensift.errors import UserError


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


MIN_FREE_BYTES = 256 << 20


def _check_free(what: str, path: Path, on: Path, min_free_bytes: int = MIN_FREE_BYTES) -> None:
    """`path` (named `what` in the message) would be written on the disk of the existing folder `on`."""
    free = shutil.disk_usage(on).free
    if free < min_free_bytes:
        needed = " for checkpoints and the final model" if what == "output_dir" else ""
        raise UserError(f"{what} {path} has only {free / 2**20:.0f} MiB free; at least {min_free_bytes / 2**20:.0f} "
                        f"MiB are needed{needed}")


def _not_a_file(path: Path, what: str) -> None:
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} exists and is a file, not a folder")


def check_output_dir(path: Path, create: bool = True, min_free_bytes: int = MIN_FREE_BYTES) -> None:
    """Fail before any work starts when the output folder cannot be written or its disk is nearly full."""
    path = Path(path)
    _not_a_file(path, "output_dir")
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create output_dir {path}: {exc.strerror}") from None
    probe = path / f".write-test-{uuid.uuid4().hex}"
    try:
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"output_dir {path} is not writable: {exc.strerror}") from None
    _check_free("output_dir", path, path, min_free_bytes)


def check_writable(path: str | Path, what: str = "output_dir") -> str:
    """Whether `path` (a folder, or with another `what` a file) could be created and written, without creating
    anything (the preflight's check_output_dir): the run's own error when not. Returns 'exists' or 'new'."""
    path = Path(path)
    if what == "output_dir":
        _not_a_file(path, what)
    probe = path if path.exists() else next((p for p in path.parents if p.exists()), Path("."))
    if not probe.is_dir() and probe != path:
        raise UserError(f"cannot create {what} {path}: {probe} is a file")
    folder = probe if probe.is_dir() else probe.parent
    if not os.access(folder, os.W_OK):
        raise UserError(f"{what} {path} is not writable: {probe} is read-only")
    _check_free(what, path, folder)
    return "exists" if path.exists() else "new"
