"""A stage is skipped when its finished run was trained with the same settings; a setting the run's card does not
record (one a later tokensift version added) counts as its default, and a changed setting is named."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from conftest import train_config

from tokensift.errors import UserError
from tokensift.train.run_folder import training_done


def finished(config, **recorded_changes) -> None:
    """A run card as a finished run writes it, with some recorded settings replaced or (value None) removed."""
    recorded = json.loads(json.dumps(dataclasses.asdict(config), default=str))
    for key, value in recorded_changes.items():
        if value is None:
            recorded.pop(key)
        else:
            recorded[key] = value
    final = Path(config.output_dir) / "final"
    final.mkdir(parents=True)
    (final / "run_card.json").write_text(json.dumps({"config": recorded}))


def test_a_run_without_a_final_model_is_not_done(tmp_path, model_dir):
    assert not training_done(train_config(tmp_path, model_dir, tmp_path / "pairs.jsonl"))


def test_a_setting_added_later_counts_as_its_default(tmp_path, model_dir):
    config = train_config(tmp_path, model_dir, tmp_path / "pairs.jsonl")
    finished(config, margin_column=None, gap_quantile=None)  # an older card: neither setting existed
    assert training_done(config)


def test_a_setting_added_later_but_set_now_is_a_change(tmp_path, model_dir):
    config = train_config(tmp_path, model_dir, tmp_path / "pairs.jsonl", margin_column="target_margin",
                          loss="tso")
    finished(config, margin_column=None)
    with pytest.raises(UserError, match=r"other settings \(margin_column: None -> 'target_margin'\)"):
        training_done(config)


def test_a_changed_setting_is_named_and_publishing_keys_are_not_compared(tmp_path, model_dir):
    config = train_config(tmp_path, model_dir, tmp_path / "pairs.jsonl")
    finished(config, learning_rate=5e-4, progress=True)
    with pytest.raises(UserError, match=r"other settings \(learning_rate: 0.0005 -> 0.001\)"):
        training_done(config)
