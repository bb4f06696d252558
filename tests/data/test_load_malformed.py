"""A corpus of malformed inputs: each must fail with a message naming file, row, field and the problem.

Each JSON Lines case puts one good row first, so the bad row is row 1.
"""

from __future__ import annotations

import gzip
import json
import re

import pytest

from tokensift.data.load import load_preferences
from tokensift.errors import DataError

GOOD = {"prompt": "Hi", "chosen": "Hello", "rejected": "Go away"}
USER = {"role": "user", "content": "Hi"}
ASSISTANT_A = {"role": "assistant", "content": "A"}


def jsonl(bad) -> bytes:
    line = bad if isinstance(bad, bytes) else json.dumps(bad).encode()
    return json.dumps(GOOD).encode() + b"\n" + line + b"\n"


# (case id, file name, file bytes, expected row, expected field or None, expected problem phrase)
CASES = [
    ("missing-field", "a.jsonl", jsonl({"prompt": "p", "rejected": "r"}), 1, "chosen",
     "missing field 'chosen'; the row has columns: 'prompt', 'rejected'"),
    ("missing-prompt", "a.jsonl", jsonl({"chosen": "a", "rejected": "b", "extra": 1}), 1, "prompt",
     "missing field 'prompt'; the row has columns: 'chosen', 'rejected', 'extra'"),
    ("wrong-type", "a.jsonl", jsonl({"prompt": "p", "chosen": 42, "rejected": "r"}), 1, "chosen",
     "expected a string or a list of messages, got a number"),
    ("wrong-type-object", "a.jsonl", jsonl({"prompt": {"text": "p"}, "chosen": "a", "rejected": "r"}), 1,
     "prompt", "expected a string or a list of messages, got an object"),
    ("system-wrong-type", "a.jsonl", jsonl({**GOOD, "system": ["x"]}), 1, "system",
     "expected a string, got a list"),
    ("empty-reply", "a.jsonl", jsonl({"prompt": "p", "chosen": " \n ", "rejected": "r"}), 1, "chosen",
     "the reply is empty or whitespace-only"),
    ("identical", "a.jsonl", jsonl({"prompt": "p", "chosen": "same", "rejected": "same "}), 1, "rejected",
     "chosen and rejected replies are identical; an identical pair teaches nothing"),
    ("identical-messages", "a.jsonl", jsonl({"prompt": [USER], "chosen": [ASSISTANT_A], "rejected": [ASSISTANT_A]}),
     1, "rejected", "replies are identical"),
    ("empty-prompt", "a.jsonl", jsonl({"prompt": "  ", "chosen": "a", "rejected": "b"}), 1, "prompt",
     "the prompt is empty"),
    ("unknown-role", "a.jsonl", jsonl({"prompt": [USER, {"role": "bot", "content": "x"}, USER], "chosen": "a",
                                       "rejected": "b"}), 1, "prompt[1]",
     "unknown role 'bot'; valid roles: system, user, assistant, tool"),
    ("no-content", "a.jsonl", jsonl({"prompt": [{"role": "user", "text": "x"}], "chosen": "a", "rejected": "b"}),
     1, "prompt[0]", "message has no 'content' key (its keys: role, text)"),
    ("no-role", "a.jsonl", jsonl({"prompt": [USER], "chosen": [{"content": "a"}], "rejected": "b"}),
     1, "chosen[0]", "message has no 'role' key"),
    ("message-not-object", "a.jsonl", jsonl({"prompt": ["Hi"], "chosen": "a", "rejected": "b"}), 1, "prompt[0]",
     "expected a message object {role, content}, got a string"),
    ("empty-message-list", "a.jsonl", jsonl({"prompt": [USER], "chosen": [], "rejected": "b"}), 1, "chosen",
     "the message list is empty"),
    ("non-string-content", "a.jsonl", jsonl({"prompt": [{"role": "user", "content": ["Hi"]}], "chosen": "a",
                                             "rejected": "b"}), 1, "prompt[0]",
     "message content must be a string, got a list"),
    ("final-not-assistant", "a.jsonl", jsonl({"prompt": [USER], "chosen": [{"role": "user", "content": "a"}],
                                              "rejected": [ASSISTANT_A]}), 1, "chosen[0]",
     "the final message must be an assistant reply, got role 'user'"),
    ("prompt-ends-assistant", "a.jsonl", jsonl({"prompt": [USER, ASSISTANT_A], "chosen": "a", "rejected": "b"}),
     1, "prompt", "the prompt ends with an assistant turn"),
    ("dialogues-differ-early", "a.jsonl", jsonl({
        "chosen": [USER, ASSISTANT_A, {"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}],
        "rejected": [USER, ASSISTANT_A, {"role": "user", "content": "z"}, {"role": "assistant", "content": "w"}]}),
     1, "chosen", "must share every message but the last assistant reply; they differ at message 2"),
    ("hh-no-assistant", "a.jsonl", jsonl({"chosen": "\n\nHuman: hi", "rejected": "\n\nHuman: yo"}), 1, "chosen",
     "implicit dialogue has no '\\n\\nAssistant:' turn"),
    ("hh-prompts-differ", "a.jsonl", jsonl({"chosen": "\n\nHuman: a\n\nAssistant: x",
                                            "rejected": "\n\nHuman: b\n\nAssistant: y"}), 1, "rejected",
     "chosen and rejected do not share a prompt"),
    ("hh-diverge-before-last-human", "a.jsonl",
     jsonl({"chosen": "\n\nHuman: a\n\nAssistant: x\n\nHuman: b\n\nAssistant: c",
            "rejected": "\n\nHuman: a\n\nAssistant: y"}), 1, "chosen",
     "the reply runs on into a later '\\n\\nHuman:' turn"),
    ("hh-text-before-human", "a.jsonl", jsonl({"chosen": "Note\n\nHuman: a\n\nAssistant: x",
                                               "rejected": "Note\n\nHuman: a\n\nAssistant: y"}), 1, "chosen",
     "dialogue text has text before its first 'Human:' turn: 'Note'"),
    ("hh-empty-prompt", "a.jsonl", jsonl({"chosen": "\n\nAssistant: x", "rejected": "\n\nAssistant: y"}), 1,
     "prompt", "the prompt is empty"),
    ("system-twice", "a.jsonl", jsonl({"system": "S", "prompt": [{"role": "system", "content": "T"}, USER],
                                       "chosen": "a", "rejected": "b"}), 1, "system",
     "the row has a system column and its prompt already starts with a system message"),
    ("null-value", "a.jsonl", jsonl({"prompt": "p", "chosen": None, "rejected": "b"}), 1, "chosen",
     "missing value (null)"),
    ("nan-value", "a.jsonl", jsonl(b'{"prompt": "p", "chosen": "a", "rejected": NaN}'), 1, "rejected",
     "missing value (NaN)"),
    ("invalid-utf8", "a.jsonl", jsonl(b'{"prompt": "p", "chosen": "caf\xe9", "rejected": "b"}'), 1, None,
     "invalid UTF-8 (byte 0xe9 at byte 30 of the line)"),
    ("truncated-json", "a.jsonl", jsonl(b'{"prompt": "p", "chosen": "a'), 1, None,
     "truncated or invalid JSON: Unterminated string starting at: line 1 column 27"),
    ("row-is-array", "a.jsonl", jsonl(["p", "a", "b"]), 1, None, "row is a JSON array, not an object"),
    ("row-is-number", "a.jsonl.gz", gzip.compress(jsonl(7)), 1, None, "row is a JSON number, not an object"),
    ("json-array-element", "a.json", json.dumps([GOOD, "oops"]).encode(), 1, None, "row is a JSON string"),
    ("csv-empty-cell", "a.csv", b"prompt,chosen,rejected\nHi,Hello,Go away\np,,b\n", 1, "chosen",
     "missing value (null)"),
    ("csv-cell-count", "a.csv", b"prompt,chosen,rejected\nHi,Hello,Go away\np,a,b,c\n", 1, None,
     "row has 4 cells but the header has 3 columns"),
    ("csv-invalid-utf8", "a.csv", b"prompt,chosen,rejected\nHi,Hello,Go away\np,caf\xe9,b\n", 1, "chosen",
     "invalid UTF-8 (byte 0xe9 at character 3)"),
    ("csv-broken-message-json", "a.csv",
     b'prompt,chosen,rejected\nHi,Hello,Go away\n"[{""role"": ""user"", ""content"": ""Hi""]",a,b\n', 1, "prompt",
     "cell looks like a JSON message list but is truncated or invalid JSON"),
]


def parquet_with_null() -> bytes:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([GOOD, {"prompt": "p", "chosen": "a", "rejected": None}]), buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("name, content, row, field, phrase", [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_malformed_row(tmp_path, name, content, row, field, phrase):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        load_preferences(str(path))
    error, message = info.value, str(info.value)
    assert message.startswith(f"{path}, row {row}")
    assert (error.row, error.field) == (row, field)
    if field:
        assert f", field '{field}': " in message
    assert phrase in message, message
    # The same row in skip mode: skipped with that reason, the good row kept.
    result = load_preferences(str(path), skip_invalid=True, rejects_path=str(tmp_path / "rejects.jsonl"))
    assert len(result.examples) == 1 and result.examples[0].row == 0
    assert [(item.row, item.field) for item in result.rejected] == [(row, field)]
    assert phrase in result.rejected[0].problem


def test_malformed_parquet_null(tmp_path):
    path = tmp_path / "a.parquet"
    path.write_bytes(parquet_with_null())
    with pytest.raises(DataError, match=re.escape(f"{path}, row 1, field 'rejected': missing value (null)")):
        load_preferences(str(path))


def test_corpus_is_large_and_distinct():
    assert len(CASES) >= 20
    assert len({case[0] for case in CASES}) == len(CASES)
    assert len({case[5] for case in CASES}) >= 20
