"""The model matrix (spec §3.2-3.3): every generator's answer to every prompt, plus human responses.

Three kinds of cells:
- fixed cells (generators with `model:`): sampled once for all training prompts into `matrix/`, because
  the spec's best reading keeps every column but the reference policy's fixed across rounds (§7);
- policy cells: the round's reference policy answers the round's prompts, into `round-XX/policy-cells/`;
- offline cells (`column:`) and human responses: read from files, never generated.
Generated cells are stored as Parquet blocks of `block_prompts` prompts (shards.py writes each atomically);
a block is generated with a seed derived from (generator seed, block index) only, so a killed generation
resumes at the first missing block and produces what an uninterrupted one would have.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from tokensift.errors import DataError, UserError
from tokensift.shards import ShardStore
from tokensift.tso.backends import open_sampler
from tokensift.tso.config import HUMAN, GeneratorSpec
from tokensift.tso.prompts import PromptRecord, content_id, read_matrix_rows


@dataclass
class Candidate:
    """One cell of the matrix for one prompt. `prior_rank`: larger is better by the prior (human on top)."""

    prompt_id: str
    generator: str
    text: str
    prior_rank: int
    kind: str  # model, policy, offline or human


class CellStore:
    """Generated cells in Parquet blocks, plus meta.json recording each column's generation settings."""

    def __init__(self, folder: str | Path):
        self.shards = ShardStore(folder)
        self.shards.clean_temporaries()

    def check_settings(self, specs: list[GeneratorSpec], model_of: dict[str, str]) -> None:
        """Refuse to mix cells made with other settings (a changed temperature, model or seed) into a column."""
        meta = self.shards.read_meta() or {}
        for spec in specs:
            wanted = {**spec.settings(), "model": model_of[spec.name]}
            if spec.name in meta and meta[spec.name] != wanted:
                raise UserError(f"{self.shards.folder}: column '{spec.name}' was generated with {meta[spec.name]}, "
                                f"now configured as {wanted}; use a new output_dir or restore the settings")
            meta[spec.name] = wanted
        self.shards.write_meta(meta)

    def done_blocks(self) -> set[tuple[str, int]]:
        table = self.shards.read(columns=["generator", "block"])
        if table is None:
            return set()
        return set(zip(table.column("generator").to_pylist(), table.column("block").to_pylist()))

    def cells(self) -> dict[tuple[str, str], str]:
        table = self.shards.read(columns=["prompt_id", "generator", "text"])
        if table is None:
            return {}
        return {(p, g): t for p, g, t in zip(table.column("prompt_id").to_pylist(),
                                              table.column("generator").to_pylist(), table.column("text").to_pylist())}

    def write_block(self, generator: str, block: int, prompt_ids: list[str], texts: list[str]) -> None:
        self.shards.write({"generator": [generator] * len(texts), "block": [block] * len(texts),
                           "prompt_id": prompt_ids, "text": texts})


def fill_column(store: CellStore, spec: GeneratorSpec, model: str, prompts: list[PromptRecord], config,
                seed: int) -> int:
    """Generate the missing blocks of one column; returns how many answers were generated now."""
    blocks = [prompts[i : i + config.block_prompts] for i in range(0, len(prompts), config.block_prompts)]
    done = store.done_blocks()
    todo = [b for b in range(len(blocks)) if (spec.name, b) not in done]
    if not todo:
        return 0
    sampler = open_sampler(config.backend, model, config.generation_batch_size, config.progress,
                           config.vllm_tensor_parallel)
    made = 0
    try:
        for b in todo:
            texts = sampler.sample([p.messages for p in blocks[b]], spec.temperature, spec.top_p,
                                   spec.max_new_tokens, seed=seed * 1009 + b,
                                   desc=f"{spec.name}: block {b + 1}/{len(blocks)}")
            store.write_block(spec.name, b, [p.id for p in blocks[b]], texts)
            made += len(texts)
    finally:
        sampler.close()
    return made


def fill_fixed_matrix(config, specs: list[GeneratorSpec], prompts: list[PromptRecord]) -> dict:
    """`tokensift tso generate`: the fixed cells of every `model:` generator for all training prompts."""
    fixed = [s for s in specs if s.kind == "model"]
    store = CellStore(Path(config.output_dir) / "matrix")
    store.check_settings(fixed, {s.name: s.source for s in fixed})
    made = {}
    for spec in fixed:
        made[spec.name] = fill_column(store, spec, spec.source, prompts, config, spec.seed)
        if made[spec.name]:
            print(f"[tso] matrix: {spec.name} ({spec.source}, T={spec.temperature:g}) answered "
                  f"{made[spec.name]} prompts")
    return made


def read_offline_cells(path: str, records: list[PromptRecord], specs: list[GeneratorSpec]) -> dict:
    """Offline cells {(prompt_id, generator): text} joined to the prompts by their messages' hash.

    A missing cell (some AlpacaEval models lack a few prompts) or an empty text is simply absent; the round
    report counts candidates per generator, so the gaps show.
    """
    offline = [s for s in specs if s.kind == "offline"]
    if not offline:
        return {}
    wanted = {content_id(r.messages): r.id for r in records}
    cells = {}
    seen_columns: set[str] = set()
    for row, messages, responses in read_matrix_rows(path):
        seen_columns.update(responses)
        prompt_id = wanted.get(content_id(messages))
        if prompt_id is None:
            continue
        for spec in offline:
            cell = responses.get(spec.source)
            if cell is None:
                continue
            if not isinstance(cell, dict) or not isinstance(cell.get("text"), str):
                raise DataError(path, row, f"responses.{spec.source}.text", "expected {text: str, ...}")
            if cell["text"].strip():
                cells[(prompt_id, spec.name)] = cell["text"]
    unknown = [s.source for s in offline if s.source not in seen_columns]
    if unknown:
        raise UserError(f"{path}: no row has a response column '{unknown[0]}' (generator column); columns seen: "
                        f"{', '.join(sorted(seen_columns))}")
    return cells


def assemble_candidates(prompt_ids: list[str], records: dict[str, PromptRecord], specs: list[GeneratorSpec],
                        ranks: dict[str, int], cells: dict) -> tuple[list[Candidate], dict]:
    """Every available cell of the given prompts as Candidates, with per-generator counts (missing, empty)."""
    candidates, present, missing = [], Counter(), Counter()
    for pid in prompt_ids:
        for spec in specs:
            text = cells.get((pid, spec.name))
            if text is None or not text.strip():
                missing[spec.name] += 1  # an empty answer cannot be trained on; counted, not hidden
                continue
            candidates.append(Candidate(pid, spec.name, text, ranks[spec.name], spec.kind))
            present[spec.name] += 1
        human = records[pid].human
        if human and HUMAN in ranks:
            candidates.append(Candidate(pid, HUMAN, human, ranks[HUMAN], HUMAN))
            present[HUMAN] += 1
        elif HUMAN in ranks:
            missing[HUMAN] += 1
    return candidates, {"per_generator": dict(present), "missing_or_empty": dict(missing)}


def candidate_rows(candidates: list[Candidate]) -> list[dict]:
    return [asdict(c) for c in candidates]


def candidates_from_rows(rows: list[dict]) -> list[Candidate]:
    return [Candidate(**row) for row in rows]
