"""Parity with AlpacaEval's own length-controlled win rate (PyPI `alpaca-eval`, `metrics/glm_winrate.py`): on the
same annotations, difficulties and gamed-baseline rows.

What must agree: the raw win rate and its standard error (exactly), the cross-validation losses of every C
(AlpacaEval's liblinear stops at a tolerance, so to 1e-3 relative), and the LC win rate within 0.1 points. The one
place the two may part: when two Cs have cross-validation losses closer than liblinear's own solver noise
(about 1e-5 on losses near 0.2), AlpacaEval's pick between them is arbitrary, ours is the exact minimum, and the
LCs at the two Cs can differ by a few tenths of a point. There the test checks that it is such a tie and that
at AlpacaEval's C our LC agrees within 0.02 points.

AlpacaEval downloads its instruction difficulties and gamed-baseline rows (`df_gamed.csv`) from the hub; here its
downloader is pointed at a file written in the test in the same layout, holding the inputs both sides get. The
whole module skips when alpaca-eval cannot be imported (it is in the `test` extra).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest

from conftest import shared_data
from tokensift.eval.annotations import read_judged
from tokensift.eval.difficulty import fit_difficulties
from tokensift.eval.winrate import (CS, Judged, cross_validated_fit, gamed_rows, glm_problem, l1_logistic,
                                    raw_win_rate, standardised_length_difference)

try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pandas as pd
        from alpaca_eval.metrics import glm_winrate as peer
except Exception as exc:  # noqa: BLE001 -- any import failure of the peer means: no parity check here
    pytest.skip(f"alpaca-eval cannot be imported ({type(exc).__name__}: {exc})", allow_module_level=True)

TOLERANCE = 0.1  # percentage points
SAME_C_TOLERANCE = 0.02  # percentage points, both fitted at AlpacaEval's C
TIE = 1e-4  # relative difference of two Cs' summed cross-validation losses within liblinear's noise


def peer_lc(monkeypatch, tmp_path, judged: Judged, order: list[str], difficulty: dict, gamed: list[Judged],
            glm_name: str) -> dict:
    """AlpacaEval's get_length_controlled_winrate on `judged`, its hub files replaced by a local df_gamed.csv."""
    position = {p: k for k, p in enumerate(order)}
    blocks = []
    for g in gamed:  # the first block covers every position in order: AlpacaEval reads difficulties from it
        rows = sorted(range(len(g)), key=lambda r: position[g.prompts[r]])
        std = standardised_length_difference(g.model_length, g.baseline_length)
        blocks.append(pd.DataFrame({"index": [position[g.prompts[r]] for r in rows], "model": g.model,
                                    "preference": g.preference[rows], "std_delta_len": std[rows],
                                    "instruction_difficulty": [difficulty[g.prompts[r]] for r in rows],
                                    "not_gamed_baseline": False}))
    if not blocks:
        blocks = [pd.DataFrame({"index": range(len(order)), "model": "none", "preference": 0.5, "std_delta_len": 0.0,
                                "instruction_difficulty": [difficulty[p] for p in order],
                                "not_gamed_baseline": False})]
    path = tmp_path / "df_gamed.csv"
    pd.concat(blocks, ignore_index=True).to_csv(path, index=False)
    monkeypatch.setattr(peer, "hf_hub_download", lambda *args, **kwargs: str(path))
    fitted = {}
    original = peer.fit_LogisticRegressionCV

    def recording(*args, **kwargs):
        model = original(*args, **kwargs)
        fitted.update(C=float(model.C_[0]), losses=-model.scores_[1].sum(axis=0).ravel())
        return model

    monkeypatch.setattr(peer, "fit_LogisticRegressionCV", recording)
    annotations = pd.DataFrame(
        {"instruction": judged.prompts, "output_1": ["x" * int(n) for n in judged.baseline_length],
         "output_2": ["y" * int(n) for n in judged.model_length], "generator_1": judged.baseline,
         "generator_2": judged.model, "preference": 1 + judged.preference},
        index=[position[p] for p in judged.prompts])
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = peer.get_length_controlled_winrate(annotations, glm_name=glm_name, save_weights_dir=None,
                                                     is_warn_extreme_changes=False)
        return {**out, **fitted}
    finally:
        logging.disable(logging.NOTSET)


