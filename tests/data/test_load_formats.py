"""Format detection and normalisation, row by row, with exact expected prompts."""

from __future__ import annotations

import pytest

from tokensift.data.formats import normalise_row, parse_columns
from tokensift.errors import DataError, UserError

USER = {"role": "user", "content": "Hi there"}


def normalise(row, columns=None):
    return normalise_row(row, 3, "rows.jsonl", columns)


def test_standard():
    example, kind = normalise({"prompt": "Hi there", "chosen": " Hello!", "rejected": "Bye.", "model": "m"})
    assert kind == "standard"
    assert example.prompt == [USER]
    assert (example.chosen, example.rejected, example.row) == (" Hello!", "Bye.", 3)  # strings kept exactly
    assert example.metadata == {"model": "m"}


def test_standard_with_system_column():
    example, _ = normalise({"system": "Be kind.", "prompt": "Hi there", "chosen": "a", "rejected": "b"})
    assert example.prompt == [{"role": "system", "content": "Be kind."}, USER]
    assert example.metadata == {}
    example, _ = normalise({"system": None, "prompt": "Hi there", "chosen": "a", "rejected": "b"})
    assert example.prompt == [USER]


def test_conversational_explicit_prompt():
    row = {"prompt": [{"role": "system", "content": "S"}, USER],
           "chosen": [{"role": "assistant", "content": "Hello!"}],
           "rejected": [{"role": "assistant", "content": "Bye."}]}
    example, kind = normalise(row)
    assert kind == "conversational"
    assert example.prompt == [{"role": "system", "content": "S"}, USER]
    assert (example.chosen, example.rejected) == ("Hello!", "Bye.")


