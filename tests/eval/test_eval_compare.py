"""`tokensift eval compare`: paired bootstrap over prompts (seeded, clustered by prompt, seeds pooled), the
Markdown/JSON output and the optional plot, end to end on small annotation files."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from annotation_files import INSTRUCTIONS, synthetic_rows, write_json

from tokensift.cli import main


def compare(argv, tmp_path, capsys, name="cmp") -> tuple[dict, str]:
    out = tmp_path / f"{name}.json"
    code = main([*map(str, argv), "--output", str(out), "bootstrap_samples=100"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    return json.loads(out.read_text()), printed.out


@pytest.fixture
def runs(tmp_path):
    a = write_json(tmp_path / "a.json", synthetic_rows("model_a", -0.5, 0.2, 1))
    b = write_json(tmp_path / "b.json", synthetic_rows("model_b", 0.3, 0.5, 2))
    return a, b


def test_seeded_and_reproducible(runs, tmp_path, capsys):
    a, b = runs
    first, printed = compare(["eval", "compare", a, b, "plot=none"], tmp_path, capsys, "one")
    again, _ = compare(["eval", "compare", a, b, "plot=none"], tmp_path, capsys, "two")
    other, _ = compare(["eval", "compare", a, b, "plot=none", "seed=7"], tmp_path, capsys, "three")
    block, block_again, block_other = (r["comparisons"][0] for r in (first, again, other))
    assert block["differences"] == block_again["differences"] and block["estimates"] == block_again["estimates"]
    assert block["differences"][0]["win_rate"]["interval"] != block_other["differences"][0]["win_rate"]["interval"]
    assert block["runs"] == ["model_a", "model_b"] and block["prompts"] == len(INSTRUCTIONS)
    assert block["metrics"] == ["length_controlled_winrate", "win_rate", "avg_length"]
    win = block["differences"][0]["win_rate"]
    a_rate = np.mean([r["preference"] - 1 for r in json.loads(a.read_text())])
    b_rate = np.mean([r["preference"] - 1 for r in json.loads(b.read_text())])
    assert win["difference"] == pytest.approx(100 * (b_rate - a_rate))
    assert win["interval"][0] < win["difference"] < win["interval"][1]
    assert "| win rate (%) |" in printed and "model_b − model_a" in printed and "p=" in printed


def test_a_constant_shift_has_a_degenerate_interval(tmp_path, capsys):
    rows = [{**r, "preference": min(r["preference"], 1.85)} for r in synthetic_rows("base", -0.5, 0.0, 3)]
    shifted = [{**r, "generator_2": "shifted", "preference": r["preference"] + 0.1} for r in rows]
    a, b = write_json(tmp_path / "a.json", rows), write_json(tmp_path / "b.json", shifted)
    result, _ = compare(["eval", "compare", a, b, "plot=none"], tmp_path, capsys)
    difference = result["comparisons"][0]["differences"][0]
    # every prompt moved by 0.1: the paired difference has no sampling spread at all
    assert difference["win_rate"]["difference"] == pytest.approx(10.0)
    assert difference["win_rate"]["interval"] == pytest.approx([10.0, 10.0]) and difference["win_rate"]["p_value"] == 0
    assert difference["avg_length"]["interval"] == [0.0, 0.0] and difference["avg_length"]["p_value"] == 1.0


def test_samples_of_a_prompt_are_resampled_together(runs, tmp_path, capsys):
    """Repeating every row 4 times (4 identical samples per prompt) leaves the prompt-level bootstrap unchanged;
    resampling single answers would have narrowed the intervals by half."""
    a, b = runs
    once, _ = compare(["eval", "compare", a, b, "plot=none"], tmp_path, capsys, "once")
    a4 = write_json(tmp_path / "a4.json", json.loads(a.read_text()) * 4)
    b4 = write_json(tmp_path / "b4.json", json.loads(b.read_text()) * 4)
    four, _ = compare(["eval", "compare", a4, b4, "plot=none"], tmp_path, capsys, "four")
    d1, d4 = once["comparisons"][0], four["comparisons"][0]
    assert d4["rows"] == {"model_a": 4 * len(INSTRUCTIONS), "model_b": 4 * len(INSTRUCTIONS)}
    for metric in ("win_rate", "avg_length"):
        assert d4["differences"][0][metric]["interval"] == pytest.approx(d1["differences"][0][metric]["interval"])
    # the LC refit sees every row 4 times: the same fit up to the L1 penalty's relative weight
    lc1, lc4 = d1["differences"][0]["length_controlled_winrate"], d4["differences"][0]["length_controlled_winrate"]
    assert lc4["bootstrap_stderr"] == pytest.approx(lc1["bootstrap_stderr"], rel=0.35)


def test_seeds_are_pooled_and_runs_picked_from_multi_model_files(tmp_path, capsys):
    seed0, seed1 = synthetic_rows("policy", 0.0, 0.2, 10), synthetic_rows("policy", 0.0, 0.2, 11)
    s0, s1 = write_json(tmp_path / "s0.json", seed0), write_json(tmp_path / "s1.json", seed1)
    both = write_json(tmp_path / "both.json", synthetic_rows("base", -1.0, 0.0, 12) + synthetic_rows("other", 0, 0, 13))
    result, _ = compare(["eval", "compare", f"{both}#base", f"{s0},{s1}"], tmp_path, capsys)
    block = result["comparisons"][0]
    assert block["runs"] == ["base", "policy"] and block["rows"]["policy"] == 2 * len(INSTRUCTIONS)
    pooled = np.mean([(x["preference"] + y["preference"]) / 2 - 1 for x, y in zip(seed0, seed1)])
    assert block["estimates"][1]["win_rate"]["value"] == pytest.approx(100 * pooled)
    assert (tmp_path / "cmp.png").stat().st_size > 1000  # plot=auto, matplotlib installed: beside the JSON
    code = main(["eval", "compare", str(both), str(s0), "--output", str(tmp_path / "x.json")])
    assert code == 2 and "hold several models" in capsys.readouterr().err


def test_plot_without_matplotlib(runs, tmp_path, capsys, monkeypatch):
    a, b = runs
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    _, printed = compare(["eval", "compare", a, b, f"markdown={tmp_path / 'table.md'}"], tmp_path, capsys)
    assert "note: no plot: matplotlib is not installed" in printed
    assert (tmp_path / "table.md").read_text().startswith("against reference")
    code = main(["eval", "compare", str(a), str(b), f"plot={tmp_path / 'p.png'}", "--output", str(tmp_path / "y.json")])
    assert code == 2 and "plot= needs matplotlib" in capsys.readouterr().err


def test_runs_must_share_prompts(tmp_path, capsys):
    a = write_json(tmp_path / "a.json", synthetic_rows("a", 0, 0, 1, instructions=INSTRUCTIONS[:12]))
    b = write_json(tmp_path / "b.json", synthetic_rows("b", 0, 0, 2, instructions=INSTRUCTIONS[12:]))
    code = main(["eval", "compare", str(a), str(b), "--output", str(tmp_path / "z.json")])
    assert code == 2 and "share no prompt" in capsys.readouterr().err
