"""Stored token scores: the record layout `tokensift score` writes, reading it back, and carrying the scores onto
another tokenizer's tokens.

A scoring run (sepo/score.py) leaves Parquet shards of one record per pair: the row, the oracle's token ids of the
prompt and both responses, and one float per response token (`COLUMNS`), plus a meta.json (the inputs'
fingerprint, the oracle, the data's source). Whoever trains on the scores reads them here: the training entry
(train/run.py), `tokensift show`, the Python API's `select_tokens`, and the oracle and soft selectors through them.

Why a base module and not sepo/: the layers (docs/contributing.md) let train/ import nothing from sepo/, yet
`tokensift train scores=DIR` must read the scores. The record layout is a file format shared by its one writer
and its readers, and projecting records onto another tokenizer needs only data/ and projection.py, so both live
below train/, which reads them directly. (A score source that sepo/ registered and train/ looked up would only
exist once something had imported sepo/: a call to train/run.py alone would find none.) SePO still owns what
makes scores: the oracle, the scoring job and its fingerprint (sepo/).

The policy may be a different (larger) model than the oracle: weak-to-strong. With the same tokenizer the stored
token ids are used as they are (verified: same vocabulary, specials and chat template). With another tokenizer
the user must ask for projection: each response is re-tokenised for the policy and the oracle's scores are
carried over through the reply's bytes (projection.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tokensift.data.chat_format import encode_prompt
from tokensift.data.load import load_preferences
from tokensift.errors import UserError
from tokensift.models import load_tokenizer
from tokensift.projection import project_scores, response_spans
from tokensift.shards import ShardStore

COLUMNS = ("row", "prompt_ids", "chosen_ids", "rejected_ids", "chosen_scores", "rejected_scores")


def scores_meta(folder: str | Path) -> dict:
    """The meta.json of a finished scoring run (its inputs, the oracle and reference names, counts)."""
    meta = ShardStore(folder).read_meta()
    if not meta:
        raise UserError(f"{folder} holds no token scores (no meta.json); run `tokensift score` first")
    if not meta.get("complete"):
        raise UserError(f"the scoring run in {folder} did not finish; rerun `tokensift score` to complete it")
    return meta


def load_scores(folder: str | Path) -> tuple[dict, dict[int, dict]]:
    """(meta, row -> record) of a finished scoring run, with numpy arrays."""
    meta = scores_meta(folder)
    table = ShardStore(folder).read(list(COLUMNS))
    records = {}
    for batch in table.to_batches():
        cols = {c: batch.column(c).to_pylist() for c in COLUMNS}
        for i, row in enumerate(cols["row"]):
            records[row] = {c: (np.asarray(cols[c][i]) if c != "row" else row) for c in COLUMNS}
    return meta, records


def _truncated_prefix(dst, limit: int) -> int:
    """How many policy tokens lie within the first `limit` bytes of the reply (a prefix of its tokens)."""
    keep, seen_reply = 0, False
    for (a, b), structural in zip(dst.bytes, dst.structural):
        if b > limit or (structural and seen_reply):  # past the scored bytes, or the turn end after the reply
            break
        seen_reply = seen_reply or not structural
        keep += 1
    return keep


def _project_side(oracle_tokenizer, policy_tokenizer, messages, text, scored_ids, scores):
    """Policy ids and projected scores of one response; only the bytes the oracle scored count."""
    src = response_spans(oracle_tokenizer, messages, text)
    n = len(scored_ids)
    if list(src.ids[:n]) != list(scored_ids):
        raise UserError("the data no longer tokenises to the scored ids; was it changed after scoring?")
    dst = response_spans(policy_tokenizer, messages, text)
    keep = len(dst.ids)
    if n < len(src.ids):  # the scored response was truncated: keep the policy tokens inside its bytes
        keep = _truncated_prefix(dst, max((b for _, b in src.bytes[:n]), default=0))
    scores = project_scores(src.bytes[:n], scores, dst.bytes[:keep], src.structural[:n], dst.structural[:keep])
    return dst.ids[:keep], scores


def projected_records(meta: dict, records: dict, policy_tokenizer, data: str | None = None,
                      columns: str | None = None, split: str | None = None) -> dict:
    """Re-tokenise every scored pair for the policy and project the oracle's scores onto its tokens. The pairs'
    texts come from `data` (default: the scored data's source) read with `columns` and `split`."""
    oracle_tokenizer = load_tokenizer(meta["oracle_model"])
    source = data or meta["inputs"]["source"]
    loaded = load_preferences(source, columns=columns or meta["inputs"].get("columns"), skip_invalid=True,
                              rejects_path=os.devnull, split=split)
    out = {}
    for ex in loaded.examples:
        rec = records.get(ex.row)
        if rec is None:
            continue
        new = {"row": ex.row, "prompt_ids": np.asarray(encode_prompt(policy_tokenizer, ex.prompt))}
        for side, text in (("chosen", ex.chosen), ("rejected", ex.rejected)):
            try:
                new[f"{side}_ids"], new[f"{side}_scores"] = _project_side(
                    oracle_tokenizer, policy_tokenizer, ex.prompt, text, rec[f"{side}_ids"], rec[f"{side}_scores"])
            except UserError as exc:
                raise UserError(f"{source}, row {ex.row}, {side}: {exc}") from None
        out[ex.row] = new
    return out
