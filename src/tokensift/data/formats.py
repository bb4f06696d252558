"""Normalise one raw row, in whichever preference format it comes, to a `PreferenceExample`.

Formats, detected per row from the value types (so one file may mix them):
  standard                 prompt: str, chosen/rejected: str. The prompt becomes one user message.
  conversational           prompt: messages, chosen/rejected: messages (TRL's convention).
  conversational_implicit  no prompt; chosen/rejected are whole dialogues sharing every message but the last.
  implicit_dialogue        no prompt; chosen/rejected are HH-RLHF text "\\n\\nHuman: ...\\n\\nAssistant: ...".
  dialogue_prompt          prompt: an HH transcript ending in "\\n\\nAssistant:", chosen/rejected: str (the
                           layout of HH-derived sets such as Dahoas/rm-static); turns parsed as below.
  mixed                    a string prompt with message replies, message prompt with string replies, or one
                           reply of each kind: unambiguous, so accepted.
With message replies, messages shared by chosen and rejected are moved into the prompt, and what remains of
each must be exactly one assistant message; its content is the reply.

HH-RLHF text: the prompt is the longest common prefix of the two dialogues, cut at its last
"\\n\\nAssistant:" (the data README's rule). Cutting at each dialogue's own last marker instead breaks on
real rows whose reply itself contains "\\n\\nAssistant:" (5 of the 1,751 harmless-test rows). Only
"\\n\\nHuman:" and "\\n\\nAssistant:" start a turn; an inline "Human:" is text. Every turn, the reply
included (in dialogue_prompt rows too), is stripped of surrounding whitespace: around the markers it is
formatting ("Assistant: reply") and chat templates add their own separators. Text inside a turn is never
changed. An HH dialogue ending in an empty Assistant turn is kept with an empty reply (2 real harmless
rows: the labeller preferred silence to a harmful answer; tokenisation still gives the reply its EOS
token). Everywhere else an empty reply is an error: there a blank string is indistinguishable from a
missing value or a failed generation.

Every other column goes into `metadata` unchanged.
"""

from __future__ import annotations

import difflib
import math
import os
import re

from tokensift.data.example import ROLES, PreferenceExample
from tokensift.errors import DataError, UserError

FIELDS = ("prompt", "chosen", "rejected", "system", "id")
HUMAN = "\n\nHuman:"
ASSISTANT = "\n\nAssistant:"


SURROGATE = re.compile("[\ud800-\udfff]")  # JSON can escape them ("\\ud800"); no encoder accepts them

def parse_columns(text: str) -> dict[str, str]:
    """'prompt=instruction,chosen=good,rejected=bad' -> {'prompt': 'instruction', ...}, validated."""
    mapping: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        target, sep, column = (piece.strip() for piece in item.partition("="))
        if not sep or not target or not column:
            raise UserError(f"--columns: '{item}' is not FIELD=COLUMN (for example prompt=instruction)")
        if target in mapping:
            raise UserError(f"--columns: '{target}' is mapped twice")
        mapping[target] = column
    return validate_columns(mapping)


def validate_columns(mapping: dict[str, str]) -> dict[str, str]:
    """Check the targets of a column mapping; suggests the nearest field for a typo."""
    for target, column in mapping.items():
        if target in FIELDS:
            if not isinstance(column, str) or not column:
                raise UserError(f"--columns: {target} must map to a column name, got {column!r}")
            continue
        hint = ""
        if column in FIELDS:
            hint = f"; did you mean {column}={target}? (our field goes first, your column second)"
        else:
            close = difflib.get_close_matches(target, FIELDS, n=1)
            if close:
                hint = f"; did you mean '{close[0]}'?"
        raise UserError(f"--columns: unknown field '{target}'{hint} Fields: {', '.join(FIELDS)}")
    sources = list(mapping.values())
    duplicated = sorted({name for name in sources if sources.count(name) > 1})
    if duplicated:
        raise UserError(f"--columns: column '{duplicated[0]}' is mapped to more than one field")
    return dict(mapping)


