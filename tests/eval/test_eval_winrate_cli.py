"""`tokensift eval winrate` end to end on small files in tmp folders: AlpacaEval annotations, model-matrix rows,
a real `eval generate` results file; published difficulties, gamed baselines, and the documented handling of
missing preferences, one-row models and all-tie models."""

from __future__ import annotations

import json

import numpy as np
import pytest
from annotation_files import INSTRUCTIONS, matrix_rows, synthetic_rows, write_json

from conftest import write_pairs
from tokensift.cli import main
from tokensift.eval.annotations import read_judged
from tokensift.eval.difficulty import fit_difficulties
from tokensift.eval.winrate import length_controlled

MODELS = (("strong", 0.5, 0.3, 1), ("weak", -1.5, -0.2, 2), ("wordy", -0.5, 0.8, 3))


@pytest.fixture
def annotations(tmp_path):
    rows = [r for name, q, v, seed in MODELS for r in synthetic_rows(name, q, v, seed)]
    return write_json(tmp_path / "annotations.json", rows), rows


def run(argv, capsys) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_annotations_to_table_and_json(annotations, tmp_path, capsys):
    path, rows = annotations
    output = tmp_path / "wr.json"
    code, printed = run(["eval", "winrate", path, "--output", output], capsys)
    assert code == 0
    result = json.loads(output.read_text())
    assert result["action"] == "winrate" and result["unit"] == "percent"
    assert result["files"][str(path)] == {"format": "annotations", "dropped_rows_without_preference": 0}
    assert "fitted across 3 models" in result["glm_setup"]["reference"]["difficulties"]
    by_model = {r["model"]: r for r in result["models"]}
    judged = {j.model: j for j in read_judged([str(path)])[0]}
    difficulty = fit_difficulties(list(judged.values()))
    for name, *_ in MODELS:
        mine = [r for r in rows if r["generator_2"] == name]
        row = by_model[name]
        # the raw win rate is the mean of preference - 1, in percent; lengths are characters
        assert row["win_rate"] == pytest.approx(100 * np.mean([r["preference"] - 1 for r in mine]))
        assert row["avg_length"] == pytest.approx(np.mean([len(r["output_2"]) for r in mine]))
        assert row["n_total"] == row["n_prompts"] == len(INSTRUCTIONS)
        assert row["length_controlled_winrate"] == pytest.approx(
            100 * length_controlled(judged[name], difficulty)["win_rate"])
        assert row["glm"]["glm"] == "length_controlled_noreg"
    lcs = [r["length_controlled_winrate"] for r in result["models"]]
    assert lcs == sorted(lcs, reverse=True)  # best first, as the leaderboard
    assert "against reference" in printed and "LC win rate" in printed and "strong" in printed
    assert f"results: {output}" in printed
    assert result["config"]["files"] == [str(path)] and result["versions"]["numpy"]


def test_matrix_file_with_published_difficulties_by_text_and_by_position(annotations, tmp_path, capsys):
    _, rows = annotations
    matrix = tmp_path / "matrix.jsonl"
    matrix.write_text("\n".join(json.dumps(r) for r in matrix_rows(rows)) + "\n")
    values = {text: (k % 5) - 2.0 for k, text in enumerate(INSTRUCTIONS)}
    by_text = tmp_path / "difficulty.csv"
    by_text.write_text("instruction,instruction_difficulty\n" + "".join(f"{t},{v}\n" for t, v in values.items()))
    out = tmp_path / "a.json"
    assert run(["eval", "winrate", matrix, f"difficulties={by_text}", "--output", out], capsys)[0] == 0
    first = json.loads(out.read_text())
    assert first["files"][str(matrix)]["format"] == "matrix"
    assert first["glm_setup"]["reference"]["difficulties"] == f"published ({by_text})"
    # AlpacaEval's own layout: difficulties by position, with the instructions listed in order elsewhere
    by_position = tmp_path / "instruction_difficulty.csv"
    by_position.write_text(",instruction_difficulty\n" + "".join(f"{k},{v}\n" for k, v in enumerate(values.values())))
    order = write_json(tmp_path / "eval_set.json", [{"instruction": t, "output": "x"} for t in INSTRUCTIONS])
    out2 = tmp_path / "b.json"
    assert run(["eval", "winrate", matrix, f"difficulties={by_position}", f"instructions={order}",
                "--output", out2], capsys)[0] == 0
    second = json.loads(out2.read_text())
    for a, b in zip(first["models"], second["models"]):
        assert a["model"] == b["model"] and a["length_controlled_winrate"] == b["length_controlled_winrate"]


def test_gamed_baselines_regularise(annotations, tmp_path, capsys):
    path, _ = annotations
    gamed = [r for name, v, seed in (("reference_verbose", 0.7, 8), ("reference_concise", -0.7, 9))
             for r in synthetic_rows(name, 0.0, v, seed)]
    gamed_path = write_json(tmp_path / "gamed.json", gamed)
    out = tmp_path / "g.json"
    assert run(["eval", "winrate", path, f"gamed={gamed_path}", "--output", out], capsys)[0] == 0
    result = json.loads(out.read_text())
    setup = result["glm_setup"]["reference"]
    assert setup["gamed_generators"] == ["reference_verbose", "reference_concise"]
    assert "fitted across 5 models" in setup["difficulties"]  # gamed baselines join the difficulty fit
    assert {r["glm"]["glm"] for r in result["models"]} == {"length_controlled_v1"}
    assert {r["glm"]["gamed_rows"] for r in result["models"]} == {48}


