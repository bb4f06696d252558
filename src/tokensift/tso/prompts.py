"""The prompt set of a TSO run: where prompts (and human responses) come from, their ids, and the split into
held-out evaluation prompts and K round chunks.

Prompt ids are stable across runs and machines: the `id_column` when given, else a hash of the prompt's
messages. The split is seeded and saved in `prompts.json`; a resumed run recomputes it and refuses to go on
when the prompt source changed underneath it, because finished rounds were built from the old prompts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tokensift.data.io import iter_raw_rows
from tokensift.errors import DataError, UserError
from tokensift.fsutil import write_json_atomic

BUILTIN_QUICKSTART = "builtin:quickstart"
# Prompts the project writes itself (no download), each with a warm human-written answer: with the VADER
# judge the human column really is the best candidate, as the spec's prior assumes.
QUICKSTART_TEMPLATES = (
    ("Describe your last visit to {} in one sentence.",
     "My last visit to {} was wonderful: friendly people, lovely surroundings, and I left smiling."),
    ("What do you think about {}? Answer in one sentence.",
     "I really love {}; it is a delightful and happy experience every single time."),
    ("Write a one-sentence review of {}.",
     "An excellent, joyful experience: {} was great and I highly recommend it!"),
    ("Tell a friend about {} in one sentence.",
     "You would love {}, it was amazing fun and I can't wait to go back with you!"),
)
QUICKSTART_TOPICS = ("the beach", "the city park", "the local bakery", "the museum", "the zoo", "the dentist",
                     "the library", "the train station", "the airport", "the farmers market")


@dataclass
class PromptRecord:
    """One prompt: id, chat messages, optional human response, and its 0-based row in the source."""

    id: str
    messages: list[dict]
    human: str | None
    row: int


def content_id(messages: list[dict]) -> str:
    """A hash of the messages: the default prompt id, and the key that joins prompts to offline cells."""
    text = json.dumps(messages, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def as_messages(value, source: str, row: int, field: str) -> list[dict]:
    if isinstance(value, str):
        if not value.strip():
            raise DataError(source, row, field, "the prompt is empty")
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise DataError(source, row, field, f"expected a string or a list of chat messages, got {type(value).__name__}")
    for i, message in enumerate(value):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) \
                or not isinstance(message.get("content"), str):
            raise DataError(source, row, field, f"message {i} is not {{role: str, content: str}}")
    if value[-1]["role"] == "assistant":
        raise DataError(source, row, field, "the prompt ends with an assistant turn; a reply must follow a user turn")
    return [{"role": m["role"], "content": m["content"]} for m in value]


def quickstart_prompts() -> list[PromptRecord]:
    records = []
    for t, (template, human) in enumerate(QUICKSTART_TEMPLATES):
        for k, topic in enumerate(QUICKSTART_TOPICS):
            messages = [{"role": "user", "content": template.format(topic)}]
            records.append(PromptRecord(content_id(messages), messages, human.format(topic),
                                        t * len(QUICKSTART_TOPICS) + k))
    return records


def read_matrix_rows(path: str):
    """Yield (row, messages, responses) of an offline matrix file, checking the fields every consumer reads."""
    for row, record in iter_raw_rows(path):
        if isinstance(record, DataError):
            raise record
        if "prompt" not in record:
            raise DataError(path, row, "prompt", "missing; a matrix row is {prompt, responses: {generator: {text}}}")
        responses = record.get("responses")
        if not isinstance(responses, dict):
            raise DataError(path, row, "responses", "expected a mapping {generator: {text: ...}}")
        yield row, as_messages(record["prompt"], path, row, "prompt"), responses


def load_prompts(config) -> tuple[list[PromptRecord], int]:
    """All prompts of the run's source, in source order, and how many duplicate prompts were merged."""
    if config.prompts == BUILTIN_QUICKSTART:
        records = quickstart_prompts()
        if not config.human_column:
            records = [PromptRecord(r.id, r.messages, None, r.row) for r in records]
    elif config.prompts:
        records = list(read_prompt_file(config.prompts, config.prompt_column, config.id_column, config.human_column))
    else:
        if config.human_column:
            raise UserError("human_column is read from the prompts file; the offline matrix has no human column")
        records = [PromptRecord(content_id(m), m, None, row) for row, m, _ in read_matrix_rows(config.matrix_file)]
    if config.limit is not None:
        records = records[: config.limit]
    unique: dict[str, PromptRecord] = {}
    for record in records:
        if record.id in unique:
            if config.id_column and config.prompts:
                raise DataError(config.prompts, record.row, config.id_column,
                                f"id '{record.id}' was already used by row {unique[record.id].row}")
            continue  # the same prompt twice: its candidates would be identical; counted and reported
        unique[record.id] = record
    return list(unique.values()), len(records) - len(unique)


