"""What `tokensift.select_tokens` returns: per scored pair, the tokens training selects, with their text and scores.

A `SelectedPair` is still the `(chosen mask, rejected mask)` tuple of boolean arrays it always was (unpacking and
`[0]` / `[1]` work as before), and also carries both responses (`.chosen`, `.rejected`: a `SelectedSide` with
ids, scores, mask, the decoded tokens and the selected tokens' text). Decoding uses the oracle's tokenizer
(named in the scores' meta.json), loaded once, on first use, for all the pairs of one call.
"""

from __future__ import annotations

import functools
import html
from dataclasses import dataclass, field

import numpy as np

from tokensift.train.run import training_rows

SHOWN = 12  # selected tokens a repr lists


class TokenText:
    """Token ids to text with one tokenizer: the object given, else loaded by name on first use; every id is
    decoded once per call."""

    def __init__(self, name: str | None = None, tokenizer=None):
        self.name = name
        self._tokenizer = tokenizer
        self._pieces: dict[int, str] = {}

    @functools.cached_property
    def tokenizer(self):
        if self._tokenizer is not None:
            return self._tokenizer
        from tokensift.errors import UserError
        from tokensift.models import load_tokenizer

        if not self.name:
            raise UserError("the scores name no oracle to decode their tokens with: pass processing_class=")
        return load_tokenizer(self.name)

    def pieces(self, ids) -> list[str]:
        """Each token's own text (a token that is part of a multi-byte character may show as '\ufffd')."""
        ids = [int(i) for i in ids]
        new = sorted({i for i in ids if i not in self._pieces})
        if new:
            self._pieces.update(zip(new, self.tokenizer.batch_decode([[i] for i in new])))
        return [self._pieces[i] for i in ids]

    def text(self, ids) -> str:
        return self.tokenizer.decode([int(i) for i in ids])


@dataclass(eq=False)
class SelectedSide:
    """One response of a pair: its token ids, the oracle's per-token scores and the selection mask (all [T])."""

    ids: np.ndarray
    scores: np.ndarray
    mask: np.ndarray
    decoder: TokenText = field(repr=False)

    @property
    def tokens(self) -> list[str]:
        """Every token's text, in order."""
        return self.decoder.pieces(self.ids)

    def selected_tokens(self) -> list[str]:
        """The selected tokens' texts, in order."""
        return self.decoder.pieces(self.ids[self.mask])

    @property
    def text(self) -> str:
        """The selected tokens decoded together (tokenizer.decode of the selected ids)."""
        return self.decoder.text(self.ids[self.mask])

    @property
    def response(self) -> str:
        """The whole response, decoded."""
        return self.decoder.text(self.ids)

    def __len__(self) -> int:
        return len(self.mask)

    def __repr__(self) -> str:
        chosen = self.selected_tokens()
        more = f" ... +{len(chosen) - SHOWN}" if len(chosen) > SHOWN else ""
        return f"{int(self.mask.sum())} of {len(self.mask)} tokens: {chosen[:SHOWN]!r}{more}"

    def _repr_html_(self) -> str:
        spans = []
        for piece, score, selected in zip(self.tokens, self.scores, self.mask):
            style = "background:#ffe08a;font-weight:bold;" if selected else "color:#555;"
            spans.append(f'<span style="{style}white-space:pre-wrap" title="{float(score):.4g}">'
                         f"{html.escape(piece)}</span>")
        return "".join(spans)


class SelectedPair(tuple):
    """One pair's selection: the tuple (chosen mask, rejected mask), plus `.row`, `.chosen` and `.rejected`
    (SelectedSide: ids, scores, mask, tokens, text, selected_tokens())."""

    def __new__(cls, row: int, chosen: SelectedSide, rejected: SelectedSide):
        self = super().__new__(cls, (chosen.mask, rejected.mask))
        self.row, self.chosen, self.rejected = row, chosen, rejected
        return self

    def __getnewargs__(self):
        return self.row, self.chosen, self.rejected

    def __repr__(self) -> str:
        return f"SelectedPair(row={self.row}, chosen: {self.chosen!r}; rejected: {self.rejected!r})"

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><th style='text-align:left;vertical-align:top'>{name}<br><small>{int(side.mask.sum())} of "
                       f"{len(side)}</small></th><td style='text-align:left'>{side._repr_html_()}</td></tr>"
                       for name, side in (("chosen", self.chosen), ("rejected", self.rejected)))
        return f"<div><b>row {self.row}</b>: selected tokens highlighted<table>{rows}</table></div>"


def fitted_on_training_rows(records: dict, selection, limit: int | None, eval_fraction: float, seed: int):
    """`selection` (SelectionArgs) fitted on the scored pairs a training run with `limit`, `eval_fraction` and `seed`
    trains on, as training fits it: what `select_tokens` and `tokensift show` show."""
    fit, _ = training_rows(records, limit, eval_fraction, seed)
    return selection.fitted_selection([records[r]["chosen_scores"] for r in fit],
                                      [records[r]["rejected_scores"] for r in fit])


def selections(records: dict, selection, limit: int | None, eval_fraction: float, seed: int,
               decoder: TokenText) -> dict[int, SelectedPair]:
    """row -> SelectedPair for every scored pair, with `selection` (SelectionArgs) fitted on the training rows
    (fitted_on_training_rows)."""
    fitted = fitted_on_training_rows(records, selection, limit, eval_fraction, seed)
    out = {}
    for row, rec in records.items():
        chosen = SelectedSide(np.asarray(rec["chosen_ids"]), np.asarray(rec["chosen_scores"]),
                              fitted.chosen(rec["chosen_scores"]), decoder)
        rejected = SelectedSide(np.asarray(rec["rejected_ids"]), np.asarray(rec["rejected_scores"]),
                                fitted.rejected(rec["rejected_scores"]), decoder)
        out[row] = SelectedPair(row, chosen, rejected)
    return out
