"""SePO policy training: reference-free, on the key tokens that stored oracle scores select.

The policy may be a different (larger) model than the oracle: weak-to-strong. With the same tokenizer the
stored token ids are used as they are (verified: same vocabulary, specials and chat template). With another
tokenizer the user must ask for projection: each response is re-tokenised for the policy and the oracle's
scores are carried over through the reply's bytes (sepo/project.py).
"""

from __future__ import annotations

import logging
import os

import numpy as np

from tokensift.data.load import load_preferences
from tokensift.data.chat_format import encode_prompt
from tokensift.data.tokenize import TokenizedPair
from tokensift.errors import UserError
from tokensift.models import load_tokenizer, tokenizer_fingerprint
from tokensift.sepo.project import project_scores, response_spans
from tokensift.sepo.score import load_scores
from tokensift.selection import selection_masks
from tokensift.train.config import TrainConfig
from tokensift.train.data import PairSet, TrainData, split_eval

log = logging.getLogger(__name__)


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


def projected_records(config: TrainConfig, meta: dict, records: dict, policy_tokenizer) -> dict:
    """Re-tokenise every scored pair for the policy and project the oracle's scores onto its tokens."""
    oracle_tokenizer = load_tokenizer(meta["oracle_model"])
    source = config.data or meta["inputs"]["source"]
    loaded = load_preferences(source, columns=config.columns or meta["inputs"].get("columns"), skip_invalid=True,
                              rejects_path=os.devnull, split=config.split)
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


def training_rows(rows, limit: int | None, eval_fraction: float, seed: int) -> tuple[list, list]:
    """(train, held-out) rows of the scored pairs, as a training run with these settings splits them.

    The selection is fitted on the train rows, by training and by `tokensift show` alike.
    """
    rows = sorted(rows)
    if limit:
        rows = rows[:limit]
    return split_eval(rows, eval_fraction, seed)


def sepo_train_data(config: TrainConfig, tokenizer) -> TrainData:
    meta, records = load_scores(config.scores)
    same = meta["inputs"]["tokenizer"] == tokenizer_fingerprint(tokenizer)
    projected = False
    if not same:
        if not config.allow_projection:
            raise UserError(
                f"the policy '{config.model}' does not share the oracle's tokenizer (vocabulary, special tokens or "
                "chat template differ), so the stored token scores do not apply to its tokens. Use a policy of the "
                "oracle's family, or pass allow_projection=true to project the scores through character offsets"
            )
        records = projected_records(config, meta, records, tokenizer)
        projected = True
    train_rows, held_rows = training_rows(records, config.limit, config.eval_fraction, config.seed)
    train, held = ([TokenizedPair(row, records[row]["prompt_ids"], records[row]["chosen_ids"],
                                  records[row]["rejected_ids"]) for row in rows] for rows in (train_rows, held_rows))
    selection = config.fitted_selection([records[r]["chosen_scores"] for r in train_rows],
                                        [records[r]["rejected_scores"] for r in train_rows])

    def select(batch_pairs, batch):
        return selection_masks(selection, [records[p.row]["chosen_scores"] for p in batch_pairs],
                               [records[p.row]["rejected_scores"] for p in batch_pairs], batch.response_mask.shape[1])

    fp = meta["fingerprint"]
    notes = [f"{len(train) + len(held)} scored pairs from {config.scores}" + (" (projected onto the policy tokenizer)" if projected else "")]
    return TrainData(
        train=PairSet(config.scores, fp, train, notes),
        eval=PairSet(config.scores, fp, held) if held else None,
        select=select,
        extra_meta={"scores": config.scores, "scores_fingerprint": fp, "selection": selection.__dict__,
                    "data_source": meta["inputs"].get("source"),
                    "projected": projected},
    )


def train_policy(config: TrainConfig, tokenizer=None):
    """Train the policy on the key tokens the stored scores select (`tokensift train loss=sepo scores=DIR`)."""
    from tokensift.train.loop import train

    return train(config, sepo_train_data, tokenizer)
