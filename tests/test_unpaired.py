"""KTO and BCO on unpaired data: the losses by hand, TRL's unpaired format (prompt, completion, label) with a
column mapping, paired files split on request, the mismatched completions of KTO's KL estimate, the balance that
`data inspect` reports, errors naming the row, and training runs on the tiny model."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from conftest import train_config, write_pairs
from test_losses import close, nls, sigmoid
from tokensift import losses as L
from tokensift.data.unpaired import load_unpaired
from tokensift.errors import DataError, UserError


def rows_batch():
    """Three rows. Completions (chosen side) sum to c = [-2, -3, -1] against reference [-2.5, -2, -1.5], so
    r = [0.5, -1.0, 0.5]; mismatched completions (rejected side) give log-ratios [1.0, 0.2, 0.3] (mean 0.5)."""
    ones = torch.ones(3, 1, dtype=torch.bool)
    return dict(chosen_logps=torch.tensor([[-2.0], [-3.0], [-1.0]]), chosen_mask=ones,
                rejected_logps=torch.tensor([[-1.0], [-1.8], [-2.7]]), rejected_mask=ones,
                ref_chosen_logps=torch.tensor([-2.5, -2.0, -1.5]), ref_rejected_logps=torch.tensor([-2.0, -2.0, -3.0]),
                label=torch.tensor([1.0, 0.0, 0.0]))


def test_kto_by_hand():
    # z0 = max(0, mean([1.0, 0.2, 0.3])) = 0.5; beta 2
    # row 0 desirable:   1.5 * (1 - sigmoid(2 * (0.5 - 0.5))) = 1.5 * 0.5
    # row 1 undesirable: 0.5 * (1 - sigmoid(2 * (0.5 + 1.0)))
    # row 2 undesirable: 0.5 * (1 - sigmoid(2 * (0.5 - 0.5))) = 0.25
    out = L.kto_loss(**rows_batch(), beta=2.0, desirable_weight=1.5, undesirable_weight=0.5)
    expected = [0.75, 0.5 * (1 - sigmoid(3.0)), 0.25]
    assert close(out.loss, sum(expected) / 3)
    assert close(out.metrics["kl"], [0.5] * 3)
    assert close(out.metrics["rewards/chosen"], [1.0, 0.0, 0.0]) and close(out.metrics["rewards/rejected"],
                                                                          [0.0, -2.0, 1.0])
    assert close(out.metrics["count/desirable"], [1.0, 0.0, 0.0])


def test_kto_reference_point_is_clamped_at_zero_and_carries_no_gradient():
    b = rows_batch()
    b["rejected_logps"] = torch.tensor([[-3.0], [-3.0], [-4.0]], requires_grad=True)  # log-ratios [-1, -1, -1]
    out = L.kto_loss(**b, beta=1.0)
    assert close(out.metrics["kl"], [0.0] * 3)
    assert close(out.loss, ((1 - sigmoid(0.5)) + (1 - sigmoid(1.0)) + (1 - sigmoid(-0.5))) / 3)
    b2 = rows_batch()
    b2["rejected_logps"].requires_grad_(True)
    b2["chosen_logps"].requires_grad_(True)
    L.kto_loss(**b2).loss.backward()
    assert b2["rejected_logps"].grad is None or not b2["rejected_logps"].grad.any()
    assert b2["chosen_logps"].grad.abs().sum() > 0


def test_bco_by_hand():
    # beta 1: rewards s = [0.5, -1.0, 0.5], delta = 0; weights 1
    out = L.bco_loss(**rows_batch(), beta=1.0)
    assert close(out.loss, (nls(0.5) + nls(1.0) + nls(-0.5)) / 3)
    # beta 2: s = [1, -2, 1], delta = 0
    b = rows_batch()
    b["ref_chosen_logps"] = torch.tensor([-2.5, -2.0, -2.5])  # r = [0.5, -1.0, 1.5], s (beta 1) mean 1/3
    out = L.bco_loss(**b, beta=1.0, undesirable_weight=2.0)
    delta = 1 / 3
    assert close(out.loss, (nls(0.5 - delta) + 2 * nls(-(-1.0 - delta)) + 2 * nls(-(1.5 - delta))) / 3)
    assert close(out.metrics["delta"], [delta] * 3)


def test_apo_zero_unpaired_by_hand():
    # beta 2: s = 2 r = [1, -2, 1]; row 0 desirable: 1 - sigmoid(1); rows 1, 2 undesirable (weight 0.5): sigmoid(s)
    out = L.apo_zero_unpaired_loss(**rows_batch(), beta=2.0, undesirable_weight=0.5)
    assert close(out.loss, ((1 - sigmoid(1.0)) + 0.5 * sigmoid(-2.0) + 0.5 * sigmoid(1.0)) / 3)


def test_unpaired_losses_need_labels():
    b = rows_batch()
    del b["label"]
    with pytest.raises(ValueError, match="kto_loss: needs each row's label"):
        L.kto_loss(**b)


def write_rows(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


UNPAIRED = [{"prompt": "Say hi", "completion": "Hi there!", "label": True},
            {"prompt": "Say hi", "completion": "Go away.", "label": False},
            {"prompt": "Count to three", "completion": "1, 2, 3", "label": True},
            {"prompt": [{"role": "user", "content": "Name a colour"}],
             "completion": [{"role": "assistant", "content": "Blue."}], "label": False}]


def test_unpaired_rows_get_a_mismatched_completion_from_the_next_other_prompt(tmp_path):
    result = load_unpaired(write_rows(tmp_path / "u.jsonl", UNPAIRED))
    assert (result.desirable, result.undesirable) == (2, 2)
    ex = result.examples
    assert [e.chosen for e in ex] == ["Hi there!", "Go away.", "1, 2, 3", "Blue."]
    # row 0's next row has the same prompt: its mismatched completion is row 2's; the last wraps to row 0
    assert [e.rejected for e in ex] == ["1, 2, 3", "1, 2, 3", "Blue.", "Hi there!"]
    assert [e.metadata["label"] for e in ex] == [True, False, True, False]
    assert ex[3].prompt == [{"role": "user", "content": "Name a colour"}]
    assert "2 desirable, 2 undesirable (50% desirable)" in result.summary()


def test_a_column_mapping_reads_other_names(tmp_path):
    rows = [{"q": r["prompt"], "a": r["completion"], "ok": r["label"]} for r in UNPAIRED]
    result = load_unpaired(write_rows(tmp_path / "u.jsonl", rows), "prompt=q,completion=a,label=ok")
    assert [e.chosen for e in result.examples][:3] == ["Hi there!", "Go away.", "1, 2, 3"]
    with pytest.raises(UserError, match="unknown field 'answer' for unpaired data"):
        load_unpaired(tmp_path / "u.jsonl", "answer=a")


def test_paired_files_split_into_unpaired_rows_on_request(tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl", n=3)
    with pytest.raises(UserError, match="set split_pairs=true"):
        load_unpaired(data)
    result = load_unpaired(data, split_pairs=True)
    source = [json.loads(line) for line in data.read_text().splitlines()]
    assert [e.row for e in result.examples] == [0, 1, 2, 3, 4, 5]
    assert [e.chosen for e in result.examples[:2]] == [source[0]["chosen"], source[0]["rejected"]]
    assert [e.metadata["label"] for e in result.examples] == [True, False] * 3
    assert result.examples[0].rejected == source[1]["chosen"]  # mismatched: the next pair's prompt
    assert (result.desirable, result.undesirable) == (3, 3)


@pytest.mark.parametrize("label, shown", [("yes", "'yes' (str)"), (1, "1 (int)"), (None, "missing value")])
def test_a_label_that_is_not_true_or_false_names_the_row(tmp_path, label, shown):
    rows = [dict(r) for r in UNPAIRED]
    rows[2]["label"] = label
    with pytest.raises(DataError, match=r"u.jsonl, row 2, field 'label': .*" + re.escape(shown)) as error:
        load_unpaired(write_rows(tmp_path / "u.jsonl", rows))
    assert error.value.row == 2


def test_one_class_only_is_refused(tmp_path):
    rows = [dict(r, label=True) for r in UNPAIRED]
    with pytest.raises(DataError, match="every one of the 4 rows is labelled desirable"):
        load_unpaired(write_rows(tmp_path / "u.jsonl", rows))
    with pytest.raises(UserError, match="every row has the same prompt"):
        load_unpaired(write_rows(tmp_path / "same.jsonl", [dict(r, prompt="p") for r in UNPAIRED[:3]]))


def test_data_inspect_reports_the_balance(tmp_path, capsys):
    from tokensift.cli import main

    data = write_rows(tmp_path / "u.jsonl", UNPAIRED + [dict(UNPAIRED[2], completion="One, two, three.")])
    assert main(["data", "inspect", str(data), "--no-tokenize"]) == 0
    out = capsys.readouterr().out
    assert "5 unpaired rows: 3 desirable, 2 undesirable (60% desirable)" in out
    assert "desirable_weight in [0.67, 0.89]" in out  # [2 / 3, 4 * 2 / (3 * 3)]


def unpaired_file(tmp_path: Path, n: int = 12) -> Path:
    pairs = [json.loads(line) for line in write_pairs(tmp_path / "p.jsonl", n=n // 2).read_text().splitlines()]
    rows = []
    for i, pair in enumerate(pairs):  # alternating, unpaired: each prompt with one completion
        rows.append({"prompt": pair["prompt"], "completion": pair["chosen" if i % 2 else "rejected"],
                     "label": bool(i % 2)})
        rows.append({"prompt": pair["prompt"] + " again", "completion": pair["rejected" if i % 2 else "chosen"],
                     "label": not i % 2})
    return write_rows(tmp_path / "unpaired.jsonl", rows)


@pytest.mark.parametrize("loss, split", [("kto", False), ("bco", False), ("kto", True)])
def test_training_on_unpaired_rows(tmp_path, model_dir, loss, split):
    from tokensift.api import train_model
    from tokensift.train.metrics import read_metrics

    data = write_pairs(tmp_path / "pairs.jsonl", n=6) if split else unpaired_file(tmp_path)
    cfg = train_config(tmp_path, model_dir, data, loss=loss, split_pairs=split, max_steps=2, batch_size=6)
    result = train_model(cfg)
    metrics = read_metrics(result.output_dir / "metrics.jsonl")
    assert len(metrics) == 2 and all(math.isfinite(m["loss"]) for m in metrics)
    assert abs(metrics[-1]["loss"] - metrics[0]["loss"]) > 1e-6
    # the two steps of 6 rows visit all 12 rows once: 6 desirable
    assert (metrics[0]["count/desirable"] + metrics[1]["count/desirable"]) / 2 == pytest.approx(0.5)
    assert ("kl" if loss == "kto" else "delta") in metrics[0]


def test_unpaired_settings_are_checked(tmp_path, model_dir):
    data = unpaired_file(tmp_path)
    with pytest.raises(UserError, match="selector=random: loss=kto takes no token selection: the KL reference"):
        train_config(tmp_path, model_dir, data, loss="kto", selector="random")
    with pytest.raises(UserError, match="kto cannot be a mixture term"):
        train_config(tmp_path, model_dir, data, loss="dpo,kto")
    with pytest.raises(UserError, match="split_pairs=true splits pairs into unpaired rows for KTO and BCO"):
        train_config(tmp_path, model_dir, write_pairs(tmp_path / "pairs.jsonl", n=4), loss="dpo", split_pairs=True)
    with pytest.raises(UserError, match="loss=kto has no chosen response"):
        train_config(tmp_path, model_dir, data, loss="kto", rpo_alpha=0.5)
    with pytest.raises(UserError, match="loss=dpo does not read desirable_weight"):
        train_config(tmp_path, model_dir, data, loss="dpo", desirable_weight=2.0)
