"""`tokensift show`: an HTML page of scored pairs, every token coloured by its score, key tokens ringed.

The ringed tokens are the ones training selects: the same selection settings (selection.SelectionArgs), fitted
on the same rows (the training split that `limit`, `eval_fraction` and `seed` give, train/run.training_rows).
Colours are on one scale for all shown pairs unless `scale=pair`; pairs the oracle ranks the wrong way round
(summed token rewards, chosen minus rejected, <= 0) are badged and counted (tokensift/viz/heatmap.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tokensift.config import option
from tokensift.errors import UserError
from tokensift.selection import SelectionArgs
from tokensift.viz.heatmap import SCALE_MODES


@dataclass
class ShowConfig(SelectionArgs):
    CLI_EXAMPLE = "pairs=20 k_chosen=0.2 scale=pair"

    scores: str = option("", "Folder of token scores written by `tokensift score`.")
    output: str = option("token-scores.html", "The HTML file to write (self-contained, opens offline).")
    pairs: int = option(200, "How many pairs to include (the first N rows).")
    limit: int | None = option(None, "As in the training run whose selection to show: its first N scored pairs.")
    eval_fraction: float = option(0.0, "As in the training run: the seeded share held aside (the selection is fitted on the rest).")
    seed: int = option(0, "As in the training run: the seed of its held-out split.")
    tokenizer: str | None = option(None, "Tokenizer to decode the ids (default: the oracle's, from the scores).")
    scale: str = option("global", "Colour scale the page opens on: global (one scale for all pairs shown, so an "
                        "oracle's noise looks faint) or pair (each pair on its own); the page can switch.")

    def validate(self) -> None:
        if not self.scores:
            raise UserError("show needs scores=DIR (from `tokensift score`)")
        if self.pairs < 1:
            raise UserError(f"pairs must be at least 1, got {self.pairs}")
        if self.scale not in SCALE_MODES:
            raise UserError(f"scale must be one of {', '.join(SCALE_MODES)}, got {self.scale!r}")
        self.validate_selection()
        if not 0 <= self.eval_fraction < 1:
            raise UserError(f"eval_fraction must lie in [0, 1), got {self.eval_fraction}")


def show_scores(config: ShowConfig) -> Path:
    from tokensift.models import load_tokenizer
    from tokensift.scores import load_scores
    from tokensift.sepo.selected import TokenText, fitted_on_training_rows
    from tokensift.viz.heatmap import render_heatmap

    meta, records = load_scores(config.scores)
    text = TokenText(tokenizer=load_tokenizer(config.tokenizer or meta.get("oracle_model") or ""))
    rows = sorted(records)
    selection = fitted_on_training_rows(records, config, config.limit, config.eval_fraction, config.seed)
    pairs = []
    for row in rows[: config.pairs]:
        rec = records[row]
        pairs.append({
            "row": row,
            "prompt": text.text(rec["prompt_ids"]),
            "chosen": {"tokens": text.pieces(rec["chosen_ids"]), "scores": rec["chosen_scores"].tolist(),
                       "selected": selection.chosen(rec["chosen_scores"]).tolist()},
            "rejected": {"tokens": text.pieces(rec["rejected_ids"]),
                         "scores": rec["rejected_scores"].tolist(),
                         "selected": selection.rejected(rec["rejected_scores"]).tolist()},
        })
    info = {"oracle": meta.get("oracle_model"), "reference": meta.get("reference_model"),
            "data": meta["inputs"].get("source"), "beta": meta["inputs"].get("beta"),
            "selection": config.selection, "k_chosen": config.k_chosen, "k_rejected": config.k_rejected,
            "pairs shown": f"{len(pairs)} of {len(rows)}"}
    try:
        return render_heatmap(pairs, config.output, title="tokensift: oracle token rewards", meta=info,
                              scale=config.scale)
    except OSError as exc:  # e.g. the output's folder is a file, or read-only
        raise UserError(f"cannot write {config.output}: {exc.strerror or exc}") from None


def plan_show(config: ShowConfig):
    """`tokensift show --check`: the scores are complete and readable, their tokenizer loads, the page can be
    written."""
    from tokensift.fsutil import check_writable
    from tokensift.preflight import Plan, check_tokenizer, locate_model
    from tokensift.shards import ShardStore

    plan = Plan("show")
    meta = ShardStore(config.scores).read_meta()
    if not meta:
        raise UserError(f"{config.scores} holds no token scores (no meta.json); run `tokensift score` first")
    if not meta.get("complete"):
        raise UserError(f"the scoring run in {config.scores} did not finish; rerun `tokensift score` to complete it")
    plan.add("scores", f"{config.scores}: {meta.get('rows', 0):,} scored pairs of oracle {meta.get('oracle_model')}")
    name = config.tokenizer or meta.get("oracle_model") or ""
    check_tokenizer(locate_model(name))
    plan.add("tokens", f"decoded with the tokenizer of {name}")
    plan.add("output", f"{config.output} ({check_writable(config.output, 'output')}): the first "
                       f"{min(config.pairs, meta.get('rows', 0)):,} pairs, {config.scale} colour scale")
    return plan
