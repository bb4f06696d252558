"""AlpacaEval 2's LC inputs shipped with the package (eval/alpacaeval_lc.py), their rebuild
(eval/difficulty.difficulties_given_weights, tools/alpacaeval_lc_inputs.py), and `eval winrate` with them: one
model's file of AlpacaEval's instructions gets the full GLM, anything else today's handling with the reason shown
beside the LC; the LC's standard error is never a meaningless 0."""

from __future__ import annotations

import gzip
import json
from importlib import resources

import numpy as np
import pytest
from annotation_files import synthetic_rows, write_json

from conftest import shared_data
from tokensift.cli import main
from tokensift.eval import alpacaeval_lc
from tokensift.eval.annotations import read_judged
from tokensift.eval.difficulty import difficulties_given_weights, lc_averages
from tokensift.eval.winrate import (Judged, glm_problem, l1_logistic, length_controlled, sigmoid,
                                    standardised_length_difference)


def run(argv, capsys) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_shipped_file_is_small_with_provenance_and_in_the_package_data():
    raw = resources.files("tokensift.eval").joinpath(alpacaeval_lc.FILE).read_bytes()
    assert len(raw) < 200_000
    header = [line for line in gzip.decompress(raw).decode().splitlines() if line.startswith("#")]
    text = "\n".join(header)
    assert "github.com/tatsu-lab/alpaca_eval at commit " in text and "Apache" in text
    inputs = alpacaeval_lc.load()
    assert len(inputs.instructions) == len(set(inputs.instructions)) == 805
    assert all(np.isfinite(v) for v in inputs.difficulty.values())
    assert [g.model for g in inputs.gamed] == ["gpt4_1106_preview_verbose", "gpt4_1106_preview_concise"]
    verbose, concise = inputs.gamed
    assert verbose.model_length.mean() > verbose.baseline_length.mean() > concise.model_length.mean()
    assert all(((g.preference >= 0) & (g.preference <= 1)).all() for g in inputs.gamed)
    pyproject = (resources.files("tokensift").joinpath("..", "..", "pyproject.toml"))
    if pyproject.is_file():  # a source checkout: the wheel ships the file
        assert '"tokensift.eval" = ["alpacaeval/*.csv.gz"' in pyproject.read_text()


def test_one_instruction_one_model_difficulty_is_the_logit_solved_by_hand():
    # logit t = offset + slope * d  =>  d = (logit(0.8) - 0.5) / 2 = (1.386294 - 0.5) / 2 = 0.443147
    d, se = difficulties_given_weights(np.array([0]), np.array([0.5]), np.array([2.0]), np.array([0.8]), 1,
                                       prior_precision=1e-12)
    assert d[0] == pytest.approx((np.log(4) - 0.5) / 2, abs=1e-6)
    # the curvature at the optimum: slope^2 * t (1 - t) = 4 * 0.16 = 0.64, so se = 1 / 0.8
    assert se[0] == pytest.approx(1.25, rel=1e-5)


def world(seed=0, models=40, instructions=300):
    """Known weights and difficulties; judged preferences from them plus noise."""
    rng = np.random.default_rng(seed)
    d = rng.normal(-0.5, 1.5, instructions)
    w = np.stack([rng.uniform(-2.2, -1.0, models), rng.uniform(0.6, 1.2, models), rng.uniform(-4, 1, models)], 1)
    rows = []
    for m in range(models):
        tanh = np.tanh(rng.normal(0.5, 1, instructions))
        p = sigmoid(w[m, 0] * tanh + w[m, 1] * d + w[m, 2] + rng.normal(0, 1.0, instructions))
        rows.append((np.arange(instructions), w[m, 0] * tanh + w[m, 2], np.full(instructions, w[m, 1]), p))
    return d, w, [np.concatenate(parts) for parts in zip(*rows)]


def test_difficulties_from_published_weights_follow_the_truth_and_the_averages_pin_their_spread():
    d_true, w, (instruction, offset, slope, target) = world()
    d, _ = difficulties_given_weights(instruction, offset, slope, target, d_true.size)
    assert np.corrcoef(d, d_true)[0, 1] > 0.9
    # further models' LCs (the mean of sigmoid(w_diff d + w_model)) as constraints
    rng = np.random.default_rng(5)
    a, b = rng.uniform(0.5, 1.2, 30), rng.uniform(-4, 2, 30)
    lc = sigmoid(np.outer(a, d_true) + b[:, None]).mean(axis=1)
    constrained, _ = difficulties_given_weights(instruction, offset, slope, target, d_true.size,
                                                prior_mean=float(d.mean()), prior_precision=0.3,
                                                constraints=[(lc_averages(a[::2], b[::2], lc[::2]), 1e6)])
    held = np.abs(sigmoid(np.outer(a[1::2], constrained) + b[1::2, None]).mean(axis=1) - lc[1::2])
    free = np.abs(sigmoid(np.outer(a[1::2], d) + b[1::2, None]).mean(axis=1) - lc[1::2])
    assert held.max() < 0.005 < free.max()  # the constraints of half the models fix the other half's LC


