"""Token scores on the review page: each answer's tokens coloured by an oracle's token rewards, with the heatmap's
colours (viz/heatmap.py), when the reviewer has them.

A TSO run computes no token scores itself. They come from `tokensift score` run over a sheet of the run's
reviewed pairs (docs/tso.md, "Review in the browser"):

    tokensift tso review output_dir=runs/tso review_file=review.jsonl include_decided=true
    tokensift score data=review.jsonl columns=chosen=chosen_text,rejected=rejected_text oracle=... output_dir=S
    tokensift tso review --serve output_dir=runs/tso token_scores=S

The scores' data file (recorded in their meta.json) must carry the sheet's `pair_id` column: a scored row is
matched to its pair through it, and each side's decoded text is checked against the pair's answers (the side
whose text it is gets its scores, so a sheet scored with the columns the other way round still lands right; a
row whose text matches neither answer, or a row of a pair not on the page, is counted and left out).
"""

from __future__ import annotations

import math
from pathlib import Path

from tokensift.errors import UserError


def _same(decoded: str, text: str) -> bool:
    """The scored response is this answer: equal, or a prefix of it (scoring truncates long answers)."""
    decoded, text = decoded.strip(), text.strip()
    return bool(decoded) and (decoded == text or text.startswith(decoded)) or (not decoded and not text)


def _side(tokenizer, ids, scores) -> dict:
    pieces = tokenizer.batch_decode([[int(i)] for i in ids])
    values = [float(s) if math.isfinite(float(s)) else None for s in scores]
    return {"tokens": pieces, "scores": values, "text": tokenizer.decode([int(i) for i in ids],
                                                                         skip_special_tokens=True)}


def review_token_scores(folder: str | Path, pairs: dict) -> tuple[dict[str, dict], float, dict]:
    """(pair_id -> {"chosen": {tokens, scores}, "rejected": {...}}, the colour scale, counts) for the page's
    pairs (`pairs`: pair_id -> Pair). The scale is the heatmap's: p95 of |score| over every matched token."""
    from tokensift.data.io import iter_raw_rows
    from tokensift.models import load_tokenizer
    from tokensift.scores import load_scores
    from tokensift.viz.heatmap import robust_scale

    meta, records = load_scores(folder)
    source = (meta.get("inputs") or {}).get("source")
    if not source or not Path(source).exists():
        raise UserError(f"token_scores={folder}: their data file ({source}) is not there; the page matches scored "
                        "rows to pairs through its pair_id column")
    row_pair = {}
    for row, record in iter_raw_rows(source):
        if isinstance(record, dict) and record.get("pair_id"):
            row_pair[row] = str(record["pair_id"])
    if not row_pair:
        raise UserError(f"token_scores={folder}: their data file {source} has no pair_id column; score a sheet "
                        "written by `tokensift tso review` (docs/tso.md, 'Review in the browser')")
    tokenizer = load_tokenizer(meta.get("oracle_model") or "")
    out, counts = {}, {"scored_rows": len(records), "matched": 0, "not_on_page": 0, "text_differs": 0}
    for row, record in sorted(records.items()):
        pair = pairs.get(row_pair.get(row))
        if pair is None:
            counts["not_on_page"] += 1
            continue
        first = _side(tokenizer, record["chosen_ids"], record["chosen_scores"])
        second = _side(tokenizer, record["rejected_ids"], record["rejected_scores"])
        if _same(first["text"], pair.chosen.text) and _same(second["text"], pair.rejected.text):
            sides = {"chosen": first, "rejected": second}
        elif _same(first["text"], pair.rejected.text) and _same(second["text"], pair.chosen.text):
            sides = {"chosen": second, "rejected": first}
        else:
            counts["text_differs"] += 1
            continue
        out[pair.pair_id] = {k: {"tokens": v["tokens"], "scores": v["scores"]} for k, v in sides.items()}
        counts["matched"] += 1
    every = [s for sides in out.values() for side in sides.values() for s in side["scores"] if s is not None]
    return out, robust_scale(every), counts