def normalise_row(row: dict, row_index: int, source: str,
                  columns: dict[str, str] | None = None) -> tuple[PreferenceExample, str]:
    """Return (example, format name), or raise a DataError naming source, row and field."""
    if not isinstance(row, dict):
        raise DataError(source, row_index, None, f"row is {type(row).__name__}, not an object with fields "
                        "such as prompt/chosen/rejected")
    rules = _Row(row, row_index, source, columns or {})
    chosen, rejected = rules.value("chosen"), rules.value("rejected")
    prompt = rules.value("prompt", required="prompt" in rules.columns)
    system = rules.value("system", required="system" in rules.columns)
    if "id" in rules.columns:
        rules.value("id")
    if system is not None and not isinstance(system, str):
        rules.fail(rules.name("system"), f"expected a string, got {_type_name(system)}")

    replies_are_text = isinstance(chosen, str) and isinstance(rejected, str)
    if prompt is None and replies_are_text:
        if not (_looks_like_dialogue(chosen) or _looks_like_dialogue(rejected)):
            rules.missing("prompt", "without a prompt, chosen and rejected must be whole dialogues "
                          "('\\n\\nHuman: ...\\n\\nAssistant: ...')")
        messages, chosen_text, rejected_text = rules.split_dialogue_text(chosen, rejected)
        kind = "implicit_dialogue"
    elif isinstance(prompt, str) and replies_are_text and _is_dialogue_prompt(prompt):
        prompt_text = _with_leading_break(prompt.strip())[:-len(ASSISTANT)]
        messages = rules.dialogue_turns(prompt_text, "prompt")
        chosen_text, rejected_text, kind = chosen.strip(), rejected.strip(), "dialogue_prompt"
    else:
        messages, chosen_text, rejected_text, kind = rules.split_messages(prompt, chosen, rejected)

    if not any(message["content"].strip() for message in messages):
        rules.fail(rules.name("prompt"), "the prompt is empty (no message has any text)")
    if system:
        if messages[0]["role"] == "system":
            rules.fail(rules.name("system"), "the row has a system column and its prompt already starts with a "
                       "system message; keep one of them")
        messages = [{"role": "system", "content": system}] + messages
    if messages[-1]["role"] == "assistant":
        rules.fail(rules.name("prompt"), "the prompt ends with an assistant turn; the reply must follow a "
                   "user (or system/tool) message")
    allow_empty = kind in ("implicit_dialogue", "dialogue_prompt")  # an explicit empty Assistant turn
    for target, text in (("chosen", chosen_text), ("rejected", rejected_text)):
        if not text.strip() and not allow_empty:
            rules.fail(rules.name(target), "the reply is empty or whitespace-only")
    texts = [(rules.name("prompt"), m["content"]) for m in messages]
    for field, text in texts + [(rules.name("chosen"), chosen_text), (rules.name("rejected"), rejected_text)]:
        bad = SURROGATE.search(text)
        if bad:
            rules.fail(field, f"holds an unpaired UTF-16 surrogate (\\u{ord(bad.group()):04x} at character "
                       f"{bad.start()}), which is not valid Unicode text; fix the escape in the source file")
    if chosen_text.strip() == rejected_text.strip():
        rules.fail(rules.name("rejected"), "chosen and rejected replies are identical; an identical pair "
                   "teaches nothing")
    return PreferenceExample(messages, chosen_text, rejected_text, row_index, rules.metadata()), kind