def test_conversational_implicit_prompt_is_the_shared_prefix():
    shared = [USER, {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Joke?"}]
    row = {"chosen": shared + [{"role": "assistant", "content": "Knock knock."}],
           "rejected": shared + [{"role": "assistant", "content": "No."}], "score": [1, 2]}
    example, kind = normalise(row)
    assert kind == "conversational_implicit"
    assert example.prompt == shared
    assert (example.chosen, example.rejected, example.metadata) == ("Knock knock.", "No.", {"score": [1, 2]})


def test_conversational_shared_reply_messages_move_into_the_prompt():
    row = {"prompt": [USER],
           "chosen": [{"role": "assistant", "content": "A"}, {"role": "user", "content": "more"},
                      {"role": "assistant", "content": "B"}],
           "rejected": [{"role": "assistant", "content": "A"}, {"role": "user", "content": "more"},
                        {"role": "assistant", "content": "C"}]}
    example, _ = normalise(row)
    assert example.prompt == [USER, {"role": "assistant", "content": "A"}, {"role": "user", "content": "more"}]
    assert (example.chosen, example.rejected) == ("B", "C")


def test_message_extra_keys_kept_and_nulls_dropped():
    row = {"prompt": [{"role": "user", "content": "Hi there", "name": "ann", "tool_calls": None}],
           "chosen": "a", "rejected": "b"}
    example, kind = normalise(row)
    assert kind == "mixed"
    assert example.prompt == [{"role": "user", "content": "Hi there", "name": "ann"}]


def test_string_prompt_with_message_replies_and_mixed_replies():
    example, kind = normalise({"prompt": "Hi there", "chosen": [{"role": "assistant", "content": "a"}],
                               "rejected": "b"})
    assert (kind, example.prompt, example.chosen, example.rejected) == ("mixed", [USER], "a", "b")


def test_implicit_dialogue_hh():
    chosen = "\n\nHuman: Hi there\n\nAssistant:  Hello.\n\nHuman:   Tell me a joke.  \n\nAssistant: Knock knock.\n"
    rejected = "\n\nHuman: Hi there\n\nAssistant:  Hello.\n\nHuman:   Tell me a joke.  \n\nAssistant: No."
    example, kind = normalise({"chosen": chosen, "rejected": rejected})
    assert kind == "implicit_dialogue"
    assert example.prompt == [USER, {"role": "assistant", "content": "Hello."},
                              {"role": "user", "content": "Tell me a joke."}]
    assert (example.chosen, example.rejected) == ("Knock knock.", "No.")


def test_implicit_dialogue_reply_containing_markers_is_kept_whole():
    # Real HH rows: a reply that itself runs on into "\n\nAssistant:" or "Human:" text.
    prompt = "\n\nHuman: Help me.\n\nAssistant:"
    chosen = prompt + " Sure:\n\nAssistant:  Step one.  Human: thanks"
    rejected = prompt + " No."
    example, _ = normalise({"chosen": chosen, "rejected": rejected})
    assert example.prompt == [{"role": "user", "content": "Help me."}]
    assert example.chosen == "Sure:\n\nAssistant:  Step one.  Human: thanks"
    # And the other way round: the shared prefix, not the rejected's own last marker, decides.
    example, _ = normalise({"chosen": rejected, "rejected": chosen})
    assert example.prompt == [{"role": "user", "content": "Help me."}] and example.chosen == "No."


def test_implicit_dialogue_replies_sharing_a_start():
    prompt = "\n\nHuman: Count.\n\nAssistant:"
    example, _ = normalise({"chosen": prompt + " One two", "rejected": prompt + " One"})
    assert (example.chosen, example.rejected) == ("One two", "One")


def test_implicit_dialogue_without_leading_blank_line_and_empty_reply():
    example, _ = normalise({"chosen": "Human: Say bad words\n\nAssistant:",
                            "rejected": "Human: Say bad words\n\nAssistant: Ok"})
    assert example.prompt == [{"role": "user", "content": "Say bad words"}]
    assert (example.chosen, example.rejected) == ("", "Ok")  # HH's explicit empty turn is kept


def test_dialogue_transcript_as_prompt():
    row = {"prompt": "\n\nHuman: Hi there\n\nAssistant: Hello.\n\nHuman: Joke?\n\nAssistant:",
           "chosen": " Knock knock.", "rejected": " No."}
    example, kind = normalise(row)
    assert kind == "dialogue_prompt"
    assert example.prompt == [USER, {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Joke?"}]
    assert (example.chosen, example.rejected) == ("Knock knock.", "No.")
    # A prompt that merely mentions the markers, without ending in an Assistant turn, stays one user message.
    text = "Human: x\n\nAssistant: y\n\nHuman: z"
    example, kind = normalise({"prompt": text, "chosen": "a", "rejected": "b"})
    assert kind == "standard" and example.prompt == [{"role": "user", "content": text}]


def test_columns_mapping():
    columns = parse_columns(" prompt = instruction, chosen=good,rejected=bad,system=sys,id=uid ")
    assert columns == {"prompt": "instruction", "chosen": "good", "rejected": "bad", "system": "sys", "id": "uid"}
    row = {"instruction": "Hi there", "good": "yes", "bad": "no", "sys": "Be kind.", "uid": 17, "prompt": "x"}
    example, kind = normalise(row, columns)
    assert kind == "standard"
    assert example.prompt == [{"role": "system", "content": "Be kind."}, USER]
    assert (example.chosen, example.rejected) == ("yes", "no")
    assert example.metadata == {"prompt": "x", "id": 17}


def test_columns_mapping_missing_column_names_the_mapping():
    with pytest.raises(DataError) as info:
        normalise({"question": "q", "chosen": "a", "rejected": "b"}, {"prompt": "instruction"})
    message = str(info.value)
    assert "rows.jsonl, row 3, field 'instruction'" in message
    assert "missing field 'instruction' (mapped to prompt by the column mapping)" in message
    assert "'question', 'chosen', 'rejected'" in message


@pytest.mark.parametrize("text, phrase", [
    ("promt=instruction", "unknown field 'promt'; did you mean 'prompt'?"),
    ("instruction=prompt", "did you mean prompt=instruction?"),
    ("prompt", "'prompt' is not FIELD=COLUMN"),
    ("prompt=a,prompt=b", "'prompt' is mapped twice"),
    ("chosen=a,rejected=a", "column 'a' is mapped to more than one field"),
    ("prompt=", "is not FIELD=COLUMN"),
])
def test_parse_columns_errors(text, phrase):
    with pytest.raises(UserError) as info:
        parse_columns(text)
    assert phrase in str(info.value)


def test_missing_prompt_suggests_a_close_column():
    with pytest.raises(DataError) as info:
        normalise({"Prompt": "q", "chosen": "a", "rejected": "b"})
    assert "did you mean 'Prompt'?" in str(info.value)
    assert "--columns prompt=NAME" in str(info.value)
