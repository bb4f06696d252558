"""From a data source to tokenised train/eval pairs, and the seeded order in which training visits them."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from tokensift.data.load import load_preferences
from tokensift.data.formats import parse_columns
from tokensift.data.io import source_fingerprint
from tokensift.data.tokenize import TokenizedPair, TokenizeSettings, tokenize_examples
from tokensift.data.unpaired import load_unpaired
from tokensift.errors import DataError, UserError

log = logging.getLogger(__name__)


@dataclass
class PairSet:
    """Tokenised pairs of one source, with what is needed to fingerprint caches built from them."""

    source: str
    fingerprint: str
    pairs: list[TokenizedPair]
    notes: list[str] = field(default_factory=list)


def tokenize_settings(config) -> TokenizeSettings:
    return TokenizeSettings(max_length=config.max_length, max_prompt_length=config.max_prompt_length)


def unpaired_data(config) -> bool:
    """Whether the run's loss trains on unpaired rows (KTO, BCO: LossSpec.data)."""
    spec = getattr(config, "loss_spec", None)
    return getattr(spec, "data", "paired") == "unpaired"


def load_pairs(source: str, config, tokenizer, limit: int | None = None) -> PairSet:
    if unpaired_data(config):
        result = load_unpaired(source, config.columns, config.split, limit, getattr(config, "split_pairs", False))
    else:
        columns = parse_columns(config.columns) if config.columns else None
        result = load_preferences(
            source, columns=columns, skip_invalid=config.skip_invalid, split=config.split, limit=limit
        )
    notes = [result.summary()] if hasattr(result, "summary") else []
    if not result.examples:
        raise UserError(f"{source}: no valid preference pairs to train on")
    pairs, report = tokenize_examples(tokenizer, result.examples, tokenize_settings(config))
    if getattr(config, "margin_column", None):
        attach_margins(pairs, result.examples, config.margin_column, source)
    if unpaired_data(config):
        labels = {example.row: example.metadata["label"] for example in result.examples}
        for pair in pairs:
            pair.label = 1.0 if labels[pair.row] else 0.0
    notes.append(report.summary())
    if report.prompts_truncated or report.responses_truncated:  # counted in the run card and said now
        log.warning("%s: %s", source, report.summary())
    fp = source_fingerprint(source, config.split)
    fp_meta = f"{fp}|columns={config.columns}|limit={limit}"
    if unpaired_data(config):  # other rows: a completion and its mismatched one
        fp_meta += f"|unpaired|split_pairs={getattr(config, 'split_pairs', False)}"
    return PairSet(source=source, fingerprint=fp_meta, pairs=pairs, notes=notes)


def attach_margins(pairs: list[TokenizedPair], examples: list, column: str, source: str) -> None:
    """Each pair's target margin from its row's `column` (margin_column): a finite number >= 0, else an error
    naming the file, row and column."""
    by_row = {example.row: example for example in examples}
    for pair in pairs:
        value = by_row[pair.row].metadata.get(column)
        try:
            if value is None or isinstance(value, bool):
                raise ValueError
            number = float(value)
        except (TypeError, ValueError):
            raise DataError(str(source), pair.row, column, f"needs a number (the pair's target margin, "
                            f"margin_column={column}), got {value!r}") from None
        if not (math.isfinite(number) and number >= 0):
            raise DataError(str(source), pair.row, column, f"a target margin must be a finite number >= 0, got {value!r}")
        pair.target_margin = number


@dataclass
class TrainData:
    """What a run trains on, with the token selection of each batch when there is one.

    select(batch, policy_logps=None) -> [2B, R] bool mask or float weights: the labels the loss reads (a token
    selector, selectors.py; whoever builds the data provides it, e.g. train/run.py). Selections with
    `select.online` are made after the forward from the policy's own log-probs of every response token; the
    others when the batch is built. reference_tokens: the selection reads the reference's per-token log-probs
    (the trainer puts them on each batch from its reference cache). `extra_meta` goes into the run card.
    """

    train: PairSet
    eval: PairSet | None = None
    select: Callable | None = None
    extra_meta: dict = field(default_factory=dict)
    reference_tokens: bool = False


