"""Key-token precision on the sentiment pairs: the share of a selector's chosen tokens that lie on VADER-positive
words, against random tokens in the same numbers per response (the lift), for every selector and for oracles
trained on more data and longer. Imported by run.py."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np


def vader_scorer():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    return analyzer, (lambda text: analyzer.polarity_scores(text)["compound"])


def positive_flags(pairs: Path, records: dict, tokenizer) -> dict[int, np.ndarray]:
    """row -> for each stored chosen token, whether it overlaps a VADER-positive word of the chosen text."""
    from tokensift.data.load import load_preferences
    from tokensift.projection import response_spans

    analyzer, _ = vader_scorer()
    positive = {w for w, v in analyzer.lexicon.items() if v > 0}
    flags = {}
    for ex in load_preferences(str(pairs)).examples:
        rec = records.get(ex.row)
        if rec is None:
            continue
        spans = response_spans(tokenizer, ex.prompt, ex.chosen)
        n = len(rec["chosen_ids"])
        if list(spans.ids[:n]) != list(rec["chosen_ids"]):
            raise RuntimeError(f"row {ex.row}: the chosen response no longer tokenises to the scored ids")
        words = [(m.start(), m.end()) for m in re.finditer(r"[A-Za-z']+", ex.chosen) if m.group().lower() in positive]
        flags[ex.row] = np.array([b > a and any(a < we and b > ws for ws, we in words) for a, b in spans.chars[:n]])
    return flags


class Tally:
    """Selected (or weighted) chosen tokens on positive words, against the same counts drawn at random."""

    def __init__(self):
        self.hit = self.picked = self.expected = self.best = 0.0

    def add(self, weights: np.ndarray, positive: np.ndarray) -> None:
        total = float(weights.sum())
        self.hit += float(weights[positive].sum())
        self.picked += total
        self.expected += total * positive.mean()
        self.best += min(total, float(positive.sum()))  # every selected token on a positive word, while any are left

    def result(self) -> dict:
        precision, expected = self.hit / self.picked, self.expected / self.picked
        return {"selected": self.picked, "precision": precision, "expected": expected, "lift": precision / expected,
                "ceiling_lift": self.best / self.picked / expected}


def oracle_precision(pairs: Path, scores: Path, tokenizer) -> dict:
    """The oracle's per_response selection at k = 0.1 and 0.3 (the ceiling: a perfect ranking at the same k)."""
    from tokensift.selection import Selection
    from tokensift.scores import load_scores

    _, records = load_scores(scores)
    flags = positive_flags(pairs, records, tokenizer)
    out = {}
    for k in (0.1, 0.3):
        tally, selection = Tally(), Selection("per_response", k, k)
        for row, positive in flags.items():
            tally.add(selection.chosen(records[row]["chosen_scores"]).astype(float), positive)
        out[f"k={k:g}"] = tally.result()
    return out


def key_token_precision(args, out: Path, pairs: Path, scores: Path, tokenizer, base, trained: Path) -> dict:
    """Every selector's chosen tokens through the real selectors on real batches. confidence reads the start
    policy; reference_gap a trained policy (DPO at the middle learning rate) against the start model."""
    import torch

    from tokensift.config import build
    from tokensift.data.collate import collate_pairs, pad_2d
    from tokensift.data.tokenize import TokenizedPair
    from tokensift.models import load_model
    from tokensift.selectors import SELECTORS, build_selector
    from tokensift.scores import load_scores
    from tokensift.train.config import TrainConfig
    from tokensift.train.ref_cache import iter_pair_logps

    _, records = load_scores(scores)
    flags = positive_flags(pairs, records, tokenizer)
    pairs_ = [TokenizedPair(r, records[r]["prompt_ids"], records[r]["chosen_ids"], records[r]["rejected_ids"])
              for r in sorted(flags)]
    config = build(TrainConfig, {"data": str(pairs), "loss": "sepo", "scores": str(scores), "k_chosen": 0.3,
                                 "k_rejected": 0.3})
    score_map = {r: (records[r]["chosen_scores"], records[r]["rejected_scores"]) for r in flags}
    pad = tokenizer.pad_token_id

    def per_token(model):
        return {p.row: (c, r) for p, c, r in iter_pair_logps(model, pairs_, 16, pad, torch.device("cpu"))}

    start = per_token(base)
    moved = per_token(load_model(str(trained)).eval())
    results = {}
    for name in SELECTORS:
        selector = build_selector(name, config, score_map, [p.row for p in pairs_])
        policy = moved if name == "reference_gap" else start
        tally = Tally()
        for i in range(0, len(pairs_), 16):
            group = pairs_[i : i + 16]
            batch = collate_pairs(group, pad, ref_token_logps=start)
            width = batch.response_mask.shape[1]
            logps = pad_2d([policy[p.row][0] for p in group] + [policy[p.row][1] for p in group], 0.0,
                           torch.float32, width=width)
            chosen = selector(batch, logps).float()[: len(group)].numpy()
            for j, p in enumerate(group):
                tally.add(chosen[j, : len(p.chosen_ids)], flags[p.row])
        results[name] = tally.result()
    return results
