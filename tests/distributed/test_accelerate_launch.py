"""Two processes under `accelerate launch` (gloo, CPU) against one process with the same global batch."""

import numpy as np
import pytest

from launching import launch, make_setup, score_job, train_job
from tokensift.scores import load_scores
from tokensift.train.metrics import read_metrics


@pytest.fixture
def setup(tmp_path, tokenizer):
    return make_setup(tmp_path, tokenizer)


def test_two_process_scoring_equals_one_process(tmp_path, setup):
    scores = {}
    for processes in (1, 2):
        out = tmp_path / f"scores-{processes}"
        launch(score_job(setup, out, chunk_pairs=3), processes, 29611)
        scores[processes] = load_scores(out)[1]
    one, two = scores[1], scores[2]
    assert sorted(one) == sorted(two) == list(range(16))  # the same rows, none missing, none twice
    for row in one:
        for key in ("prompt_ids", "chosen_ids", "rejected_ids"):
            assert np.array_equal(one[row][key], two[row][key])
        for key in ("chosen_scores", "rejected_scores"):
            assert np.allclose(one[row][key], two[row][key], atol=1e-6), (row, key)
    from tokensift.shards import ShardStore

    raw_rows = ShardStore(tmp_path / "scores-2").read(["row"]).column("row").to_pylist()
    assert sorted(raw_rows) == list(range(16))  # in the shards themselves: no row twice
    shards = {p.name.split("-")[1] for p in (tmp_path / "scores-2").glob("part-*.parquet")}
    assert shards == {"r0", "r1"}  # both processes really scored


@pytest.mark.parametrize("loss", ["dpo", "sepo"])
def test_two_process_training_equals_one_process(tmp_path, setup, loss):
    extra = {}
    if loss == "sepo":
        score_dir = tmp_path / "scores"
        launch(score_job(setup, score_dir), 1, 0)
        extra = {"scores": str(score_dir), "k_chosen": 0.5, "k_rejected": 0.5}
    logs = {}
    for processes, batch in ((1, 4), (2, 2)):  # the same global batch of 4 pairs
        out = tmp_path / f"{loss}-{processes}"
        job = train_job(tmp_path, setup, loss=loss, batch_size=batch, epochs=2.0, output_dir=str(out), **extra)
        launch(job, processes, 29612 if loss == "dpo" else 29613)
        logs[processes] = read_metrics(out / "metrics.jsonl")
    one = [r["loss"] for r in logs[1] if "loss" in r]
    two = [r["loss"] for r in logs[2] if "loss" in r]
    assert len(one) == len(two) == 8
    assert np.allclose(one, two, atol=1e-4), (one, two)
    assert abs(one[-1] - one[0]) > 1e-3  # the loss really moved
    assert [r["pairs"] for r in logs[2] if "pairs" in r] == [4.0] * 8  # metrics gathered from both processes


def test_two_process_uneven_steps_and_eval(tmp_path, setup):
    """13 train pairs in global batches of 4 (the last step of each epoch leaves one process without a pair) and
    3 eval pairs split 2/1: the idle process joins every collective with zero-weight passes."""
    runs = {}
    for processes, batch in ((1, 4), (2, 2)):
        out = tmp_path / f"uneven-{processes}"
        launch(train_job(tmp_path, setup, loss="dpo", batch_size=batch, epochs=2.0, eval_fraction=0.2,
                         eval_batch_size=1, eval_every=2, output_dir=str(out)), processes, 29614)
        runs[processes] = read_metrics(out / "metrics.jsonl")
    for key in ("loss", "eval/loss", "eval/rewards/accuracy"):
        one = [r[key] for r in runs[1] if key in r]
        two = [r[key] for r in runs[2] if key in r]
        assert len(one) == len(two) > 1 and np.allclose(one, two, atol=1e-4), (key, one, two)
    assert [r["pairs"] for r in runs[2] if "pairs" in r][3] == 1.0  # 13 = 4 + 4 + 4 + 1
