"""Read raw rows from wherever preference data lives: local files, `save_to_disk` folders, hub datasets, and rows
handed over in Python (`InMemoryRows`: a list of dicts or a `datasets.Dataset`, what the Python API takes).

This layer only decodes. It yields `(row_index, dict)` for each row, or `(row_index, RowDecodeError)` for a
row that cannot be decoded at all (invalid UTF-8, a truncated JSON line, a JSON value that is not an
object), so the loader can either raise or skip it and keep counting. Whole-file problems (missing file,
unknown extension, corrupt Parquet, unreadable .json) raise at once: there is no row to skip.

JSON Lines and CSV go through the standard library so row indices and error positions are exact, and are
read line by line: a large .jsonl is never held in memory. Row indices are 0-based and count records, not
file lines: blank lines in a .jsonl are not rows, and a CSV record may span several lines.

Longer than our ~400-line aim on purpose: one reader per container, all sharing the same row decoding and error
reporting, so that every source fails with the same file/row/field messages.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tokensift.errors import DataError, UserError

FILE_KINDS = ("jsonl", "json", "parquet", "csv")
SUPPORTED = ", ".join([f".{kind}" for kind in FILE_KINDS] + [f".{kind}.gz" for kind in FILE_KINDS])
# Hugging Face repo ids: "owner/name", letters, digits, '-', '_', '.'; no '..' (checked separately).
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
JSON_CONTAINER_KEYS = ("data", "rows")
RAW_LIMIT = 2000
PARQUET_BATCH_ROWS = 1024
SURROGATE = re.compile("[\udc80-\udcff]")  # undecodable bytes, as kept by errors="surrogateescape"


class RowDecodeError(DataError):
    """A row that could not be decoded; `raw` keeps its text (lossily decoded) for the rejects file."""

    def __init__(self, source: str, row: int, field: str | None, problem: str, raw: str):
        super().__init__(source, row, field, problem)
        self.raw = raw


def file_kind(path: str) -> tuple[str, bool]:
    """('jsonl' | 'json' | 'parquet' | 'csv', gzipped?) from the file name, or a UserError."""
    name = path.lower()
    gzipped = name.endswith(".gz")
    if gzipped:
        name = name[: -len(".gz")]
    for kind in FILE_KINDS:
        if name.endswith("." + kind):
            return kind, gzipped
    raise UserError(f"{path}: unsupported file type; supported: {SUPPORTED}, a folder written by "
                    "datasets' save_to_disk, or a Hugging Face hub dataset id (owner/name)")


def is_hub_id(source: str) -> bool:
    """True for 'owner/name' shapes that are not obviously a file path (no data-file extension)."""
    if not HUB_ID.match(source) or ".." in source:
        return False
    lower = source.lower()
    return not any(lower.endswith("." + kind) or lower.endswith(f".{kind}.gz") for kind in FILE_KINDS)


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def safe_name(source: str) -> str:
    """A short file-system-safe name for a source, for output names derived from it (rejects files, caches).

    A crafted id such as '../../etc' or '/abs/path' must never steer a write outside the intended folder:
    the result has no '/', no '..', does not start with '.', and is at most 80 characters.
    Local paths give their base name without data extensions; hub ids give 'owner__name'; rows in memory their name.
    """
    if isinstance(source, InMemoryRows):
        source = source.name
    text = source.strip().rstrip("/\\")
    if is_hub_id(text) and not os.path.exists(text):
        text = text.replace("/", "__")
    else:
        text = re.split(r"[/\\]", text)[-1]
        lower = text.lower()
        for suffix in [f".{kind}.gz" for kind in FILE_KINDS] + [f".{kind}" for kind in FILE_KINDS]:
            if lower.endswith(suffix):
                text = text[: -len(suffix)]
                break
    text = re.sub(r"[^A-Za-z0-9_.-]+", "_", text)
    text = re.sub(r"\.{2,}", ".", text).strip("._-")
    return text[:80] or "data"


class InMemoryRows:
    """Preference rows handed over in Python: a list (or tuple) of dicts, or a `datasets.Dataset`.

    It goes wherever a data path goes (configs' `data`, `eval_data`). `str()` names it in messages and run cards
    with a content fingerprint, so a stage that compares configs never mistakes changed rows for unchanged ones.
    """

    def __init__(self, rows, name: str = "data"):
        self.rows, self.name = rows, name
        self._fingerprint: str | None = None

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            own = getattr(self.rows, "_fingerprint", None)  # a datasets.Dataset knows its content
            digest = hashlib.sha256(f"{type(self.rows).__name__}:{len(self.rows)}:{own}".encode())
            if own is None:
                for row in self.rows:
                    digest.update(json.dumps(row, sort_keys=True, default=str).encode("utf-8", "surrogatepass"))
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def __str__(self) -> str:
        return f"{self.name} (in memory: {len(self.rows)} rows, sha256 {self.fingerprint()[:12]})"

    def __deepcopy__(self, memo):  # configs holding it are copied (dataclasses.asdict); the rows are not
        return self


def as_source(data, name: str = "data"):
    """A path stays a path (str); a list of dicts or a datasets.Dataset becomes InMemoryRows."""
    if data is None or isinstance(data, (str, InMemoryRows)):
        return data
    if isinstance(data, os.PathLike):
        return os.fspath(data)
    if isinstance(data, (list, tuple)) or hasattr(data, "column_names"):
        return InMemoryRows(data, name)
    raise UserError(f"{name} must be a path, a list of dicts or a datasets.Dataset, got {type(data).__name__}")


def iter_raw_rows(source, split: str = "train") -> Iterator[tuple[int, dict | DataError]]:
    """Yield (0-based row index, row dict or RowDecodeError) for every row of `source`.

    `split` picks the split of a DatasetDict folder or a hub dataset; plain files have a single split.
    """
    if isinstance(source, InMemoryRows):
        for row, record in enumerate(source.rows):
            record = dict(record) if hasattr(record, "keys") else record
            yield row, _as_row(str(source), row, record, json.dumps(record, default=str)[:RAW_LIMIT])
        return
    path = Path(source)
    if path.is_dir():
        yield from _dataset_rows(_load_from_disk(source, split))
        return
    if path.is_file():
        kind, gzipped = file_kind(source)
        if kind == "json":
            yield from _json_rows(source, gzipped, split)
        else:
            yield from {"jsonl": _jsonl_rows, "csv": _csv_rows, "parquet": _parquet_rows}[kind](source, gzipped)
        return
    if is_hub_id(source):
        yield from _dataset_rows(_load_hub(source, split))
        return
    raise UserError(f"{source}: no such file")


def fingerprint(meta: dict) -> str:
    return hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode()).hexdigest()


def source_fingerprint(source: str, split: str = "train") -> str:
    """sha256 hex identifying the data a source holds, for cache keys.

    Files: their bytes (streamed). save_to_disk folders: the Arrow files and state of the split.
    Hub datasets: (id, split, the dataset's own fingerprint), which changes when the hub revision does.
    """
    if isinstance(source, InMemoryRows):
        return source.fingerprint()
    digest = hashlib.sha256()
    path = Path(source)
    if path.is_file():
        file_kind(source)
        _hash_file(digest, path)
    elif path.is_dir():
        folder = _split_folder(path, split)
        for file in sorted(folder.iterdir()):
            if file.suffix == ".arrow" or file.name == "state.json":
                digest.update(file.name.encode() + b"\0")
                _hash_file(digest, file)
    elif is_hub_id(source):
        dataset = _load_hub(source, split)
        digest.update("\0".join([source, split, dataset._fingerprint]).encode())
    else:
        raise UserError(f"{source}: no such file")
    return digest.hexdigest()


def _hash_file(digest, path: Path) -> None:
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def _open_binary(path: str, gzipped: bool):
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def _raw_text(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace")
    return text if len(text) <= RAW_LIMIT else text[:RAW_LIMIT] + f"... [truncated, {len(text)} characters]"


def _decode_line(source: str, row: int, line: bytes) -> dict | RowDecodeError:
    """One JSON Lines record -> dict, or the error that says exactly why it is not one."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as error:
        bad = line[error.start:error.start + 1].hex()
        return RowDecodeError(source, row, None, f"invalid UTF-8 (byte 0x{bad} at byte {error.start} of the "
                              "line); re-save the file as UTF-8", _raw_text(line))
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        return RowDecodeError(source, row, None, f"truncated or invalid JSON: {error}", _raw_text(line))
    return _as_row(source, row, value, text)


def _as_row(source: str, row: int, value, text: str) -> dict | RowDecodeError:
    if isinstance(value, dict):
        return value
    kind = {list: "a JSON array", str: "a JSON string", bool: "a JSON boolean", type(None): "JSON null"}.get(
        type(value), "a JSON number")
    return RowDecodeError(source, row, None, f"row is {kind}, not an object with fields such as "
                          "prompt/chosen/rejected", _raw_text(text.encode("utf-8", errors="replace")))


def _jsonl_lines(handle) -> Iterator[tuple[int, bytes]]:
    """Non-blank lines with their record index; a UTF-8 byte-order mark on the first line is dropped."""
    row = 0
    for number, line in enumerate(handle):
        if number == 0 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        if not line.strip():
            continue
        yield row, line
        row += 1


def _jsonl_rows(source: str, gzipped: bool) -> Iterator[tuple[int, dict | DataError]]:
    with _open_binary(source, gzipped) as handle:
        try:
            for row, line in _jsonl_lines(handle):
                yield row, _decode_line(source, row, line.rstrip(b"\r\n"))
        except (EOFError, OSError) as error:
            if not gzipped:
                raise
            raise DataError(source, None, None, f"the gzip stream is damaged or truncated ({error})") from None


def _json_rows(source: str, gzipped: bool, split: str) -> Iterator[tuple[int, dict | DataError]]:
    """A JSON array of objects, an object holding one (under the split name, `data` or `rows`), or JSON Lines.

    `Dataset.to_json` writes JSON Lines into files named .json, so a .json whose first line is a complete
    object followed by more objects is read line by line like a .jsonl.
    """
    with _open_binary(source, gzipped) as handle:
        first = handle.readline()
        rest_start = handle.read(1)
        while rest_start and rest_start.isspace():
            rest_start = handle.read(1)
    head = first.lstrip(b"\xef\xbb\xbf").strip()
    if head.startswith(b"{") and rest_start:
        try:
            if isinstance(json.loads(head), dict):
                yield from _jsonl_rows(source, gzipped)
                return
        except (json.JSONDecodeError, UnicodeDecodeError):
            pass  # a pretty-printed object: read it whole below
    with _open_binary(source, gzipped) as handle:
        data = handle.read()
    try:
        value = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as error:
        raise DataError(source, None, None, f"invalid UTF-8 (byte at position {error.start}); re-save the "
                        "file as UTF-8") from None
    except json.JSONDecodeError as error:
        raise DataError(source, None, None, f"truncated or invalid JSON: {error}") from None
    rows = _json_container_rows(source, value, split)
    for row, item in enumerate(rows):
        if isinstance(item, dict):
            yield row, item
        else:
            yield row, _as_row(source, row, item, json.dumps(item, ensure_ascii=False))


def _json_container_rows(source: str, value, split: str) -> list:
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        for key in (split, *JSON_CONTAINER_KEYS):
            if isinstance(value.get(key), list):
                return value[key]
        # A single object is a one-row JSON Lines file.
        return [value]
    raise DataError(source, None, None, f"a .json file must hold an array of objects or an object with a "
                    f"'data' or 'rows' array, got {type(value).__name__}")


def _csv_rows(source: str, gzipped: bool) -> Iterator[tuple[int, dict | DataError]]:
    """CSV with a header row. Empty cells become None (CSV has no other way to write a missing value).

    Bytes that are not UTF-8 are kept as surrogates while parsing, so one bad cell fails only its row.
    """
    csv.field_size_limit(2**31 - 1)  # responses are often longer than the 128 KiB default
    opener = gzip.open if gzipped else open
    with opener(source, "rt", encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            return
        named = all(name.strip() and not SURROGATE.search(name) for name in header)
        if not named or len(set(header)) != len(header):
            raise DataError(source, None, None, "the CSV header must hold distinct, non-empty UTF-8 column names, "
                            f"got {_raw_text(','.join(header).encode(errors='surrogateescape'))}")
        for row, cells in enumerate(reader):
            yield row, _csv_record(source, row, header, cells)


def _csv_record(source: str, row: int, header: list[str], cells: list[str]) -> dict | RowDecodeError:
    def raw() -> str:
        return _raw_text(",".join(cells).encode("utf-8", errors="surrogateescape"))

    if len(cells) != len(header):
        return RowDecodeError(source, row, None, f"row has {len(cells)} cells but the header has {len(header)} "
                              "columns", raw())
    record: dict = {}
    for name, cell in zip(header, cells):
        bad = SURROGATE.search(cell)
        if bad:
            return RowDecodeError(source, row, name, f"invalid UTF-8 (byte 0x{ord(bad.group()) - 0xDC00:02x} at "
                                  f"character {bad.start()}); re-save the file as UTF-8", raw())
        try:
            record[name] = _csv_cell(cell)
        except json.JSONDecodeError as error:
            return RowDecodeError(source, row, name, "cell looks like a JSON message list but is truncated or "
                                  f"invalid JSON: {error}", raw())
    return record


def _csv_cell(cell: str):
    """Parse a cell that holds a JSON list of objects (a serialised message list); keep other text as is.

    Only lists of objects are parsed: a reply that happens to be '[1, 2, 3]' stays text. A cell that names
    a 'role' but is not valid JSON is an error rather than being read as a literal prompt.
    """
    if cell == "":
        return None
    text = cell.strip()
    if not (text.startswith("[") and text.endswith("]")):
        return cell
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        if '"role"' in text:
            raise
        return cell
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        return value
    return cell


def _parquet_rows(source: str, gzipped: bool) -> Iterator[tuple[int, dict | DataError]]:
    """Parquet needs random access, so a .parquet.gz is first decompressed (streamed) to a temporary file."""
    import pyarrow.parquet as parquet

    with tempfile.TemporaryDirectory(prefix="tokensift-") as folder:
        path = source
        if gzipped:
            path = os.path.join(folder, "data.parquet")
            try:
                with gzip.open(source, "rb") as compressed, open(path, "wb") as plain:
                    shutil.copyfileobj(compressed, plain, 1 << 20)
            except (EOFError, OSError) as error:
                raise DataError(source, None, None, f"the gzip stream is damaged or truncated ({error})") from None
        try:
            parquet_file = parquet.ParquetFile(path)
        except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ... for a damaged file
            raise DataError(source, None, None, f"not a readable Parquet file ({error})") from None
        row = 0
        for batch in parquet_file.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            for record in batch.to_pylist():
                yield row, record
                row += 1


def _split_folder(path: Path, split: str) -> Path:
    if (path / "dataset_dict.json").is_file():
        splits = json.loads((path / "dataset_dict.json").read_text()).get("splits", [])
        if split not in splits:
            raise UserError(f"{path}: no split '{split}'; this DatasetDict has: {', '.join(splits)}")
        return path / split
    if (path / "state.json").is_file():
        return path
    raise UserError(f"{path}: a folder, but not one written by datasets' save_to_disk (no state.json or "
                    "dataset_dict.json); pass a data file instead")


def _load_from_disk(source: str, split: str):
    import datasets

    folder = _split_folder(Path(source), split)
    return datasets.load_from_disk(str(folder))


def _load_hub(source: str, split: str):
    """`datasets.load_dataset(id, split=split)`, with failures turned into one clear UserError.

    Offline (HF_HUB_OFFLINE=1) only the local hub cache is consulted, which fails at once when the dataset
    was never downloaded; the hub libraries read the variable at import, so if they were imported before
    it was set we refuse rather than risk waiting on network timeouts. Online, one quick metadata request
    comes first: without it, a machine with no network spends ~25 s in `load_dataset`'s retries.
    """
    advice = "pass a local file (" + SUPPORTED + ") or a save_to_disk folder instead"
    where = f"{source}: no such local file or folder, and"
    if hub_offline():
        import huggingface_hub.constants

        if not huggingface_hub.constants.HF_HUB_OFFLINE:
            raise UserError(f"{where} the Hugging Face hub could not be reached (HF_HUB_OFFLINE is set); {advice}")
    else:
        _probe_hub(source, where, advice)
    import datasets

    try:
        return datasets.load_dataset(source, split=split)
    except Exception as error:  # hub, network, cache and split errors all mean: cannot use this id
        if hub_offline():
            raise UserError(f"{where} the Hugging Face hub could not be reached (offline: HF_HUB_OFFLINE=1) and "
                            f"the local cache cannot serve it ({type(error).__name__}: {error}); {advice}") from None
        raise UserError(f"{where} loading it as a Hugging Face hub dataset failed ({type(error).__name__}: "
                        f"{error}); {advice}") from None


def _probe_hub(source: str, where: str, advice: str) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        HfApi().dataset_info(source, timeout=10)
    except RepositoryNotFoundError:
        raise UserError(f"{where} the Hugging Face hub has no dataset with this id (or it is private and no "
                        f"token is set); {advice}") from None
    except Exception as error:  # DNS, connection, proxy, TLS, HTTP errors: the hub cannot be used now
        raise UserError(f"{where} the Hugging Face hub could not be reached ({type(error).__name__}: {error}); "
                        f"{advice}, or set HF_HUB_OFFLINE=1 to use a copy already in the local cache") from None


def _dataset_rows(dataset) -> Iterator[tuple[int, dict]]:
    for row, record in enumerate(dataset):
        yield row, dict(record)