def load_training_data(config, tokenizer) -> TrainData:
    """The pairs of `config.data` (train and held-out), or of `config.eval_data` for evaluation when given."""
    full = load_pairs(config.data, config, tokenizer, limit=config.limit)
    if config.eval_data:
        return TrainData(train=full, eval=load_pairs(config.eval_data, config, tokenizer))
    train, held = split_eval(full.pairs, config.eval_fraction, config.seed)
    evalset = PairSet(full.source, full.fingerprint, held) if held else None
    return TrainData(train=PairSet(full.source, full.fingerprint, train, full.notes), eval=evalset)


def split_eval(pairs: list[TokenizedPair], fraction: float, seed: int):
    """A seeded held-out share of the pairs (at least one pair when fraction > 0)."""
    if fraction <= 0:
        return pairs, []
    n_eval = max(1, int(round(len(pairs) * fraction)))
    if n_eval >= len(pairs):
        raise UserError(f"eval_fraction={fraction} leaves no training pairs out of {len(pairs)}")
    order = np.random.RandomState(seed).permutation(len(pairs))
    held = set(order[:n_eval].tolist())
    return [p for i, p in enumerate(pairs) if i not in held], [p for i, p in enumerate(pairs) if i in held]


@dataclass
class Schedule:
    """Which pairs each optimizer step uses: a seeded permutation per epoch, global batches in order.

    The data position of a run is just its step number, so a resumed run visits exactly the same batches.
    The last batch of an epoch may be smaller; its micro-batches are weighted by their size.
    """

    num_pairs: int
    global_batch: int
    seed: int
    epochs: float
    max_steps: int | None = None

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.num_pairs / self.global_batch)

    @property
    def total_steps(self) -> int:
        if self.max_steps:
            return self.max_steps
        return max(1, math.ceil(self.epochs * self.steps_per_epoch))

    def epoch_order(self, epoch: int) -> np.ndarray:
        return np.random.RandomState(self.seed + 1000003 * epoch).permutation(self.num_pairs)

    def batch(self, step: int) -> np.ndarray:
        epoch, index = divmod(step, self.steps_per_epoch)
        order = self.epoch_order(epoch)
        return order[index * self.global_batch : (index + 1) * self.global_batch]


def micro_batches(indices: np.ndarray, batch_size: int, grad_accum: int, rank: int, world: int) -> list[np.ndarray]:
    """This process's `grad_accum` micro-batches of a global batch (some may be empty in a short last batch)."""
    parts = np.array_split(indices, world * grad_accum) if len(indices) < batch_size * world * grad_accum else [
        indices[i * batch_size : (i + 1) * batch_size] for i in range(world * grad_accum)
    ]
    return [parts[rank * grad_accum + m] for m in range(grad_accum)]


def token_micro_batches(indices: np.ndarray, tokens: np.ndarray, budget: int, rank: int, world: int
                        ) -> list[np.ndarray]:
    """This process's micro-batches of a global batch, each filled in order up to `budget` tokens.

    indices: the step's pair indices; tokens: tokens of every pair (indexable by pair index). The global batch is
    split between processes as by pair count (np.array_split), then each share into runs of consecutive pairs
    whose tokens stay within the budget (a longer pair is a micro-batch of its own). Every process returns as many
    micro-batches as the busiest one (the others end with empty ones: zero-weight passes in the train step), so
    sharded back ends, where every forward is a collective, stay in lockstep.
    """
    shares = np.array_split(indices, world)

    def split(share):
        parts, current, used = [], [], 0
        for i in share:
            if current and used + tokens[i] > budget:
                parts.append(np.asarray(current, dtype=indices.dtype))
                current, used = [], 0
            current.append(i)
            used += tokens[i]
        if current:
            parts.append(np.asarray(current, dtype=indices.dtype))
        return parts

    splits = [split(share) for share in shares]
    count = max(1, max(len(parts) for parts in splits))
    mine = splits[rank]
    return mine + [np.zeros(0, dtype=indices.dtype)] * (count - len(mine))
