"""Prompt sets: text files, prompt rows with reference answers, preference sources, bad rows."""

from __future__ import annotations

import json

import pytest

from conftest import train_config, write_pairs
from tokensift.errors import DataError, UserError
from tokensift.eval.prompts import load_prompt_set


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_text_file_one_prompt_per_line(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("first prompt\n\n  second prompt  \nthird\n")
    prompts = load_prompt_set(str(path), limit=2)
    assert prompts.kind == "text" and prompts.rows == [0, 2] and prompts.references is None
    assert prompts.prompts[1] == [{"role": "user", "content": "second prompt"}]
    with pytest.raises(UserError, match="reference_column"):
        load_prompt_set(str(path), reference_column="answer")


def test_prompt_rows_with_reference_answers_and_bad_rows(tmp_path):
    path = write_jsonl(tmp_path / "prompts.jsonl", [
        {"prompt": "plain text", "answer": "ref one"},
        {"prompt": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
         "answer": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ref two"}]},
        {"question": "no prompt column", "answer": "x"},
        {"prompt": "no answer"},
    ])
    with pytest.raises(DataError) as info:
        load_prompt_set(str(path), reference_column="answer")
    assert info.value.row == 2 and info.value.field == "prompt"
    prompts = load_prompt_set(str(path), reference_column="answer", skip_invalid=True)
    assert prompts.kind == "prompts" and prompts.rows == [0, 1]
    assert prompts.references == ["ref one", "ref two"]
    assert prompts.prompts[1][0] == {"role": "system", "content": "be brief"}
    assert [(s["row"], s["field"]) for s in prompts.skipped] == [(2, "prompt"), (3, "answer")]
    assert any("2 bad rows skipped" in note for note in prompts.notes)


def test_preference_source_gives_the_prompts_training_held_aside(tmp_path, tokenizer, model_dir):
    from tokensift.train.data import load_training_data as prepare_data

    data = write_pairs(tmp_path / "pairs.jsonl", n=20, seed=1)
    trained = prepare_data(train_config(tmp_path, model_dir, data, eval_fraction=0.25, seed=5), tokenizer)
    prompts = load_prompt_set(str(data), reference_column="chosen", eval_fraction=0.25, seed=5)
    assert prompts.kind == "preferences"
    assert prompts.rows == [p.row for p in trained.eval.pairs]
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    assert prompts.references == [rows[r]["chosen"] for r in prompts.rows]
    assert prompts.prompts[0] == [{"role": "user", "content": rows[prompts.rows[0]]["prompt"]}]


def test_dialogue_preference_rows_and_custom_columns(tmp_path):
    hh = write_jsonl(tmp_path / "hh.jsonl", [
        {"chosen": "\n\nHuman: hello?\n\nAssistant: hi there", "rejected": "\n\nHuman: hello?\n\nAssistant: go away"}])
    prompts = load_prompt_set(str(hh), reference_column="rejected")
    assert prompts.prompts == [[{"role": "user", "content": "hello?"}]] and prompts.references == ["go away"]
    custom = write_jsonl(tmp_path / "custom.jsonl", [{"q": "why?", "good": "because", "bad": "no", "gold": "since"}])
    prompts = load_prompt_set(str(custom), reference_column="gold", columns="prompt=q,chosen=good,rejected=bad")
    assert prompts.kind == "preferences" and prompts.references == ["since"]
