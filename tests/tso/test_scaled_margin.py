"""The scaled margin end to end: a per-pair column of the data reaches the tso loss through the real engine.

At the first step the policy is its own reference, so both implicit rewards are exactly 0 and the dual-clip loss
of a pair is -log sigmoid(0 - m) = log(1 + e^m): the logged loss of step 1 is the mean of that over the batch,
worked out here from the margins written into the file.
"""

from __future__ import annotations

import json
import math

import pytest
from conftest import train_config, write_pairs

from tokensift.config import build
from tokensift.errors import DataError, UserError
from tokensift.train.loop import Trainer
from tokensift.tso.config import MARGIN_COLUMN, TSOConfig

MARGINS = [0.0, 0.5, 1.0, 2.0]


def with_margins(path, margins, column="target_margin"):
    rows = [json.loads(line) for line in write_pairs(path, n=len(margins)).read_text().splitlines()]
    path.write_text("".join(json.dumps({**row, column: m}) + "\n" for row, m in zip(rows, margins)))
    return path


def test_margin_column_reaches_the_tso_loss(tmp_path, model_dir):
    data = with_margins(tmp_path / "pairs.jsonl", MARGINS)
    config = train_config(tmp_path, model_dir, data, loss="tso", max_steps=1, margin_column="target_margin")
    Trainer(config).run()
    step = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    expected = sum(math.log1p(math.exp(m)) for m in MARGINS) / len(MARGINS)  # log 2, 0.974, 1.313, 2.127
    assert step["loss"] == pytest.approx(expected, abs=1e-5)
    assert step["rewards/target_margin"] == pytest.approx(sum(MARGINS) / len(MARGINS), abs=1e-6)
    card = (tmp_path / "run" / "final" / "README.md").read_text()
    assert "per-pair target margin" in card and "target_margin" in card


def test_margin_column_is_checked(tmp_path, model_dir):
    data = with_margins(tmp_path / "pairs.jsonl", [0.5, None, 1.0, 1.0])
    with pytest.raises(UserError, match="loss=dpo takes no per-pair margin \\(margin_column\\); losses that do: tso"):
        train_config(tmp_path, model_dir, data, loss="dpo", margin_column="target_margin")
    with pytest.raises(DataError, match=r"pairs.jsonl, row 1, field 'target_margin': needs a number"):
        Trainer(train_config(tmp_path, model_dir, data, loss="tso", margin_column="target_margin"))
    data = with_margins(tmp_path / "negative.jsonl", [0.5, -1.0, 1.0, 1.0])
    with pytest.raises(DataError, match=r"row 1, field 'target_margin': a target margin must be a finite number >= 0"):
        Trainer(train_config(tmp_path, model_dir, data, loss="tso", margin_column="target_margin",
                             output_dir=str(tmp_path / "run2")))


def test_tso_rounds_read_the_margin_only_when_it_is_on(tmp_path):
    values = {"output_dir": str(tmp_path / "t"), "prompts": "builtin:quickstart",
              "generators": [{"name": "p", "policy": True, "size": 1}]}
    off = build(TSOConfig, values)
    assert off.train_config("d.jsonl", "m", "o", 1).margin_column is None
    on = build(TSOConfig, {**values, "scaled_margin": 0.25, "margin_by": "both"})
    assert on.train_config("d.jsonl", "m", "o", 1).margin_column == MARGIN_COLUMN
    with pytest.raises(UserError, match="margin_by must be one of rank_gap, judge, both"):
        build(TSOConfig, {**values, "scaled_margin": 0.25, "margin_by": "distance"})
    with pytest.raises(UserError, match="train.margin_column is set by each TSO round"):
        build(TSOConfig, {**values, "train": {"margin_column": "m"}})