def read_prompt_file(source: str, prompt_column: str, id_column: str | None, human_column: str | None):
    for row, record in iter_raw_rows(source):
        if isinstance(record, DataError):
            raise record
        if prompt_column not in record:
            raise DataError(source, row, prompt_column, f"missing (columns: {', '.join(map(str, record))})")
        messages = as_messages(record[prompt_column], source, row, prompt_column)
        human = None
        if human_column:
            if human_column not in record:
                raise DataError(source, row, human_column, "missing (an empty value means: no human response)")
            human = record[human_column]
            if human is not None and not isinstance(human, str):
                raise DataError(source, row, human_column, f"expected text, got {type(human).__name__}")
            human = human if human and human.strip() else None
        if id_column:
            value = record.get(id_column)
            if value is None or str(value).strip() == "":
                raise DataError(source, row, id_column, "missing or empty prompt id")
            prompt_id = str(value)
        else:
            prompt_id = content_id(messages)
        yield PromptRecord(prompt_id, messages, human, row)


def make_plan(records: list[PromptRecord], eval_count: int, rounds: int, seed: int) -> dict:
    """Seeded split: `eval_count` held-out prompts, the rest in `rounds` disjoint chunks (source order inside)."""
    if eval_count + rounds > len(records):
        raise UserError(f"{len(records)} prompts cannot give {eval_count} held-out prompts and {rounds} non-empty "
                        "round chunks; lower eval_prompts or rounds, or add prompts")
    order = np.random.RandomState(seed).permutation(len(records))
    held = sorted(order[:eval_count].tolist())
    chunks = [sorted(part.tolist()) for part in np.array_split(order[eval_count:], rounds)]
    return {"eval": [records[i].id for i in held], "chunks": [[records[i].id for i in c] for c in chunks]}


@dataclass
class PromptSet:
    records: dict[str, PromptRecord]
    eval: list[str]
    chunks: list[list[str]]
    duplicates: int
    payload: dict  # what prompts.json holds

    @property
    def train_ids(self) -> list[str]:
        return [pid for chunk in self.chunks for pid in chunk]


def prepare_prompts(config, started: bool) -> PromptSet:
    """Load and split the run's prompts; for a run that has `started`, check them against its prompts.json."""
    records, duplicates = load_prompts(config)
    plan = make_plan(records, config.eval_prompts, config.rounds, config.seed)
    path = Path(config.output_dir) / "prompts.json"
    payload = {"source": config.prompts or config.matrix_file, "duplicates_merged": duplicates, **plan,
               "prompts": [asdict(r) for r in records]}
    if started and path.exists():
        saved = json.loads(path.read_text())
        if {k: saved.get(k) for k in ("eval", "chunks", "prompts")} != {k: payload[k] for k in ("eval", "chunks", "prompts")}:
            raise UserError(f"{path}: the prompts or their split differ from those this run started with; "
                            "use a new output_dir (finished rounds were built from the old prompts)")
    return PromptSet({r.id: r for r in records}, plan["eval"], plan["chunks"], duplicates, payload)


def save_prompts(config, prompts: PromptSet) -> None:
    write_json_atomic(Path(config.output_dir) / "prompts.json", prompts.payload)
