"""Shared pieces of the reliability suite: the real CLI in-process, tiny model folders, run-folder checks, and
the count lines printed at the end of the pytest run.

Not a test module (no `test_` prefix): the suite's modules import it by name, as they import `conftest`.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from conftest import CORPUS, build_model, build_tokenizer  # noqa: E402

# ------------------------------------------------------------------------------------------------ summary lines
_LINES: list[str] = []


class _Summary:
    """A pytest plugin object: prints the suite's count lines in the terminal summary."""

    def pytest_terminal_summary(self, terminalreporter):
        if _LINES:
            terminalreporter.section("reliability")
            for line in _LINES:
                terminalreporter.write_line(line)


def report(config, line: str) -> None:
    """Print `line` at the end of the run (registered once per session)."""
    if not config.pluginmanager.has_plugin("tokensift-reliability-summary"):
        config.pluginmanager.register(_Summary(), "tokensift-reliability-summary")
    _LINES.append(line)


# ------------------------------------------------------------------------------------------------ the CLI
def cli_main(argv: list[str]) -> int:
    """`tokensift.cli.main(argv)`: the function behind the `tokensift` console script."""
    from tokensift import cli

    return cli.main([str(a) for a in argv])


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of one in-process CLI call; argparse's exits count as statuses."""
    capsys.readouterr()
    try:
        code = cli_main([str(a) for a in argv])
    except SystemExit as exc:  # argparse: usage errors exit 2 after printing `usage: ... error: ...`
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------------------------------ models
def save_tiny_model(folder: Path, tokenizer=None, seed: int = 0, layers: int = 2, hidden: int = 32) -> Path:
    tokenizer = tokenizer or build_tokenizer()
    build_model(len(tokenizer), seed=seed, layers=layers, hidden=hidden).save_pretrained(folder,
                                                                                          safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def other_tokenizer():
    """A tokenizer with another vocabulary (trained on upper-case text): not interchangeable with the default."""
    return build_tokenizer(vocab_size=300, seed_text=[s.upper() for s in CORPUS])


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ------------------------------------------------------------------------------------------------ folder checks
CHECKPOINT_FILES = {"model.safetensors", "optimizer.pt", "scheduler.pt", "rng.pt", "state.json"}


def is_hidden(path: Path, root: Path) -> bool:
    """Temporary names (".tmp-...", ".meta-...", ".name.uuid.tmp") and anything inside a hidden folder."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def check_run_folder(root: Path) -> dict:
    """Open every file visible under a final name and fail on anything partial. Returns counts per kind.

    Parquet shards must read; JSON must parse; every JSON Lines line must parse; safetensors must load;
    `torch.load(weights_only=True)` files must load; checkpoint folders must hold exactly their five files and a
    state.json whose step matches the folder name; final model folders must hold weights, config and run card;
    SQLite files must pass `PRAGMA integrity_check`; PNG files must end with their IEND chunk.
    """
    import pyarrow.parquet as pq
    import torch
    from safetensors.torch import load_file

    counts: dict[str, int] = {}

    def seen(kind: str) -> None:
        counts[kind] = counts.get(kind, 0) + 1

    if not root.exists():
        return counts
    for path in sorted(root.rglob("*")):
        if is_hidden(path, root):
            continue
        if path.is_dir():
            if path.name.startswith("checkpoint-"):
                names = {p.name for p in path.iterdir()}
                assert names == CHECKPOINT_FILES, f"{path}: incomplete checkpoint {sorted(names)}"
                step = json.loads((path / "state.json").read_text())["step"]
                assert path.name == f"checkpoint-{step:08d}", (path, step)
                seen("checkpoint")
            elif path.name == "final":
                names = {p.name for p in path.iterdir()}
                assert {"model.safetensors", "config.json", "run_card.json"} <= names, f"{path}: {sorted(names)}"
                seen("final model")
            continue
        name = path.name
        try:
            if name.endswith(".parquet"):
                pq.read_table(path)
                seen("parquet")
            elif name.endswith(".jsonl"):
                for line in path.read_text(encoding="utf-8").splitlines():
                    if line.strip():
                        json.loads(line)
                seen("jsonl")
            elif name.endswith(".json"):
                json.loads(path.read_text(encoding="utf-8"))
                seen("json")
            elif name.endswith(".safetensors"):
                load_file(str(path))
                seen("safetensors")
            elif name.endswith(".pt"):
                torch.load(path, weights_only=True)
                seen("pt")
            elif name.endswith(".sqlite"):
                with sqlite3.connect(str(path)) as db:
                    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
                seen("sqlite")
            elif name.endswith(".png"):
                data = path.read_bytes()
                assert data.startswith(b"\x89PNG") and b"IEND" in data[-12:], "truncated PNG"
                seen("png")
        except AssertionError:
            raise
        except Exception as exc:  # any failure to read a final-named file is a partial file
            raise AssertionError(f"{path} is not a whole file: {type(exc).__name__}: {exc}") from exc
    return counts
