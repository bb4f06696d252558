"""Every input container round-trips to the same exact examples."""

from __future__ import annotations

import gzip
import json

import pytest
from preference_files import write_rows

from tokensift.data.io import file_kind, iter_raw_rows, source_fingerprint
from tokensift.data.load import load_preferences
from tokensift.errors import DataError, UserError

ROWS = [
    {"prompt": "What is 2+2?", "chosen": "4", "rejected": "5", "judge": 0.9},
    {"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "Seven.", "judge": 0.7},
]
EXPECTED_PROMPTS = [[{"role": "user", "content": "What is 2+2?"}], [{"role": "user", "content": "Name a colour."}]]

CONTAINERS = ["data.jsonl", "data.json", "data.csv", "data.parquet",
              "data.jsonl.gz", "data.json.gz", "data.csv.gz", "data.parquet.gz"]


def check(result):
    assert [example.prompt for example in result.examples] == EXPECTED_PROMPTS
    assert [(e.chosen, e.rejected, e.row) for e in result.examples] == [("4", "5", 0), ("Blue.", "Seven.", 1)]
    assert [e.metadata for e in result.examples] == [{"judge": 0.9}, {"judge": 0.7}]
    assert result.total_rows == 2 and result.formats == {"standard": 2} and not result.rejected


@pytest.mark.parametrize("name", CONTAINERS)
def test_each_file_container(tmp_path, name):
    path = write_rows(tmp_path / name, ROWS)
    result = load_preferences(str(path))
    if name.startswith("data.csv"):
        # CSV has no numbers: cells are text, kept as is in metadata.
        for example in result.examples:
            example.metadata["judge"] = float(example.metadata["judge"])
    check(result)


@pytest.mark.parametrize("name", CONTAINERS)
def test_conversational_rows_in_each_container(tmp_path, name):
    row = {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
           "chosen": [{"role": "assistant", "content": "Hello!"}],
           "rejected": [{"role": "assistant", "content": "Go away."}]}
    path = write_rows(tmp_path / name, [row])
    (example,) = load_preferences(str(path)).examples
    assert example.prompt == row["prompt"]
    assert (example.chosen, example.rejected) == ("Hello!", "Go away.")


def test_json_container_objects(tmp_path):
    for key in ("data", "rows", "train"):
        path = tmp_path / f"{key}.json"
        path.write_text(json.dumps({key: ROWS, "version": 1}, indent=2))
        check(load_preferences(str(path)))
    path = tmp_path / "splits.json"
    path.write_text(json.dumps({"train": ROWS[:1], "test": ROWS}))
    check(load_preferences(str(path), split="test"))


def test_json_file_holding_json_lines(tmp_path):
    # datasets' Dataset.to_json writes JSON Lines into a .json file.
    path = tmp_path / "lines.json"
    path.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    check(load_preferences(str(path)))


def test_jsonl_blank_lines_and_bom_are_not_rows(tmp_path):
    path = tmp_path / "blank.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(ROWS[0]).encode() + b"\r\n\n  \n" + json.dumps(ROWS[1]).encode())
    check(load_preferences(str(path)))


def test_csv_json_cells_only_parsed_when_message_lists(tmp_path):
    path = tmp_path / "cells.csv"
    path.write_text('prompt,chosen,rejected,tags\n'
                    '"[{""role"": ""user"", ""content"": ""Count""}]","[1, 2, 3]","[3, 2, 1]","[""a""]"\n')
    (example,) = load_preferences(str(path)).examples
    assert example.prompt == [{"role": "user", "content": "Count"}]
    assert (example.chosen, example.rejected) == ("[1, 2, 3]", "[3, 2, 1]")
    assert example.metadata == {"tags": '["a"]'}


def test_csv_long_cells(tmp_path):
    long_reply = "word " * 60_000  # beyond the csv module's default 128 KiB field limit
    path = write_rows(tmp_path / "long.csv", [{"prompt": "p", "chosen": long_reply, "rejected": "short"}])
    assert load_preferences(str(path)).examples[0].chosen == long_reply


def test_save_to_disk_dataset_and_dataset_dict(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.disable_progress_bars()
    dataset = datasets.Dataset.from_list(ROWS)
    dataset.save_to_disk(str(tmp_path / "single"))
    check(load_preferences(str(tmp_path / "single")))

    other = datasets.Dataset.from_list([{"prompt": "Q", "chosen": "good", "rejected": "bad", "judge": 0.1}])
    datasets.DatasetDict({"train": dataset, "test": other}).save_to_disk(str(tmp_path / "dict"))
    check(load_preferences(str(tmp_path / "dict")))
    (example,) = load_preferences(str(tmp_path / "dict"), split="test").examples
    assert (example.prompt, example.chosen, example.metadata) == ([{"role": "user", "content": "Q"}], "good",
                                                                   {"judge": 0.1})
    with pytest.raises(UserError, match="no split 'validation'; this DatasetDict has: train, test"):
        load_preferences(str(tmp_path / "dict"), split="validation")
    assert source_fingerprint(str(tmp_path / "dict"), "train") != source_fingerprint(str(tmp_path / "dict"), "test")


def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(UserError, match=r"nope\.jsonl: no such file"):
        load_preferences(str(tmp_path / "nope.jsonl"))
    with pytest.raises(UserError, match="no such file"):
        load_preferences("data/train.jsonl")  # owner/name shape, but a data file name: not a hub id
    path = tmp_path / "data.xlsx"
    path.write_text("x")
    with pytest.raises(UserError, match=r"unsupported file type; supported: \.jsonl, \.json, \.parquet, \.csv"):
        load_preferences(str(path))
    assert file_kind("a/b.JSONL.GZ") == ("jsonl", True)


def test_folder_that_is_not_a_dataset(tmp_path):
    with pytest.raises(UserError, match="not one written by datasets' save_to_disk"):
        load_preferences(str(tmp_path))


def test_whole_file_damage(tmp_path):
    broken_json = tmp_path / "broken.json"
    broken_json.write_text('[{"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": ')
    with pytest.raises(DataError, match=r"broken\.json: truncated or invalid JSON: Expecting value"):
        load_preferences(str(broken_json))
    parquet = tmp_path / "broken.parquet"
    parquet.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match=r"broken\.parquet: not a readable Parquet file"):
        load_preferences(str(parquet))
    gz = tmp_path / "cut.jsonl.gz"
    gz.write_bytes(gzip.compress(b"".join(json.dumps(row).encode() + b"\n" for row in ROWS * 50))[:-30])
    with pytest.raises(DataError, match=r"cut\.jsonl\.gz: the gzip stream is damaged or truncated"):
        load_preferences(str(gz))


def test_jsonl_is_streamed(tmp_path):
    path = write_rows(tmp_path / "big.jsonl", ROWS)
    rows = iter_raw_rows(str(path))
    assert next(rows) == (0, ROWS[0])  # a generator: nothing beyond the first line needs to be read


def test_file_fingerprint_follows_bytes(tmp_path):
    path = write_rows(tmp_path / "a.jsonl", ROWS)
    first = source_fingerprint(str(path))
    assert len(first) == 64 and first == source_fingerprint(str(path))
    write_rows(path, ROWS[:1])
    assert source_fingerprint(str(path)) != first
