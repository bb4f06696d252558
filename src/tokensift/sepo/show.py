"""`tokensift show`: an HTML page of scored pairs, every token coloured by its score, key tokens outlined.

The outlined tokens are the ones training selects: the same selection settings (selection.SelectionArgs), fitted
on the same rows (the training split that `limit`, `eval_fraction` and `seed` give, train/run.training_rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tokensift.config import option
from tokensift.errors import UserError
from tokensift.models import load_tokenizer
from tokensift.selection import SelectionArgs
from tokensift.scores import load_scores
from tokensift.train.run import training_rows
from tokensift.viz.heatmap import render_heatmap


@dataclass
class ShowConfig(SelectionArgs):
    scores: str = option("", "Folder of token scores written by `tokensift score`.")
    output: str = option("token-scores.html", "The HTML file to write (self-contained, opens offline).")
    pairs: int = option(200, "How many pairs to include (the first N rows).")
    limit: int | None = option(None, "As in the training run whose selection to show: its first N scored pairs.")
    eval_fraction: float = option(0.0, "As in the training run: the seeded share held aside (the selection is fitted on the rest).")
    seed: int = option(0, "As in the training run: the seed of its held-out split.")
    tokenizer: str | None = option(None, "Tokenizer to decode the ids (default: the oracle's, from the scores).")

    def validate(self) -> None:
        if not self.scores:
            raise UserError("show needs scores=DIR (from `tokensift score`)")
        if self.pairs < 1:
            raise UserError(f"pairs must be at least 1, got {self.pairs}")
        self.validate_selection()
        if not 0 <= self.eval_fraction < 1:
            raise UserError(f"eval_fraction must lie in [0, 1), got {self.eval_fraction}")


def token_texts(tokenizer, ids) -> list[str]:
    return [tokenizer.decode([int(i)]) for i in ids]


def show_scores(config: ShowConfig) -> Path:
    meta, records = load_scores(config.scores)
    tokenizer = load_tokenizer(config.tokenizer or meta.get("oracle_model") or "")
    rows = sorted(records)
    fit, _ = training_rows(rows, config.limit, config.eval_fraction, config.seed)
    selection = config.fitted_selection([records[r]["chosen_scores"] for r in fit],
                                        [records[r]["rejected_scores"] for r in fit])
    pairs = []
    for row in rows[: config.pairs]:
        rec = records[row]
        pairs.append({
            "row": row,
            "prompt": tokenizer.decode([int(i) for i in rec["prompt_ids"]]),
            "chosen": {"tokens": token_texts(tokenizer, rec["chosen_ids"]), "scores": rec["chosen_scores"].tolist(),
                       "selected": selection.chosen(rec["chosen_scores"]).tolist()},
            "rejected": {"tokens": token_texts(tokenizer, rec["rejected_ids"]),
                         "scores": rec["rejected_scores"].tolist(),
                         "selected": selection.rejected(rec["rejected_scores"]).tolist()},
        })
    info = {"oracle": meta.get("oracle_model"), "reference": meta.get("reference_model"),
            "data": meta["inputs"].get("source"), "beta": meta["inputs"].get("beta"),
            "selection": config.selection, "k_chosen": config.k_chosen, "k_rejected": config.k_rejected,
            "pairs shown": f"{len(pairs)} of {len(rows)}"}
    try:
        return render_heatmap(pairs, config.output, title="tokensift: oracle token rewards", meta=info)
    except OSError as exc:  # e.g. the output's folder is a file, or read-only
        raise UserError(f"cannot write {config.output}: {exc.strerror or exc}") from None
