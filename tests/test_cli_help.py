"""Every `--help` of the command line works, fast, and every key=value example it shows is a real setting.

Issue 23: `tokensift train --help` crashed (a literal % in a help string), the help of every stage showed
`beta=0.05 oracle.epochs=2` (not a key of most stages) and `sepo --help` named `sft.enabled` (the key is
sft_enabled). These tests walk the whole parser tree, so a new stage or option is covered without listing it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import subprocess
import sys

import pytest

from tokensift.cli import STAGES, build_parser, main
from tokensift.config import coerce, section_of, unwrap_optional


def subcommands(parser: argparse.ArgumentParser, path=()):
    """(argv path, parser) of every command and sub-command, depth first."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from subcommands(sub, (*path, name))


ALL = list(subcommands(build_parser("*")))
PATHS = [path for path, _ in ALL]


def test_the_tree_holds_every_stage_and_its_actions():
    assert {path[0] for path in PATHS if path} == set(STAGES)
    for expected in [("tso", "run"), ("tso", "review"), ("eval", "winrate"), ("data", "inspect"), ("train",)]:
        assert expected in PATHS


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "tokensift")
def test_every_help_prints_and_exits_0(path, capsys):
    with pytest.raises(SystemExit) as stop:
        main([*path, "--help"])
    out, err = capsys.readouterr()
    assert stop.value.code == 0, err
    assert out.startswith("usage: tokensift") and not err
    if path and path[0] not in ("data", "tso", "eval") or len(path) == 2 and path[0] != "data":
        assert "--check" in out and "key=null unsets" in out  # the preflight and how to unset a key


EXAMPLE = re.compile(r"(?<![\w'./-])([a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*)=([^\s,;)'\]]+(?:,[^\s,;)'\]=]+)*)")


def check_example(cls, key: str, value: str) -> None:
    """`key=value` parses against `cls` as `tokensift STAGE key=value` would: a field (or TRL's name for one), a
    section's key, and a value the field takes. Placeholders in capitals (DIR, MODEL, N) stand for any value."""
    head, _, rest = key.partition(".")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    aliases = getattr(cls, "KEY_ALIASES", {})
    if head not in fields:
        assert isinstance(aliases.get(head), tuple), f"'{key}' is not a key of {cls.__name__}"
        return
    if rest:
        section = section_of(cls, head)
        if section is None:
            import typing

            kind = unwrap_optional(typing.get_type_hints(cls)[head])[0]
            assert kind is dict or typing.get_origin(kind) is dict, f"{key}: {head} has no keys"
            return  # a free-form mapping (judge.*)
        if head == "grid":  # a list of values of the swept key; k is the sweep's name for k_chosen and k_rejected
            from tokensift.sweep import ALIASES

            value, rest = value.split(",")[0], ALIASES.get(rest, (rest,))[0]
        check_example(section, rest, value)
        return
    if re.fullmatch(r"[A-Z_]+", value) or value == "...":
        return
    import typing

    coerce(value, typing.get_type_hints(cls)[head], key)


@pytest.mark.parametrize("path", [p for p in PATHS if p], ids=" ".join)
def test_every_key_value_example_in_a_help_text_is_a_setting(path):
    parser = dict(ALL)[path]
    cls = getattr(parser, "config_class", None)
    if cls is None:
        pytest.skip(f"{' '.join(path)} has no config of its own (its actions do)")
    texts = [a.help or "" for a in parser._actions] + [parser.description or ""]
    found = [(k, v) for text in texts for k, v in EXAMPLE.findall(text.replace("%%", "%"))
             if k not in ("key", "prompt", "chosen", "rejected")]  # columns= mappings are values, not keys
    for key, value in found:
        check_example(cls, key, value.rstrip("."))  # a sentence's full stop is not part of the value
    if getattr(cls, "CLI_EXAMPLE", None):
        for item in cls.CLI_EXAMPLE.split():
            check_example(cls, *item.split("=", 1))


def test_the_old_examples_are_refused_by_the_check():
    """The check can fail: the examples the issue found are not settings."""
    from tokensift.sepo.pipeline import SePOConfig
    from tokensift.train.config import TrainConfig

    with pytest.raises(AssertionError, match="oracle"):
        check_example(TrainConfig, "oracle.epochs", "2")
    with pytest.raises(AssertionError, match="'enabled' is not a key of TrainConfig"):
        check_example(SePOConfig, "sft.enabled", "true")
    from tokensift.errors import UserError

    with pytest.raises(UserError, match="whole number"):
        check_example(TrainConfig, "batch_size", "eight")


STARTUP = """
import sys, time
started = time.perf_counter()
from tokensift.cli import main
try:
    code = main({argv!r})
except SystemExit as stop:
    code = stop.code
heavy = sorted(m for m in ("torch", "transformers", "accelerate", "pyarrow", "datasets") if m in sys.modules)
print("RESULT" + __import__("json").dumps({{"code": code, "heavy": heavy, "seconds": time.perf_counter() - started}}))
"""


@pytest.mark.parametrize("argv", [
    [], ["--help"], ["train", "--help"], ["dpo", "--help"], ["sepo", "--help"], ["show", "--help"],
    ["tso", "run", "--help"], ["eval", "winrate", "--help"], ["data", "inspect", "--help"],
    ["dpo", "per_device_train_batch_size=8", "data=x.jsonl", "oracle.epochs=2"],  # an argument error
    ["train", "--no-such-flag"],
], ids=lambda a: " ".join(a) or "no arguments")
def test_help_and_argument_errors_come_back_before_any_model_library_loads(argv):
    """The start-up budget (issue 23: under 1.5 s here, from 7-9 s) holds because nothing heavy is imported before
    the arguments are parsed; timing itself lives in benchmarks/cli_startup.py, not in a test."""
    done = subprocess.run([sys.executable, "-c", STARTUP.format(argv=argv)], capture_output=True, text=True,
                          timeout=120, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT"))
    result = json.loads(line[len("RESULT"):])
    assert result["heavy"] == [], (result, done.stderr[-2000:])
    assert result["code"] in (0, 2), (result, done.stderr[-2000:])
    assert "Traceback" not in done.stderr
