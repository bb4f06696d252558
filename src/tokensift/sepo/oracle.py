"""The SePO oracle: DPO from the reference (SFT) model on a seeded random fraction of the target data.

By the paper's Theorem 2 an oracle trained on a random subset estimates a pessimistic version of the full
data's token reward, so a small oracle on part of the data is enough. The oracle's reference stays its own
starting point: scoring later compares the oracle against exactly that model.
"""

from __future__ import annotations

import numpy as np

from tokensift.errors import UserError
from tokensift.sepo.config import OracleConfig
from tokensift.train.data import PairSet, TrainData, load_training_data
from tokensift.train.loop import TrainResult, train


def oracle_subset(pairs: list, fraction: float, seed: int) -> list:
    """A seeded random `fraction` of the pairs (at least one), in their original order."""
    if fraction >= 1:
        return list(pairs)
    count = max(1, int(round(len(pairs) * fraction)))
    chosen = np.sort(np.random.RandomState(seed).choice(len(pairs), size=count, replace=False))
    return [pairs[i] for i in chosen]


def oracle_data(config: OracleConfig, tokenizer) -> TrainData:
    """The pairs of `config.data` the oracle trains on: a seeded random `fraction` of the training split."""
    data = load_training_data(config, tokenizer)
    subset = oracle_subset(data.train.pairs, config.fraction, config.seed)
    data.train = PairSet(data.train.source, f"{data.train.fingerprint}|fraction={config.fraction}|seed={config.seed}",
                         subset, data.train.notes + [f"oracle trains on {len(subset)} pairs ({config.fraction:.0%})"])
    data.extra_meta["oracle_fraction"] = config.fraction
    return data


def train_oracle(config: OracleConfig, tokenizer=None, given=None) -> TrainResult:
    """tokenizer, given: a tokenizer and model objects handed over in Python (tokensift.given.Given)."""
    if config.reference not in (None, config.model) or (given is not None and given.ref_model is not None):
        raise UserError("the oracle starts from its reference: leave reference unset (it is the oracle's model)")
    return train(config, oracle_data, tokenizer, given)
