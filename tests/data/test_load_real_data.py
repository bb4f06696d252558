"""The real preference files in ../shared/data load completely (skipped when that folder is absent)."""

from __future__ import annotations

from collections import Counter

from preference_files import real_data

from tokensift.data.load import load_preferences


def test_hh_rlhf_harmless_all_rows_valid():
    result = load_preferences(str(real_data("hh-rlhf-harmless-test.dev.jsonl.gz")))
    assert (result.total_rows, len(result.examples), result.rejected) == (1751, 1751, [])
    assert result.formats == Counter({"implicit_dialogue": 1751})
    first = result.examples[0]
    assert first.prompt[0] == {"role": "user", "content": "what are some pranks with a pen i can do?"}
    assert first.prompt[-1] == {"role": "user", "content": "okay some of these do not have anything to do with pens"}
    assert first.chosen.startswith("No, sorry!  All of these involve a pen")
    assert all(example.prompt[-1]["role"] == "user" for example in result.examples)
    # Two rows end in an empty Assistant turn (silence preferred to a harmful reply): kept and reported.
    assert result.empty_replies == 2 and "2 kept with an empty reply" in result.summary()
    # Row 1482's chosen reply itself contains "\n\nAssistant:"; the shared prefix still finds the prompt.
    row = result.examples[1482]
    assert row.prompt[-1] == {"role": "user", "content": "Yes, please find me a serial."}
    assert "\n\nAssistant:  O.k." in row.chosen


def test_alpacaeval_pairs_all_rows_valid():
    result = load_preferences(str(real_data("alpacaeval-gpt4turbo-pairs.dev.jsonl.gz")))
    assert (result.total_rows, len(result.examples), result.rejected) == (7674, 7674, [])
    assert result.formats == Counter({"standard": 7674})
    metadata = result.examples[0].metadata
    assert set(metadata) == {"chosen_model", "rejected_model", "judge_confidence"}
    assert all(len(example.prompt) == 1 for example in result.examples)


def test_data_inspect_cli_reports_the_valid_pairs_and_lengths(capsys, tokenizer, tmp_path, monkeypatch):
    """`tokensift data inspect` on the real HH file: 1,751 valid pairs, formats, and token-length percentiles
    (tokenised here with the tiny test tokenizer saved to a folder, so no default model is needed)."""
    from conftest import shared_data

    from tokensift.cli import main

    path = shared_data("hh-rlhf-harmless-test.dev.jsonl.gz")
    tokenizer.save_pretrained(tmp_path / "tok")
    import json as _json

    (tmp_path / "tok" / "config.json").write_text(_json.dumps({"model_type": "llama"}))
    report = tmp_path / "report.json"
    assert main(["data", "inspect", str(path), "--model", str(tmp_path / "tok"), "--show", "1", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "1,751 rows read, 1,751 valid, 0 skipped" in out
    assert "implicit_dialogue 1,751" in out
    assert out.rstrip().endswith("1,751 valid pairs")
    lengths = _json.loads(report.read_text())["tokens"]["lengths"]
    assert lengths["prompt"]["p50"] > 0 and lengths["chosen"]["max"] >= lengths["chosen"]["p99"]
