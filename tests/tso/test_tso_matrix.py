"""Generator specs, prior ranks, prompt sources (file, human column, offline matrix), the split and the CLI."""

from __future__ import annotations

import gzip
import json

import pytest
from conftest import shared_data

from tokensift.config import build
from tokensift.errors import DataError, UserError
from tokensift.tso.config import TSOConfig, parse_generators, prior_ranks
from tokensift.tso.matrix import assemble_candidates, read_offline_cells
from tokensift.tso.prompts import load_prompts, make_plan, quickstart_prompts

DEFAULTS = {"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 16}


def specs(items, matrix=False):
    return parse_generators(items, DEFAULTS, 0, matrix)


@pytest.mark.parametrize("items,message", [
    ([{"name": "a", "model": "m", "size": 1, "temprature": 0.5}], r"generators\[0\] \('a'\): unknown key 'temprature' \(did you mean 'temperature'\?\)"),
    ([{"name": "a", "model": "m", "policy": True, "size": 1}], r"exactly one of .*found \['model', 'policy'\]"),
    ([{"name": "a", "model": "m"}], r"\('a'\): give its prior place"),
    ([{"name": "a", "model": "m", "size": 1}, {"name": "b", "model": "m", "rank": 2}], "mixing the two"),
    ([{"name": "a", "model": "m", "size": 1}, {"name": "a", "model": "n", "size": 2}], "'a' is used twice"),
    ([{"name": "human", "model": "m", "size": 1}], "reserved for human responses"),
    ([{"name": "a", "column": "gpt4", "rank": 1}], "matrix_file is not set"),
    ([{"name": "a", "model": "m", "size": "big"}], r"'size' must be a number"),
    ([{"name": "a b", "model": "m", "size": 1}], "'name' must be"),
    ([{"name": "a", "model": "m", "size": 1, "temperature": -1}], "temperature >= 0"),
    ([{"name": "p", "policy": True, "size": 1}, {"name": "q", "policy": True, "size": 2}], "at most one"),
    ([], "at least one generator"),
])
def test_bad_generator_specs_are_named(items, message):
    with pytest.raises(UserError, match=message):
        specs(items)


def test_prior_ranks_size_then_stage_or_explicit_rank():
    s = specs([{"name": "s0", "model": "m", "size": 0.5}, {"name": "s1", "model": "m", "size": 0.5, "stage": 1},
               {"name": "l0", "model": "m", "size": 7, "temperature": 0.2},
               {"name": "twin", "model": "n", "size": 7}])
    assert prior_ranks(s, with_human=False) == {"s0": 0, "s1": 1, "l0": 2, "twin": 2}
    assert s[2].temperature == 0.2 and s[0].temperature == 0.8  # per-generator override, else the default
    assert s[0].seed != s[1].seed  # every column samples with its own seed
    r = specs([{"name": "a", "column": "x", "rank": 10}, {"name": "b", "column": "y", "rank": -1}], matrix=True)
    assert prior_ranks(r, with_human=True) == {"b": 0, "a": 1, "human": 2}


def test_config_validation_names_the_key(tmp_path):
    base = {"prompts": "builtin:quickstart", "generators": [{"name": "p", "policy": True, "size": 1}]}
    build(TSOConfig, base)
    with pytest.raises(UserError, match="train.model is set by each TSO round"):
        build(TSOConfig, {**base, "train": {"model": "x"}})
    with pytest.raises(UserError, match="unknown config key 'train.learning_rte'"):
        build(TSOConfig, {**base, "train": {"learning_rte": 1}})
    with pytest.raises(UserError, match="unresolved must be one of"):
        build(TSOConfig, {**base, "unresolved": "ask"})
    with pytest.raises(UserError, match="flag_threshold"):
        build(TSOConfig, {**base, "flag_threshold": 0.4})
    with pytest.raises(UserError, match="no prompts"):
        build(TSOConfig, {**base, "prompts": ""})


def test_prompt_file_with_human_column_and_ids(tmp_path):
    path = tmp_path / "prompts.csv"
    path.write_text("id,question,human\nq1,Hello there?,A friendly reply.\nq2,Tell me a joke.,\n"
                    "q3,\"[{\"\"role\"\": \"\"system\"\", \"\"content\"\": \"\"Be kind.\"\"}, {\"\"role\"\": \"\"user\"\", "
                    "\"\"content\"\": \"\"Hi\"\"}]\",Hi back!\n")
    config = TSOConfig(prompts=str(path), prompt_column="question", id_column="id", human_column="human")
    records, duplicates = load_prompts(config)
    assert [(r.id, r.human) for r in records] == [("q1", "A friendly reply."), ("q2", None), ("q3", "Hi back!")]
    assert records[2].messages[0] == {"role": "system", "content": "Be kind."} and duplicates == 0
    path.write_text("id,question,human\nq1,Hello?,x\nq1,Again?,y\n")
    with pytest.raises(DataError, match=r"row 1, field 'id': id 'q1' was already used by row 0"):
        load_prompts(config)
    path.write_text("id,text\nq1,Hello?\n")
    with pytest.raises(DataError, match=r"prompts.csv, row 0, field 'question': missing"):
        load_prompts(config)
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"prompt": "Same?"}\n{"prompt": "Same?"}\n{"prompt": "Other"}\n')
    records, duplicates = load_prompts(TSOConfig(prompts=str(jsonl)))
    assert len(records) == 2 and duplicates == 1  # merged, and counted for the report


