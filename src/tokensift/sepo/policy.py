"""SePO policy training: reference-free, on the key tokens that stored oracle scores select.

The policy may be a different (larger) model than the oracle: weak-to-strong. With the same tokenizer the
stored token ids are used as they are (verified: same vocabulary, specials and chat template). With another
tokenizer the user must ask for projection: each response is re-tokenised for the policy and the oracle's
scores are carried over through character spans (sepo/project.py).
"""

from __future__ import annotations

import logging
import os

import numpy as np

from tokensift.data.load import load_preferences
from tokensift.data.tokenize import TokenizedPair, render_prompt
from tokensift.errors import UserError
from tokensift.models import load_tokenizer, tokenizer_fingerprint
from tokensift.sepo.project import continuation_offsets, project_scores
from tokensift.sepo.score import load_scores
from tokensift.sepo.select import Selection, selection_masks
from tokensift.train.config import TrainConfig
from tokensift.train.data import PairSet, split_eval
from tokensift.train.loop import TrainData

log = logging.getLogger(__name__)


def _project_side(oracle_tokenizer, policy_tokenizer, messages, text, scored_ids, scores):
    """Policy ids and projected scores of one response; only the characters the oracle scored count."""
    src_ids, src_spans = continuation_offsets(oracle_tokenizer, messages, text)
    n = len(scored_ids)
    if list(src_ids[:n]) != list(scored_ids):
        raise UserError("the data no longer tokenises to the scored ids; was it changed after scoring?")
    dst_ids, dst_spans = continuation_offsets(policy_tokenizer, messages, text)
    if n < len(src_ids):  # the scored response was truncated: keep the policy tokens inside its characters
        limit = src_spans[n - 1][1]
        keep = [i for i, (a, b) in enumerate(dst_spans) if a < b <= limit]
        dst_ids, dst_spans = dst_ids[keep], [dst_spans[i] for i in keep]
    return dst_ids, project_scores(src_spans[:n], scores, dst_spans)


def projected_records(config: TrainConfig, meta: dict, records: dict, policy_tokenizer) -> dict:
    """Re-tokenise every scored pair for the policy and project the oracle's scores onto its tokens."""
    oracle_tokenizer = load_tokenizer(meta["oracle_model"])
    source = config.data or meta["inputs"]["source"]
    loaded = load_preferences(source, columns=config.columns or meta["inputs"].get("columns"), skip_invalid=True,
                              rejects_path=os.devnull, split=config.split)
    special = not getattr(policy_tokenizer, "chat_template", None)
    out = {}
    for ex in loaded.examples:
        rec = records.get(ex.row)
        if rec is None:
            continue
        new = {"row": ex.row, "prompt_ids": np.asarray(
            policy_tokenizer(render_prompt(policy_tokenizer, ex.prompt), add_special_tokens=special)["input_ids"])}
        for side, text in (("chosen", ex.chosen), ("rejected", ex.rejected)):
            try:
                new[f"{side}_ids"], new[f"{side}_scores"] = _project_side(
                    oracle_tokenizer, policy_tokenizer, ex.prompt, text, rec[f"{side}_ids"], rec[f"{side}_scores"])
            except UserError as exc:
                raise UserError(f"{source}, row {ex.row}, {side}: {exc}") from None
        out[ex.row] = new
    return out


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
    pairs = [TokenizedPair(row, r["prompt_ids"], r["chosen_ids"], r["rejected_ids"]) for row, r in sorted(records.items())]
    if config.limit:
        pairs = pairs[: config.limit]
    train, held = split_eval(pairs, config.eval_fraction, config.seed)
    selection = Selection(config.selection, config.k_chosen, config.k_rejected, config.reward_mass).fit(
        [records[p.row]["chosen_scores"] for p in train], [records[p.row]["rejected_scores"] for p in train]
    )

    def select(batch_pairs, batch):
        return selection_masks(selection, [records[p.row]["chosen_scores"] for p in batch_pairs],
                               [records[p.row]["rejected_scores"] for p in batch_pairs], batch.response_mask.shape[1])

    fp = meta["fingerprint"]
    notes = [f"{len(pairs)} scored pairs from {config.scores}" + (" (projected onto the policy tokenizer)" if projected else "")]
    return TrainData(
        train=PairSet(config.scores, fp, train, notes),
        eval=PairSet(config.scores, fp, held) if held else None,
        select=select,
        extra_meta={"scores": config.scores, "scores_fingerprint": fp, "selection": selection.__dict__,
                    "projected": projected},
    )


