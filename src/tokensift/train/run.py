"""The one training entry, for any loss: on the tokens the configured selector picks when one is active (selected-token
DPO, SePO's key tokens from stored scores, ConfPO ...), else on every response token. What `tokensift train`, the
Python API (`train_model`), sweeps and the SePO pipeline call (whether a run's folder holds it already: train/run_folder.py).

With `scores` the pairs come from stored token scores (scores.py, projected onto the policy's tokenizer when it
differs from the oracle's and the user allowed it), else from `data`; either way the selector is fitted on the
training split only. Stored scores are read through the base layer, never through sepo/ (docs/contributing.md's
layers): see scores.py for why.
"""

from __future__ import annotations

from tokensift.data.tokenize import TokenizedPair
from tokensift.errors import UserError
from tokensift.models import tokenizer_fingerprint
from tokensift.scores import load_scores, projected_records
from tokensift.selectors import SELECTORS, build_selector
from tokensift.train.config import TrainConfig
from tokensift.train.data import PairSet, TrainData, load_training_data, split_eval


def train_run(config: TrainConfig, tokenizer=None, given=None, callbacks=None):
    """Train with any loss: on the configured selector's tokens when one is active (loss=sepo reads the oracle's
    from `scores`), else on every response token. tokenizer: the policy's (default: loaded from `config.model`).
    given: model objects handed over in Python (tokensift.given.Given). callbacks: train/callbacks.py."""
    from tokensift.train.loop import train

    return train(config, data_of(config), tokenizer, given, callbacks)


def data_of(config: TrainConfig):
    """What a run of `config` trains on, as `train()` and the preflight take it: the selector's pairs and tokens
    (selected_train_data) when a selector is active, else None (every response token of `data`)."""
    return selected_train_data if config.active_selector != "none" else None


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
        records = projected_records(meta, records, tokenizer, config.data, config.columns, config.split)
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