class _Row:
    """One row with its column mapping; knows how to name fields in errors."""

    def __init__(self, row: dict, row_index: int, source: str, columns: dict[str, str]):
        self.row, self.row_index, self.source, self.columns = row, row_index, source, columns
        self.used: set[str] = set()

    def name(self, target: str) -> str:
        return self.columns.get(target, target)

    def fail(self, field: str | None, problem: str):
        raise DataError(self.source, self.row_index, field, problem)

    def missing(self, target: str, why: str = ""):
        column = self.name(target)
        present = ", ".join(repr(str(key)) for key in self.row) or "none"
        close = difflib.get_close_matches(column, [str(key) for key in self.row], n=1)
        problem = f"missing field '{column}'"
        if target in self.columns:
            problem += f" (mapped to {target} by the column mapping)"
        problem += f"; the row has columns: {present}"
        if close:
            problem += f"; did you mean '{close[0]}'?"
        if why:
            problem += f"; {why}"
        if target not in self.columns:
            problem += f". Map your own column with --columns {target}=NAME"
        self.fail(column, problem)

    def value(self, target: str, required: bool = True):
        """The row's value for one of our fields; None when an optional field is absent or empty."""
        column = self.name(target)
        if column not in self.row:
            if required:
                self.missing(target)
            return None
        self.used.add(column)
        value = self.row[column]
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        if missing and target != "system":  # an empty system cell just means: no system message
            self.fail(column, f"missing value ({'NaN' if value is not None else 'null'}); a {target} is required")
        if missing or (target == "system" and value == ""):
            return None
        if target in ("prompt", "chosen", "rejected") and not isinstance(value, (str, list)):
            self.fail(column, f"expected a string or a list of messages, got {_type_name(value)}")
        return value

    def metadata(self) -> dict:
        """Every column not consumed as prompt/chosen/rejected/system; a mapped id column is stored as 'id'."""
        meta = {key: value for key, value in self.row.items() if key not in self.used}
        if "id" in self.columns:
            meta["id"] = self.row[self.columns["id"]]
        return meta

    def messages(self, target: str, value: list) -> list[dict]:
        """Validate a message list; returns copies holding role, content and any non-null extra keys."""
        column = self.name(target)
        if not value:
            self.fail(column, "the message list is empty")
        result = []
        for position, message in enumerate(value):
            field = f"{column}[{position}]"
            if not isinstance(message, dict):
                self.fail(field, f"expected a message object {{role, content}}, got {_type_name(message)}")
            for key in ("role", "content"):
                if key not in message:
                    keys = ", ".join(map(str, message)) or "none"
                    self.fail(field, f"message has no '{key}' key (its keys: {keys})")
            role, content = message["role"], message["content"]
            if role not in ROLES:
                self.fail(field, f"unknown role {role!r}; valid roles: {', '.join(ROLES)}")
            if not isinstance(content, str):
                self.fail(field, f"message content must be a string, got {_type_name(content)}")
            result.append({key: item for key, item in message.items() if item is not None})
        return result

    def split_messages(self, prompt, chosen, rejected) -> tuple[list[dict], str, str, str]:
        """Prompt messages and reply texts for every format except HH text."""
        if prompt is None:
            kind = "conversational_implicit" if isinstance(chosen, list) and isinstance(rejected, list) else "mixed"
            prompt_messages: list[dict] = []
        elif isinstance(prompt, str):
            kind = "standard" if isinstance(chosen, str) and isinstance(rejected, str) else "mixed"
            prompt_messages = [{"role": "user", "content": prompt}]
        else:
            kind = "conversational" if isinstance(chosen, list) and isinstance(rejected, list) else "mixed"
            prompt_messages = self.messages("prompt", prompt)
        if isinstance(chosen, str) and isinstance(rejected, str):
            return prompt_messages, chosen, rejected, kind

        replies = []
        for target, value in (("chosen", chosen), ("rejected", rejected)):
            if isinstance(value, str):
                value = [{"role": "assistant", "content": value}]
            replies.append(self.messages(target, value))
        shared = 0
        for left, right in zip(*replies):
            if (left["role"], left["content"]) != (right["role"], right["content"]):
                break
            shared += 1
        if shared == len(replies[0]) == len(replies[1]):
            self.fail(self.name("rejected"), "chosen and rejected replies are identical; an identical pair "
                      "teaches nothing")
        prompt_messages = prompt_messages + replies[0][:shared]
        texts = []
        for target, messages in zip(("chosen", "rejected"), replies):
            column, rest = self.name(target), messages[shared:]
            if not rest:
                self.fail(column, "has no reply of its own: all its messages are shared with the other "
                          "response, so it is part of the prompt")
            if rest[-1]["role"] != "assistant":
                self.fail(f"{column}[{len(messages) - 1}]", f"the final message must be an assistant reply, "
                          f"got role {rest[-1]['role']!r}")
            if len(rest) > 1:
                self.fail(column, f"chosen and rejected must share every message but the last assistant "
                          f"reply; they differ at message {shared} ({len(rest)} messages of {target} are "
                          "not shared)")
            texts.append(rest[0]["content"])
        return prompt_messages, texts[0], texts[1], kind

    def split_dialogue_text(self, chosen: str, rejected: str) -> tuple[list[dict], str, str]:
        """HH-RLHF: prompt = longest common prefix up to its last '\\n\\nAssistant:' marker."""
        chosen_text, rejected_text = _with_leading_break(chosen), _with_leading_break(rejected)
        for target, text in (("chosen", chosen_text), ("rejected", rejected_text)):
            if ASSISTANT not in text:
                self.fail(self.name(target), "implicit dialogue has no '\\n\\nAssistant:' turn, so the prompt "
                          "and the reply cannot be told apart")
        shared = os.path.commonprefix([chosen_text, rejected_text])
        cut = shared.rfind(ASSISTANT)
        if cut < 0:
            self.fail(self.name("rejected"), "chosen and rejected do not share a prompt: the dialogues differ "
                      "before their first '\\n\\nAssistant:' turn")
        start = cut + len(ASSISTANT)
        for target, text in (("chosen", chosen_text), ("rejected", rejected_text)):
            if HUMAN in text[start:]:
                # The dialogues part before a later Human turn: not "every turn but the last reply" shared.
                self.fail(self.name(target), "the reply runs on into a later '\\n\\nHuman:' turn: chosen and "
                          "rejected differ before their last Human turn, so they do not share one prompt")
        messages = self.dialogue_turns(chosen_text[:cut], "chosen")
        return messages, chosen_text[start:].strip(), rejected_text[start:].strip()

    def dialogue_turns(self, text: str, target: str) -> list[dict]:
        """'\\n\\nHuman: a\\n\\nAssistant: b...' -> messages; text before the first turn is an error."""
        messages: list[dict] = []
        position = 0
        while True:
            next_turns = [(text.find(marker, position), marker) for marker in (HUMAN, ASSISTANT)]
            found = [(index, marker) for index, marker in next_turns if index >= 0]
            end = min(found)[0] if found else len(text)
            chunk = text[position:end]
            if messages:
                messages[-1]["content"] = chunk.strip()
            elif chunk.strip():
                self.fail(self.name(target), "dialogue text has text before its first 'Human:' turn: "
                          f"{chunk.strip()[:60]!r}")
            if not found:
                return messages
            index, marker = min(found)
            messages.append({"role": "user" if marker == HUMAN else "assistant", "content": ""})
            position = index + len(marker)


def _looks_like_dialogue(text: str) -> bool:
    return ASSISTANT in text or HUMAN in text or text.startswith(("Human:", "Assistant:"))


def _is_dialogue_prompt(text: str) -> bool:
    """An HH transcript used as a prompt ('\\n\\nHuman: ...\\n\\nAssistant:'), as in Dahoas/rm-static."""
    text = _with_leading_break(text.strip())
    return text.startswith(HUMAN) and text.endswith(ASSISTANT)


def _with_leading_break(text: str) -> str:
    """Accept dialogues that start 'Human: ...' without HH's leading blank line."""
    return "\n\n" + text if text.startswith(("Human:", "Assistant:")) else text


def _type_name(value) -> str:
    names = {str: "a string", list: "a list", dict: "an object", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)
