"""Skip mode, the rejects file, streaming, limits, hub ids offline, safe names."""

from __future__ import annotations

import json
import os
import time

import pytest

from tokensift.data.io import safe_name, source_fingerprint
from tokensift.data.load import LoadResult, iter_preferences, load_preferences
from tokensift.errors import DataError, UserError

GOOD = [{"prompt": f"Q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(4)]
LINES = [
    json.dumps(GOOD[0]),
    '{"prompt": "Q", "chosen": "a", "rejected": "a"}',       # row 1: identical
    json.dumps(GOOD[1]),
    '{"prompt": "Q", "chosen": "a"',                          # row 3: truncated
    json.dumps({"prompt": "Q", "rejected": "b", "x": "y" * 5000}),  # row 4: missing chosen, long raw
    json.dumps(GOOD[2]),
    '{"prompt": "Q", "chosen": "", "rejected": "b"}',        # row 6: empty reply
    json.dumps(GOOD[3]),
]


@pytest.fixture
def mixed_file(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(LINES) + "\n")
    return path


def test_default_raises_first_bad_row(mixed_file):
    with pytest.raises(DataError, match=r"mixed\.jsonl, row 1, field 'rejected': chosen and rejected replies are "
                                        "identical"):
        load_preferences(str(mixed_file))


def test_skip_mode_keeps_good_rows_and_writes_rejects(mixed_file, tmp_path):
    rejects = tmp_path / "out" / "bad.jsonl"
    rejects.parent.mkdir()
    result = load_preferences(str(mixed_file), skip_invalid=True, rejects_path=str(rejects))
    assert [(e.row, e.chosen) for e in result.examples] == [(0, "good 0"), (2, "good 1"), (5, "good 2"),
                                                            (7, "good 3")]
    assert (result.total_rows, result.valid, len(result.rejected)) == (8, 4, 4)
    assert result.rejects_path == str(rejects)
    lines = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [(line["row"], line["field"]) for line in lines] == [(1, "rejected"), (3, None), (4, "chosen"),
                                                                (6, "chosen")]
    assert "identical" in lines[0]["reason"]
    assert lines[1]["reason"].startswith("truncated or invalid JSON")
    assert lines[1]["raw"] == LINES[3]
    assert lines[2]["reason"].startswith("missing field 'chosen'")
    assert len(lines[2]["raw"]) < 2100 and lines[2]["raw"].endswith("characters]")  # truncated, and says so
    assert "empty or whitespace-only" in lines[3]["reason"]
    assert json.loads(lines[0]["raw"]) == json.loads(LINES[1])
    summary = result.summary()
    assert "8 rows read, 4 valid, 4 skipped" in summary
    assert "formats: standard 4" in summary
    assert "1 x truncated or invalid JSON" in summary and "1 x chosen: missing field 'chosen'" in summary
    assert f"rejected rows written to {rejects}" in summary


def test_default_rejects_path_is_in_cwd(mixed_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = load_preferences(str(mixed_file), skip_invalid=True)
    assert result.rejects_path == os.path.join(str(tmp_path), "mixed.rejects.jsonl")
    assert len((tmp_path / "mixed.rejects.jsonl").read_text().splitlines()) == 4


def test_unwritable_rejects_path(mixed_file, tmp_path):
    with pytest.raises(UserError, match="cannot write the rejects file .*missing/r.jsonl: No such file or directory"):
        load_preferences(str(mixed_file), skip_invalid=True, rejects_path=str(tmp_path / "missing" / "r.jsonl"))


def test_no_rejects_file_when_all_rows_are_good(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "good.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in GOOD))
    result = load_preferences(str(path), skip_invalid=True)
    assert result.rejects_path is None and not (tmp_path / "good.rejects.jsonl").exists()


def test_iter_preferences_streams_and_counts(mixed_file, tmp_path):
    counts = LoadResult(source=str(mixed_file))
    stream = iter_preferences(str(mixed_file), skip_invalid=True, rejects_path=str(tmp_path / "r.jsonl"),
                              result=counts)
    assert next(stream).row == 0 and counts.total_rows == 1
    rest = list(stream)
    assert [e.row for e in rest] == [2, 5, 7]
    assert (counts.total_rows, len(counts.rejected), counts.examples) == (8, 4, [])


def test_limit_reads_only_the_first_rows(mixed_file, tmp_path):
    result = load_preferences(str(mixed_file), skip_invalid=True, limit=3, rejects_path=str(tmp_path / "r.jsonl"))
    assert (result.total_rows, [e.row for e in result.examples], len(result.rejected)) == (3, [0, 2], 1)
    assert load_preferences(str(mixed_file), limit=1).total_rows == 1


def test_columns_as_text(tmp_path):
    path = tmp_path / "custom.jsonl"
    path.write_text(json.dumps({"instruction": "Q", "good": "yes", "bad": "no", "lang": "en"}))
    (example,) = load_preferences(str(path), columns="prompt=instruction,chosen=good,rejected=bad").examples
    assert (example.prompt, example.chosen, example.rejected, example.metadata) == (
        [{"role": "user", "content": "Q"}], "yes", "no", {"lang": "en"})
    with pytest.raises(UserError, match="did you mean 'chosen'"):
        load_preferences(str(path), columns={"chosn": "good"})


def test_offline_hub_id_fails_fast_and_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(UserError) as info:
        load_preferences("tokensift-tests/no-such-dataset")
    message = str(info.value)
    assert message.startswith("tokensift-tests/no-such-dataset: no such local file or folder, and the Hugging "
                              "Face hub could not be reached (offline: HF_HUB_OFFLINE=1)")
    assert "pass a local file" in message
    with pytest.raises(UserError, match="the Hugging Face hub could not be reached"):
        source_fingerprint("tokensift-tests/no-such-dataset")
    assert time.monotonic() - started < 10


def test_unreachable_hub_fails_fast_without_retries(monkeypatch):
    import huggingface_hub

    def no_network(self, repo_id, **kwargs):
        raise OSError("[Errno -2] Name or service not known")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", no_network)
    with pytest.raises(UserError) as info:
        load_preferences("tokensift-tests/no-such-dataset")
    message = str(info.value)
    assert "hub could not be reached (OSError: [Errno -2] Name or service not known)" in message
    assert "set HF_HUB_OFFLINE=1" in message


@pytest.mark.parametrize("source, expected", [
    ("/data/hh-rlhf-harmless-test.dev.jsonl.gz", "hh-rlhf-harmless-test.dev"),
    ("Anthropic/hh-rlhf", "Anthropic__hh-rlhf"),
    ("../../etc/passwd", "passwd"),
    ("..", "data"),
    ("/", "data"),
    ("my data/set (v2).parquet", "set_v2"),
    ("saved_dataset/", "saved_dataset"),
    ("..\\..\\windows", "windows"),
    (".hidden.csv", "hidden"),
])
def test_safe_name(source, expected):
    name = safe_name(source)
    assert name == expected
    assert "/" not in name and ".." not in name and not name.startswith(".") and len(name) <= 80


def test_safe_name_is_short():
    assert len(safe_name("x" * 500 + ".jsonl")) == 80