def matrix_model_file(tmp_path, model: str, extra_row: dict | None = None, baseline_shift: int = 0):
    """One model of the shared dev matrix as an AlpacaEval annotations file (real texts and preferences)."""
    rows = []
    with gzip.open(shared_data("alpacaeval-model-matrix.dev.jsonl.gz"), "rt", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            responses = record["responses"]
            if model not in responses:
                continue
            rows.append({"instruction": record["prompt"], "generator_1": "gpt4_1106_preview",
                         "output_1": responses["gpt4_1106_preview"]["text"] + " " * baseline_shift,
                         "generator_2": model, "output_2": responses[model]["text"],
                         "preference": 1 + responses[model]["p_better_than_reference"]})
    if extra_row:
        rows.append(extra_row)
    return write_json(tmp_path / f"{model}.json", rows)


def test_one_model_of_alpacaeval_instructions_gets_the_shipped_inputs(tmp_path, capsys):
    path = matrix_model_file(tmp_path, "claude-2")
    out = tmp_path / "wr.json"
    code, printed = run(["eval", "winrate", path, "--output", out], capsys)
    assert code == 0
    result = json.loads(out.read_text())
    setup = result["glm_setup"]["gpt4_1106_preview"]
    assert setup["difficulties"].startswith("AlpacaEval's") and "tatsu-lab/alpaca_eval@" in setup["difficulties"]
    assert setup["gamed_generators"] == ["gpt4_1106_preview_verbose", "gpt4_1106_preview_concise"]
    row = result["models"][0]
    assert row["glm"]["glm"] == "length_controlled_v1" and row["lc_standard_error"] > 0.1
    # the same numbers as the GLM run by hand on the shipped inputs
    inputs = alpacaeval_lc.load()
    judged = read_judged([str(path)])[0][0]
    from tokensift.eval.winrate import gamed_rows

    by_hand = length_controlled(judged, inputs.difficulty, gamed_rows(inputs.gamed, inputs.difficulty)[0])
    assert row["length_controlled_winrate"] == pytest.approx(100 * by_hand["win_rate"])
    # the dev file holds 585 of the 805 instructions: not the leaderboard's set, said beside the number
    assert setup["comparable_to_leaderboard"] is False and "over 585 of AlpacaEval's 805" in printed
    assert "†" in printed.split("claude-2", 1)[1].splitlines()[0]


def test_other_instructions_or_another_baseline_keep_todays_handling_and_say_so(tmp_path, capsys):
    extra = {"instruction": "Not one of AlpacaEval's instructions", "generator_1": "gpt4_1106_preview",
             "output_1": "a", "generator_2": "claude-2", "output_2": "bb", "preference": 1.5}
    for path, why in ((matrix_model_file(tmp_path, "claude-2", extra), "1 of 586 rows answer instructions that"),
                      (matrix_model_file(tmp_path, "gemma-2b-it", baseline_shift=1), "the baseline's answer is not")):
        out = tmp_path / "wr.json"
        code, printed = run(["eval", "winrate", path, "--output", out, "overwrite=true"], capsys)
        assert code == 0
        result = json.loads(out.read_text())
        setup = result["glm_setup"]["gpt4_1106_preview"]
        assert setup["difficulties"].startswith("none (one model")
        assert setup["comparable_to_leaderboard"] is False and why in setup["not_comparable_because"]
        assert "† not comparable with AlpacaEval's leaderboard LC" in printed and why in printed
        row = result["models"][0]
        assert row["glm"]["glm"] == "length_controlled_minimal"
        assert row["lc_standard_error"] > 0.1 and row["lc_standard_error_kind"].startswith("prompt bootstrap")


def test_difficulties_fit_opts_out_of_the_shipped_inputs(tmp_path, capsys):
    path = matrix_model_file(tmp_path, "claude-2")
    out = tmp_path / "wr.json"
    assert run(["eval", "winrate", path, "difficulties=fit", "--output", out], capsys)[0] == 0
    setup = json.loads(out.read_text())["glm_setup"]["gpt4_1106_preview"]
    assert setup["difficulties"].startswith("none") and "difficulties=fit" in setup["not_comparable_because"]


def test_bootstrap_refit_equals_the_fit_on_the_duplicated_rows(tmp_path):
    """The LC on a resample (prompt weights = how often each prompt was drawn) is the GLM fitted at that C on the
    drawn rows written out one by one, averaged over the drawn prompts."""
    rows = synthetic_rows("m", -0.5, 0.4, 7)
    judged = read_judged([str(write_json(tmp_path / "a.json", rows))])[0][0]
    problem = glm_problem(judged)
    coef, C = problem.fit()
    rng = np.random.default_rng(3)
    n = len(problem.prompts)
    draw = rng.integers(0, n, n)
    weights = np.bincount(draw, minlength=n).astype(float)
    order = {p: k for k, p in enumerate(problem.prompts)}
    rows_drawn = [next(r for r in rows if r["instruction"] == problem.prompts[k]) for k in draw]
    dup = Judged("m", judged.baseline, [r["instruction"] for r in rows_drawn],
                 np.array([r["preference"] - 1 for r in rows_drawn]),
                 np.array([len(r["output_2"]) for r in rows_drawn], dtype=float),
                 np.array([len(r["output_1"]) for r in rows_drawn], dtype=float))
    # the length standardisation stays the full data's (the design is fixed; only the weights change)
    std_full = standardised_length_difference(judged.model_length, judged.baseline_length)
    X = np.stack([np.tanh(std_full[[order[p] for p in dup.prompts]]), np.ones(n)], 1)
    by_rows = l1_logistic(X, dup.preference, np.ones(n), C)
    expected = float(sigmoid(problem.X_predict[draw] @ by_rows).mean())
    assert problem.resampled_lc(weights, C, coef) == pytest.approx(expected, abs=1e-7)
    se = problem.bootstrap_standard_error(coef, C, draws=50)
    assert 0.001 < se < 0.2
