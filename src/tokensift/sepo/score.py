"""Token scoring: the oracle's implicit reward of every response token, written as Parquet shards.

For each pair, the oracle and its reference are teacher-forced over prompt + response, for both responses,
and each response token (the first one and the turn end included) gets

    score_i = beta * (log pi_oracle(y_i | x, y_<i) - log pi_ref(y_i | x, y_<i))     (label space)

Scores are stored, not selections: token ids + one float per token + the row, so any k or selection strategy
is applied later at batch-build time (the record layout, and its reader for training, are scores.py's). The job
streams the data in chunks (memory stays flat in the dataset size), writes a shard per chunk atomically, and on
restart skips rows already written: a kill never leaves duplicate or missing rows. Under `accelerate launch`,
process p scores the rows with `row % world == p`.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from tokensift.data.collate import length_buckets
from tokensift.data.io import fingerprint, source_fingerprint
from tokensift.data.load import LoadResult, iter_preferences
from tokensift.data.tokenize import PairTokenizer, TokenizeSettings
from tokensift.distributed import partial_state
from tokensift.errors import UserError
from tokensift.fsutil import check_output_dir
from tokensift.logprobs import group_logps
from tokensift.models import (
    load_model,
    load_tokenizer,
    model_fingerprint,
    same_tokenizer,
    tokenizer_fingerprint,
)
from tokensift.scores import COLUMNS
from tokensift.sepo.config import ScoreConfig
from tokensift.shards import ShardStore

log = logging.getLogger(__name__)


@dataclass
class ScoreResult:
    output_dir: Path
    rows_scored: int  # by this call (0 when everything was already there)
    rows_total: int
    seconds: float
    tokens: int


def score_meta(config: ScoreConfig, tokenizer) -> dict:
    return {
        "kind": "tokensift token scores",
        "data": source_fingerprint(config.data, config.split), "source": str(config.data), "columns": config.columns,
        "limit": config.limit, "oracle": model_fingerprint(config.oracle), "reference": model_fingerprint(config.reference),
        "tokenizer": tokenizer_fingerprint(tokenizer), "max_length": config.max_length,
        "max_prompt_length": config.max_prompt_length, "beta": config.beta, "dtype": config.dtype,
    }


@torch.no_grad()
def score_pairs(oracle, reference, pairs, batch_size: int, pad_id: int, beta: float, device,
                share_prompt: bool = True, packing: str = "auto"):
    """Yield one record dict per pair: ids and beta * (oracle - reference) log-probs per response token."""
    for group in length_buckets(pairs, batch_size):
        oracle_logps, reference_logps = group_logps([oracle, reference], group, pad_id, device, share_prompt,
                                                    packing)[1]
        diff = (oracle_logps - reference_logps).float().cpu() * beta
        n = len(group)
        for i, pair in enumerate(group):
            yield {
                "row": pair.row, "prompt_ids": pair.prompt_ids, "chosen_ids": pair.chosen_ids,
                "rejected_ids": pair.rejected_ids,
                "chosen_scores": diff[i, : len(pair.chosen_ids)].numpy().astype(np.float32),
                "rejected_scores": diff[n + i, : len(pair.rejected_ids)].numpy().astype(np.float32),
            }


def check_store(store: ShardStore, meta: dict, overwrite: bool) -> None:
    key = fingerprint(meta)
    existing = store.read_meta()
    if existing is None or existing.get("fingerprint") == key:
        return
    if not overwrite:
        changed = [k for k in meta if existing.get("inputs", {}).get(k) != meta[k]]
        raise UserError(
            f"{store.folder} holds scores made from other inputs (changed: {', '.join(changed) or 'unknown'}); "
            "pass overwrite=true to replace them or choose another output_dir"
        )
    for path in store.shards():
        path.unlink()


def score_tokens(config: ScoreConfig) -> ScoreResult:
    state = partial_state()
    rank, world = state.process_index, state.num_processes
    started = time.perf_counter()
    tokenizer = load_tokenizer(config.oracle, config.trust_remote_code)
    if not same_tokenizer(tokenizer, load_tokenizer(config.reference, config.trust_remote_code)):
        raise UserError("the oracle and its reference use different tokenizers; token scores need one vocabulary")
    meta = score_meta(config, tokenizer)
    store = ShardStore(config.output_dir, rank=rank)
    if state.is_main_process:
        check_output_dir(Path(config.output_dir))  # a file, unwritable or nearly full: say so before any work
        check_store(store, meta, config.overwrite)
        store.clean_temporaries()
        store.write_meta({"fingerprint": fingerprint(meta), "inputs": meta, "complete": False})
    state.wait_for_everyone()
    done = store.done_rows()
    device = state.device
    oracle = load_model(config.oracle, config.dtype, config.trust_remote_code, device=device,
                        attn_implementation=config.attn_implementation).eval()
    reference = load_model(config.reference, config.dtype, config.trust_remote_code, device=device,
                           attn_implementation=config.attn_implementation).eval()
    pair_tokenizer = PairTokenizer(tokenizer, TokenizeSettings(config.max_length, config.max_prompt_length))
    loaded = LoadResult(source=config.data)
    examples = iter_preferences(config.data, config.columns, config.skip_invalid, split=config.split,
                                limit=config.limit, result=loaded)
    bar = tqdm(desc="scoring", unit="pair", disable=not (config.progress and state.is_main_process))
    scored = tokens = 0
    while True:
        chunk = list(itertools.islice(examples, config.chunk_pairs * world))
        if not chunk:
            break
        mine = [ex for ex in chunk if ex.row % world == rank and ex.row not in done]
        bar.update(len(chunk))
        if not mine:
            continue
        pairs = pair_tokenizer.tokenize_batch(mine)
        records = list(score_pairs(oracle, reference, pairs, config.batch_size, tokenizer.pad_token_id, config.beta,
                                   device, config.share_prompt, config.packing))
        records.sort(key=lambda r: r["row"])
        store.write({c: [r[c] for r in records] for c in COLUMNS})
        scored += len(records)
        tokens += sum(p.num_tokens for p in pairs)
    bar.close()
    state.wait_for_everyone()
    total = len(store.done_rows())
    if state.is_main_process:
        store.write_meta({"fingerprint": fingerprint(meta), "inputs": meta, "complete": True, "rows": total,
                          "oracle_model": config.oracle, "reference_model": config.reference,
                          "rows_read": loaded.total_rows, "rows_skipped": len(loaded.rejected),
                          "tokenize": pair_tokenizer.report.summary()})
    state.wait_for_everyone()
    return ScoreResult(Path(config.output_dir), scored, total, time.perf_counter() - started, tokens)


def scores_complete(folder: str | Path, config: ScoreConfig | None = None, tokenizer=None) -> bool:
    """True when `folder` holds a finished scoring run (of these inputs, when a config is given)."""
    meta = ShardStore(folder).read_meta()
    if not meta or not meta.get("complete"):
        return False
    return config is None or meta.get("fingerprint") == fingerprint(score_meta(config, tokenizer))


def plan_scoring(config: ScoreConfig, plan=None):
    """`tokensift score --check`: the checks score_tokens makes before it loads the models, and what it would do."""
    from tokensift.data.load import load_preferences
    from tokensift.fsutil import check_writable
    from tokensift.preflight import Plan, check_tokenizer, locate_model

    plan = plan or Plan("score")
    check_writable(config.output_dir)
    oracle, reference = locate_model(config.oracle), locate_model(config.reference)
    plan.add("oracle", f"{config.oracle}: {oracle.description}")
    plan.add("reference", f"{config.reference}: {reference.description}")
    tokenizer = check_tokenizer(oracle, config.trust_remote_code)
    if not same_tokenizer(tokenizer, check_tokenizer(reference, config.trust_remote_code)):
        raise UserError("the oracle and its reference use different tokenizers; token scores need one vocabulary")
    loaded = load_preferences(config.data, columns=config.columns, skip_invalid=config.skip_invalid,
                              split=config.split, limit=config.limit)
    plan.add("data", loaded.summary())
    store = ShardStore(config.output_dir)
    if oracle.folder is None or reference.folder is None:
        plan.add("output_dir", f"{config.output_dir}: compared with these inputs once the models are fetched")
        return plan
    meta = score_meta(config, tokenizer)
    if not config.overwrite:
        check_store(store, meta, overwrite=False)  # scores of other inputs: the run's own error
    existing = store.read_meta()
    same = existing is not None and existing.get("fingerprint") == fingerprint(meta)
    done = len(store.done_rows()) if same else 0
    if same and existing.get("complete"):
        text = "scored already with these inputs (the run rewrites nothing)"
    elif done:
        text = f"{done:,} pairs scored already with these inputs; scoring continues"
    else:
        text = "replaced (overwrite=true)" if existing is not None else "a new scores folder"
    plan.add("output_dir", f"{config.output_dir}: {text}")
    plan.add("work", f"{max(len(loaded.examples) - done, 0):,} pairs through the oracle and the reference (no-grad, "
                     f"batch_size {config.batch_size})")
    return plan
