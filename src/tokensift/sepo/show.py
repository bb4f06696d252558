"""`tokensift show`: an HTML page of scored pairs, every token coloured by its score, key tokens outlined."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tokensift.config import option
from tokensift.errors import UserError
from tokensift.models import load_tokenizer
from tokensift.sepo.score import load_scores
from tokensift.sepo.select import Selection
from tokensift.train.config import SELECTIONS
from tokensift.viz.heatmap import render_heatmap


@dataclass
class ShowConfig:
    scores: str = option("", "Folder of token scores written by `tokensift score`.")
    output: str = option("token-scores.html", "The HTML file to write (self-contained, opens offline).")
    pairs: int = option(200, "How many pairs to include (the first N rows).")
    k_chosen: float = option(0.3, "Share of chosen tokens outlined as selected (highest scores).")
    k_rejected: float = option(0.3, "Share of rejected tokens outlined as selected (lowest scores).")
    selection: str = option("per_response", f"Selection strategy: {', '.join(SELECTIONS)}.")
    reward_mass: float = option(0.8, "reward_mass strategy: share of a response's reward its key tokens carry.")
    tokenizer: str | None = option(None, "Tokenizer to decode the ids (default: the oracle's, from the scores).")

    def validate(self) -> None:
        if not self.scores:
            raise UserError("show needs scores=DIR (from `tokensift score`)")
        if self.pairs < 1:
            raise UserError(f"pairs must be at least 1, got {self.pairs}")
        for name in ("k_chosen", "k_rejected", "reward_mass"):
            if not 0 < getattr(self, name) <= 1:
                raise UserError(f"{name} must lie in (0, 1], got {getattr(self, name)}")
        if self.selection not in SELECTIONS:
            raise UserError(f"unknown selection '{self.selection}'; choose one of {', '.join(SELECTIONS)}")


def token_texts(tokenizer, ids) -> list[str]:
    return [tokenizer.decode([int(i)]) for i in ids]


def show_scores(config: ShowConfig) -> Path:
    meta, records = load_scores(config.scores)
    tokenizer = load_tokenizer(config.tokenizer or meta.get("oracle_model") or "")
    rows = sorted(records)
    selection = Selection(config.selection, config.k_chosen, config.k_rejected, config.reward_mass).fit(
        [records[r]["chosen_scores"] for r in rows], [records[r]["rejected_scores"] for r in rows]
    )
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