def assert_parity(monkeypatch, tmp_path, models, order, difficulty, gamed, glm_name) -> list[dict]:
    """Checks every model; returns per model the gap in points and whether the Cs differed (a tie)."""
    rows = gamed_rows(gamed, difficulty)[0] if gamed else None
    outcomes = []
    for j in models:
        theirs = peer_lc(monkeypatch, tmp_path, j, order, difficulty, gamed, glm_name)
        problem = glm_problem(j, difficulty if glm_name != "length_controlled_minimal" else None, rows)
        coef, C, losses = cross_validated_fit(problem.X, problem.target, problem.weight)
        raw = raw_win_rate(j)
        assert problem.formula == glm_name
        assert 100 * raw["win_rate"] == pytest.approx(theirs["win_rate"], abs=1e-9)
        assert 100 * raw["standard_error"] == pytest.approx(theirs["standard_error"], abs=1e-9)
        assert np.asarray(losses) == pytest.approx(theirs["losses"], rel=1e-3)  # same folds, weights and scoring
        ours = problem.predict(coef)
        gap = abs(100 * ours.mean() - theirs["length_controlled_winrate"])
        if C == theirs["C"]:
            assert gap < TOLERANCE, (j.model, glm_name, 100 * ours.mean(), theirs["length_controlled_winrate"])
            assert 100 * ours.std(ddof=1) / np.sqrt(ours.size) == pytest.approx(theirs["lc_standard_error"], abs=0.05)
        else:
            mine, their_choice = losses[list(CS).index(C)], losses[list(CS).index(theirs["C"])]
            assert their_choice - mine <= TIE * mine, (j.model, glm_name, C, theirs["C"], mine, their_choice)
            at_their_c = problem.predict(l1_logistic(problem.X, problem.target, problem.weight, theirs["C"]))
            assert 100 * at_their_c.mean() == pytest.approx(theirs["length_controlled_winrate"], abs=SAME_C_TOLERANCE)
        outcomes.append({"model": j.model, "gap": gap, "tie": C != theirs["C"]})
    return outcomes


def synthetic(seed: int, instructions: int = 250):
    """Models, two gamed baselines and true difficulties; preferences from the GLM's form plus noise."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(-1.5, 1.2, instructions)
    baseline = rng.integers(200, 3000, instructions).astype(float)
    prompts = [f"instruction {i}" for i in range(instructions)]

    def answer(name, quality, verbosity):
        length = np.maximum(10, np.round(baseline * np.exp(rng.normal(verbosity, 0.5, instructions))))
        std = standardised_length_difference(length, baseline)
        p = np.round(1 / (1 + np.exp(-(quality + difficulty - 0.8 * np.tanh(std) + rng.normal(0, 1, instructions)))), 6)
        return Judged(name, "baseline", prompts, p, length, baseline)

    gamed = [answer("baseline_verbose", 0.0, 0.5), answer("baseline_concise", 0.0, -0.7)]
    models = [answer(f"model{k}", q, v) for k, (q, v) in enumerate(((-2.0, 0.6), (0.3, 0.0), (-4.0, 0.3), (1.0, 0.9)))]
    return models, gamed, prompts, {p: float(d) for p, d in zip(prompts, difficulty)}


@pytest.mark.parametrize("glm_name", ["length_controlled_v1", "length_controlled_noreg", "length_controlled_minimal"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_parity_on_synthetic_annotations(monkeypatch, tmp_path, glm_name, seed):
    models, gamed, order, difficulty = synthetic(seed)
    assert_parity(monkeypatch, tmp_path, models, order, difficulty,
                  gamed if glm_name == "length_controlled_v1" else [], glm_name)


def test_parity_on_the_alpacaeval_model_matrix(monkeypatch, tmp_path, capsys):
    """The 14 models of the shared dev matrix (real GPT-4-Turbo preferences and answer lengths), difficulties
    fitted across them; for the regularised GLM two of the models stand in for the gamed baselines (their rows
    are only inputs here: both implementations get the same ones)."""
    judged, _ = read_judged([str(shared_data("alpacaeval-model-matrix.dev.jsonl.gz"))])
    order = list(dict.fromkeys(p for j in judged for p in j.prompts))
    difficulty = fit_difficulties(judged)
    outcomes = assert_parity(monkeypatch, tmp_path, judged, order, difficulty, [], "length_controlled_noreg")
    stand_ins = [j for j in judged if j.model in ("vicuna-7b-v1.5", "minichat-3b")]
    others = [j for j in judged if j.model not in ("vicuna-7b-v1.5", "minichat-3b")]
    outcomes += assert_parity(monkeypatch, tmp_path, others, order, difficulty, stand_ins, "length_controlled_v1")
    same = [o["gap"] for o in outcomes if not o["tie"]]
    ties = [o["gap"] for o in outcomes if o["tie"]]
    with capsys.disabled():
        print(f"\n[parity] {len(outcomes)} LC win rates: {len(same)} with the same C, largest |ours - AlpacaEval| "
              f"{max(same):.4f} points; {len(ties)} cross-validation ties (gaps {', '.join(f'{g:.3f}' for g in ties)})")


def test_parity_with_the_shipped_alpacaeval_inputs(monkeypatch, tmp_path, capsys):
    """The 14 models of the shared dev matrix with the difficulties and gamed-baseline rows shipped with the
    package (eval/alpacaeval_lc.py, what `eval winrate` uses by default for AlpacaEval's instructions): both
    implementations get them (AlpacaEval through its df_gamed.csv, in its instruction order) and run
    length_controlled_v1."""
    from tokensift.eval import alpacaeval_lc

    inputs = alpacaeval_lc.load()
    judged, _ = read_judged([str(shared_data("alpacaeval-model-matrix.dev.jsonl.gz"))])
    outcomes = assert_parity(monkeypatch, tmp_path, judged, inputs.instructions, inputs.difficulty, inputs.gamed,
                             "length_controlled_v1")
    same = [o["gap"] for o in outcomes if not o["tie"]]
    assert len(same) >= 10
    with capsys.disabled():
        print(f"\n[parity, shipped inputs] {len(outcomes)} LC win rates: {len(same)} with the same C, largest "
              f"|ours - AlpacaEval| {max(same):.4f} points; {len(outcomes) - len(same)} cross-validation ties")