def test_alpacaeval_published_gamed_rows_equal_the_gamed_annotations(annotations, tmp_path, capsys):
    """AlpacaEval's df_gamed.csv layout (rows ready for the GLM, difficulties by position) gives the same LC as the
    gamed baselines' annotations with the same difficulties given by instruction text."""
    path, _ = annotations
    values = {text: (k % 7) / 2 - 1.5 for k, text in enumerate(INSTRUCTIONS)}
    gamed = [r for name, v, seed in (("reference_verbose", 0.7, 8), ("reference_concise", -0.7, 9))
             for r in synthetic_rows(name, 0.0, v, seed)]
    lines = ["index,model,preference,std_delta_len,instruction_difficulty,not_gamed_baseline"]
    for name in ("reference_verbose", "reference_concise"):
        rows = [r for r in gamed if r["generator_2"] == name]
        delta = np.array([len(r["output_1"]) - len(r["output_2"]) for r in rows], dtype=float)
        std = delta / delta.std(ddof=1)
        lines += [f"{INSTRUCTIONS.index(r['instruction'])},{name},{r['preference'] - 1},{x},"
                  f"{values[r['instruction']]},False" for r, x in zip(rows, std)]
    df_gamed = tmp_path / "df_gamed.csv"
    df_gamed.write_text("\n".join(lines) + "\n")
    order = write_json(tmp_path / "eval_set.json", [{"instruction": t} for t in INSTRUCTIONS])
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert run(["eval", "winrate", path, f"gamed={df_gamed}", f"instructions={order}", "--output", a], capsys)[0] == 0
    by_text = tmp_path / "difficulty.jsonl"
    by_text.write_text("".join(json.dumps({"instruction": t, "instruction_difficulty": v}) + "\n"
                               for t, v in values.items()))
    gamed_path = write_json(tmp_path / "gamed.json", gamed)
    assert run(["eval", "winrate", path, f"gamed={gamed_path}", f"difficulties={by_text}", "--output", b],
               capsys)[0] == 0
    first, second = json.loads(a.read_text()), json.loads(b.read_text())
    assert first["glm_setup"]["reference"]["difficulties"] == f"published ({df_gamed})"
    for x, y in zip(first["models"], second["models"]):
        assert x["glm"]["glm"] == y["glm"]["glm"] == "length_controlled_v1"
        assert x["length_controlled_winrate"] == pytest.approx(y["length_controlled_winrate"], abs=1e-9)
    code = main(["eval", "winrate", str(path), f"gamed={df_gamed}", "--output", str(tmp_path / "c.json")])
    assert code == 2 and "set instructions=" in capsys.readouterr().err


def test_missing_preferences_one_row_models_and_all_ties(tmp_path, capsys):
    rows = synthetic_rows("good", 0.0, 0.0, 1)
    rows[3]["preference"] = None
    rows += [{**r, "generator_2": "tied", "preference": 1.5} for r in synthetic_rows("x", 0, 0.2, 2)]
    rows.append({"instruction": INSTRUCTIONS[0], "output_1": "b" * 10, "output_2": "m" * 12,
                 "generator_1": "reference", "generator_2": "lonely", "preference": 1.8})
    path = write_json(tmp_path / "ann.json", rows)
    code = main(["eval", "winrate", str(path), "--output", str(tmp_path / "x.json")])
    err = capsys.readouterr().err
    assert code == 2 and f"{path}, row 3, field 'preference': missing preference" in err and "skip_missing=true" in err
    out = tmp_path / "ok.json"
    code, printed = run(["eval", "winrate", path, "skip_missing=true", "--output", out], capsys)
    assert code == 0
    result = json.loads(out.read_text())
    assert result["files"][str(path)]["dropped_rows_without_preference"] == 1
    by_model = {r["model"]: r for r in result["models"]}
    assert by_model["good"]["n_total"] == len(INSTRUCTIONS) - 1
    tied = by_model["tied"]
    assert tied["win_rate"] == 50.0 and tied["n_draws"] == len(INSTRUCTIONS) and tied["standard_error"] == 0.0
    assert tied["length_controlled_winrate"] == pytest.approx(50.0, abs=1.0)
    lonely = by_model["lonely"]
    assert lonely["win_rate"] == pytest.approx(80.0) and lonely["standard_error"] is None
    assert lonely["length_controlled_winrate"] is None and "at least 5" in lonely["glm"]["reason"]
    assert "lonely" in printed and "at least 5" in printed


def test_generate_results_give_the_same_lc_as_eval_generate(tmp_path, model_dir, capsys):
    data = write_pairs(tmp_path / "pairs.jsonl", n=8)
    generated = tmp_path / "gen.json"
    assert main(["eval", "generate", "--prompts", str(data), "--model", str(model_dir), "--output", str(generated),
                 "--progress", "false", "reference_column=chosen", "limit=6", "samples_per_prompt=2",
                 "max_new_tokens=12", "judge.type=callable", "judge.function=tokensift.judges:vader_sentiment"]) == 0
    capsys.readouterr()
    out = tmp_path / "wr.json"
    assert run(["eval", "winrate", generated, "--output", out], capsys)[0] == 0
    result = json.loads(out.read_text())
    assert result["files"][str(generated)]["format"] == "generate"
    (row,) = result["models"]
    assert row["model"] == str(model_dir) and row["baseline"] == "reference answers (chosen)"
    assert (row["n_total"], row["n_prompts"]) == (12, 6)  # 2 samples of each prompt: one cluster each
    block = json.loads(generated.read_text())["metrics"]["judge"]["vs_reference"]
    # one model, no published difficulties: both run length_controlled_minimal through the same code
    assert row["glm"]["glm"] == block["length_controlled"].get("glm")
    assert row["win_rate"] == pytest.approx(100 * block["win_rate"])
    if block["length_controlled"]["win_rate"] is None:
        assert row["length_controlled_winrate"] is None
    else:
        assert row["length_controlled_winrate"] == pytest.approx(100 * block["length_controlled"]["win_rate"])
