"""Training on selected tokens: SePO's policy stage (reference-free, on the key tokens stored oracle scores select),
and any loss with a token selector (selectors.py), fitted on the training split.

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
from tokensift.selectors import SELECTORS, build_selector
from tokensift.train.config import TrainConfig
from tokensift.train.data import PairSet, TrainData, load_training_data, split_eval

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


def scored_pairs(config: TrainConfig, tokenizer):
    """(records, fingerprint, note, projected, the scored data's source) of the stored scores, projected onto the
    policy's tokenizer when it differs from the oracle's and the user allowed it."""
    meta, records = load_scores(config.scores)
    projected = meta["inputs"]["tokenizer"] != tokenizer_fingerprint(tokenizer)
    if projected:
        if not config.allow_projection:
            raise UserError(
                f"the policy '{config.model}' does not share the oracle's tokenizer (vocabulary, special tokens or "
                "chat template differ), so the stored token scores do not apply to its tokens. Use a policy of the "
                "oracle's family, or pass allow_projection=true to project the scores through character offsets"
            )
        records = projected_records(config, meta, records, tokenizer)
    note = f"{len(records)} scored pairs from {config.scores}" + (
        " (projected onto the policy tokenizer)" if projected else "")
    return records, meta["fingerprint"], note, projected, meta["inputs"].get("source")


def selected_train_data(config: TrainConfig, tokenizer) -> TrainData:
    """The pairs and the token selector of a run with `selector` (selectors.py), fitted on the training split.

    With `scores` the pairs come from the stored scores (SePO: the oracle's tokens); without, from `data`.
    """
    name = config.active_selector
    meta: dict = {"selector": name}
    if config.scores:
        records, fp, note, projected, source = scored_pairs(config, tokenizer)
        train_rows, held_rows = training_rows(records, config.limit, config.eval_fraction, config.seed)
        train, held = ([TokenizedPair(row, records[row]["prompt_ids"], records[row]["chosen_ids"],
                                      records[row]["rejected_ids"]) for row in rows] for rows in (train_rows, held_rows))
        scores = {row: (rec["chosen_scores"], rec["rejected_scores"]) for row, rec in records.items()}
        data = TrainData(train=PairSet(config.scores, fp, train, [note]),
                         eval=PairSet(config.scores, fp, held) if held else None)
        meta.update(scores=config.scores, scores_fingerprint=fp, projected=projected, data_source=source)
    else:
        data, scores = load_training_data(config, tokenizer), None
    chosen = build_selector(name, config, scores, [p.row for p in data.train.pairs])
    if hasattr(chosen, "selection"):
        meta["selection"] = chosen.selection.__dict__
    data.select, data.reference_tokens = chosen, "reference" in SELECTORS[name].reads
    data.extra_meta.update(meta)
    return data


def train_policy(config: TrainConfig, tokenizer=None, given=None):
    """Train on the tokens the configured selector picks (`tokensift train loss=sepo scores=DIR`, or any loss with
    `selector=...`). given: model objects handed over in Python (tokensift.given.Given)."""
    from tokensift.train.loop import train

    return train(config, selected_train_data, tokenizer, given)


def train_run(config: TrainConfig, tokenizer=None, given=None):
    """Train with any loss: on the configured selector's tokens when one is active (loss=sepo reads the oracle's
    from `scores`), else on every response token. What `tokensift train`, the Python API and sweeps call.
    given: model objects handed over in Python (tokensift.given.Given)."""
    from tokensift.train.loop import train

    if config.active_selector != "none":
        return train_policy(config, tokenizer, given)
    return train(config, tokenizer=tokenizer, given=given)