def write_matrix(path, rows):
    with gzip.open(path, "wt") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return path


def test_offline_matrix_prompts_and_cells(tmp_path):
    path = write_matrix(tmp_path / "m.jsonl.gz", [
        {"prompt": "Q1", "source": "x", "responses": {"ref": {"text": "R1", "p_better_than_reference": None},
                                                       "small": {"text": "S1", "p_better_than_reference": 0.1}}},
        {"prompt": "Q2", "source": "x", "responses": {"ref": {"text": "R2", "p_better_than_reference": None}}},
    ])
    gens = [{"name": "ref", "column": "ref", "rank": 2}, {"name": "small", "column": "small", "rank": 1}]
    config = build(TSOConfig, {"matrix_file": str(path), "generators": gens})
    records, _ = load_prompts(config)
    assert [r.messages[0]["content"] for r in records] == ["Q1", "Q2"]
    s = config.generator_specs()
    cells = read_offline_cells(str(path), records, s)
    assert cells == {(records[0].id, "ref"): "R1", (records[0].id, "small"): "S1", (records[1].id, "ref"): "R2"}
    cands, counts = assemble_candidates([r.id for r in records], {r.id: r for r in records}, s,
                                        prior_ranks(s, False), cells)
    assert len(cands) == 3 and counts["missing_or_empty"] == {"small": 1}
    with pytest.raises(UserError, match="no row has a response column 'big'"):
        read_offline_cells(str(path), records, specs([{"name": "big", "column": "big", "rank": 1}], matrix=True))
    write_matrix(path, [{"prompt": "Q1", "responses": {"ref": {"text": 3}}}])
    with pytest.raises(DataError, match=r"row 0, field 'responses.ref.text'"):
        read_offline_cells(str(path), records, s)


def test_real_alpacaeval_matrix_loads():
    path = shared_data("alpacaeval-model-matrix.dev.jsonl.gz")
    gens = [{"name": "gpt4", "column": "gpt4_1106_preview", "rank": 3},
            {"name": "claude", "column": "claude-2", "rank": 2},
            {"name": "gemma", "column": "gemma-2b-it", "rank": 1}]
    config = build(TSOConfig, {"matrix_file": str(path), "generators": gens, "limit": 40})
    records, duplicates = load_prompts(config)
    assert len(records) == 40 and duplicates == 0
    cells = read_offline_cells(str(path), records, config.generator_specs())
    assert sum(1 for (_, g) in cells if g == "gpt4") == 40 and all(isinstance(t, str) for t in cells.values())


def test_split_is_seeded_disjoint_and_complete():
    records = quickstart_prompts()
    assert len(records) == 40 and all(r.human for r in records)
    plan = make_plan(records, 16, 3, seed=0)
    assert plan == make_plan(records, 16, 3, seed=0) and plan != make_plan(records, 16, 3, seed=1)
    ids = plan["eval"] + [i for chunk in plan["chunks"] for i in chunk]
    assert sorted(ids) == sorted(r.id for r in records) and [len(c) for c in plan["chunks"]] == [8, 8, 8]
    with pytest.raises(UserError, match="cannot give 38 held-out prompts and 3"):
        make_plan(records, 38, 3, seed=0)


def test_cli_actions_parse_into_the_config(tmp_path):
    from tokensift.cli import config_from_args
    from tokensift.cli import build_parser
    from tokensift.tso.cli import SKIP

    config_path = tmp_path / "c.yaml"
    config_path.write_text("prompts: builtin:quickstart\ngenerators: [{name: p, policy: true, size: 1}]\n")
    parser = build_parser("tso")
    args = parser.parse_args(["tso", "review", "--config", str(config_path), "--review-file", "r.csv", "rounds=2"])
    from tokensift.tso.config import ReviewConfig

    config = config_from_args(ReviewConfig, args, skip=SKIP)
    assert (config.rounds, config.review_file, args.tso_action) == (2, "r.csv", "review")
    from tokensift.tso.cli import cmd_review

    with pytest.raises(UserError, match="holds no TSO run yet"):
        cmd_review(parser.parse_args(["tso", "review", "--config", str(config_path),
                                      f"output_dir={tmp_path / 'none'}"]))


def test_vllm_backend_matches_the_interface():
    from tokensift.tso.backends import VLLMSampler, vllm_usable

    if not vllm_usable():
        pytest.skip("vLLM and a CUDA GPU are needed for the vLLM back end")
    import tempfile

    from conftest import build_model, build_tokenizer

    folder = tempfile.mkdtemp()
    tok = build_tokenizer()
    build_model(len(tok)).save_pretrained(folder)
    tok.save_pretrained(folder)
    sampler = VLLMSampler(folder, batch_size=4, progress=False)
    prompts = [[{"role": "user", "content": "Hello"}], [{"role": "user", "content": "Bye"}]]
    first = sampler.sample(prompts, 1.0, 0.95, 8, seed=3)
    assert len(first) == 2 and all(isinstance(t, str) for t in first)
    assert sampler.sample(prompts, 1.0, 0.95, 8, seed=3) == first  # seeded per request
    sampler.close()
