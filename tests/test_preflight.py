"""`--check` on every stage: the plan without loading weights or writing anything, and exactly the errors the run
would stop on (issue 23: an 8-GPU job must fail in seconds, not after loading a model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_pairs

from tokensift.cli import main


def run(argv, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def no_weights(monkeypatch):
    """Any model load fails the test: the preflight reads config and tokenizer files only. Patched where every load
    ends (transformers' from_pretrained), so no module can keep a patched name after the test."""
    from transformers import AutoModelForCausalLM

    def refuse(*args, **kwargs):
        raise AssertionError("the preflight loaded a model's weights")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", refuse)


def common(tmp_path, model_dir, data) -> list[str]:
    return [f"data={data}", f"model={model_dir}", f"ref_cache_dir={tmp_path / 'cache'}", "progress=false"]


def test_train_check_prints_the_plan_loads_nothing_and_writes_nothing(tmp_path, model_dir, capsys, no_weights):
    data = write_pairs(tmp_path / "pairs.jsonl", n=16)
    out = tmp_path / "run"
    code, text, err = run(["dpo", *common(tmp_path, model_dir, data), f"output_dir={out}", "batch_size=4",
                           "grad_accum=2", "eval_fraction=0.25", "--check"], capsys)
    assert code == 0, err
    # 16 pairs, 4 held out (eval_fraction 0.25): 12 train at 8 per step -> ceil(12 / 8) = 2 steps
    assert "12 training pairs, 4 held out" in text
    assert "2 optimizer steps of 8 pairs (batch_size 4 x grad_accum 2 x 1 process)" in text
    assert f"{out}: a new run" in text and "16 pairs computed once before step 1" in text
    assert "no weights were loaded" in text
    assert not out.exists() and not (tmp_path / "cache").exists()


def check_gives_the_runs_error(argv, capsys) -> str:
    """`argv --check` and `argv` stop with the same message, exit 2."""
    code, _, checked = run([*argv, "--check"], capsys)
    code_run, _, ran = run(argv, capsys)
    assert code == code_run == 2, (checked, ran)
    assert checked.strip().splitlines()[-1] == ran.strip().splitlines()[-1]
    return checked


def test_check_gives_the_runs_error_for_a_missing_file(tmp_path, model_dir, capsys, no_weights):
    err = check_gives_the_runs_error(["dpo", *common(tmp_path, model_dir, tmp_path / "missing.jsonl"),
                                      f"output_dir={tmp_path / 'run'}"], capsys)
    assert "missing.jsonl" in err


def test_check_gives_the_runs_error_for_a_folder_of_other_settings(tmp_path, model_dir, capsys):
    data = write_pairs(tmp_path / "pairs.jsonl", n=8)
    args = ["train", "loss=simpo", *common(tmp_path, model_dir, data), f"output_dir={tmp_path / 'run'}",
            "max_steps=1"]
    assert run(args, capsys)[0] == 0
    err = check_gives_the_runs_error([*args[:-1], "max_steps=2"], capsys)
    assert "finished run made with other settings (max_steps: 1 -> 2)" in err
    code, text, _ = run([*args, "--check"], capsys)
    assert code == 0 and "finished with these settings; kept, nothing is trained" in text


def test_check_gives_the_runs_error_for_a_bad_model_folder(tmp_path, capsys):
    data = write_pairs(tmp_path / "pairs.jsonl", n=8)
    (tmp_path / "empty-model").mkdir()
    err = check_gives_the_runs_error(["dpo", f"data={data}", f"model={tmp_path / 'empty-model'}",
                                      f"output_dir={tmp_path / 'run'}"], capsys)
    assert "has no config.json" in err


def test_sepo_check_plans_every_stage_and_score_and_show_check_their_inputs(tmp_path, model_dir, capsys, no_weights):
    data = write_pairs(tmp_path / "pairs.jsonl", n=8)
    code, text, err = run(["sepo", f"data={data}", f"reference_model={model_dir}", f"policy_model={model_dir}",
                           f"output_dir={tmp_path / 'sepo'}", "limit=6", "oracle.max_steps=1", "--check"], capsys)
    assert code == 0, err
    assert "oracle: data" in text and "6 training pairs" in text  # limit reaches the stages
    assert f"{tmp_path / 'sepo' / 'scores'}: scores every pair after oracle" in text
    assert "trains on the key tokens after oracle" in text
    assert not (tmp_path / "sepo").exists()
    err = check_gives_the_runs_error(["show", f"scores={tmp_path / 'sepo' / 'scores'}",
                                      f"output={tmp_path / 'x.html'}"], capsys)
    assert "holds no token scores" in err
    code, text, err = run(["score", f"data={data}", f"oracle={model_dir}", f"reference={model_dir}",
                           f"output_dir={tmp_path / 'scores'}", "--check"], capsys)
    assert code == 0 and "8 pairs through the oracle and the reference" in text, err


def test_eval_and_tso_checks(tmp_path, model_dir, capsys, no_weights):
    data = write_pairs(tmp_path / "pairs.jsonl", n=8)
    code, text, err = run(["eval", "pairs", f"data={data}", f"model={model_dir}", f"reference={model_dir}",
                           f"output={tmp_path / 'e.json'}", "--check"], capsys)
    assert code == 0 and "2 no-grad passes over 8 pairs" in text, err
    (tmp_path / "e.json").write_text(json.dumps({"config": {"model": "another", "beta": 0.5}}))
    err = check_gives_the_runs_error(["eval", "pairs", f"data={data}", f"model={model_dir}",
                                      f"output={tmp_path / 'e.json'}", "progress=false"], capsys)
    assert "holds results made with other settings" in err and "model: 'another'" in err
    config = tmp_path / "tso.yaml"
    config.write_text(f"prompts: builtin:quickstart\nmodel: {model_dir}\nrounds: 2\ngenerators:\n"
                      f"  - {{name: base, model: {model_dir}, size: 1}}\n  - {{name: pol, policy: true, size: 2}}\n"
                      "judge: {type: callable, function: 'tokensift.judges:vader_sentiment'}\n")
    code, text, err = run(["tso", "run", "--config", config, f"output_dir={tmp_path / 'tso'}", "--check"], capsys)
    assert code == 0 and "prompts in 2 rounds" in text and "generator pol" in text, err
    assert not (tmp_path / "tso").exists()
    code, _, err = run(["tso", "review", f"output_dir={tmp_path / 'tso'}", "--check"], capsys)
    assert code == 2 and "holds no TSO run yet" in err


def test_max_length_alone_sets_a_prompt_limit_that_fits(tmp_path, model_dir, capsys):
    """`max_length=256` alone failed: max_prompt_length stayed 512."""
    data = write_pairs(tmp_path / "pairs.jsonl", n=8)
    code, text, err = run(["dpo", *common(tmp_path, model_dir, data), f"output_dir={tmp_path / 'r'}",
                           "max_length=256", "--check"], capsys)
    assert code == 0, err
    from tokensift.config import build
    from tokensift.train.config import TrainConfig

    config = build(TrainConfig, {"data": str(data), "max_length": 256})
    assert (config.max_length, config.max_prompt_length) == (256, 128)
    assert build(TrainConfig, {"data": str(data)}).max_prompt_length == 512  # the default stays
    explicit = build(TrainConfig, {"data": str(data), "max_length": 256, "max_prompt_length": 64})
    assert explicit.max_prompt_length == 64
    code, _, err = run(["dpo", *common(tmp_path, model_dir, data), "max_length=256", "max_prompt_length=300",
                        "--check"], capsys)
    assert code == 2 and "max_prompt_length (300) must be smaller than max_length" in err


def test_a_demo_folder_of_other_settings_is_refused_and_overwrite_replaces_it(tmp_path):
    import dataclasses

    from tokensift.demo import RECORD, DemoConfig, demo_folder
    from tokensift.errors import UserError

    config = DemoConfig(output_dir=str(tmp_path / "demo"))
    assert demo_folder(config) == "new"
    (tmp_path / "demo" / "data").mkdir(parents=True)
    recorded = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("output_dir", "overwrite")}
    (tmp_path / "demo" / RECORD).write_text(json.dumps({**recorded, "samples": 2}))
    with pytest.raises(UserError, match=r"holds a demo made with other settings \(samples: 2 -> 4\); pass "
                                        "overwrite=true"):
        demo_folder(config)
    assert demo_folder(dataclasses.replace(config, samples=2)) == "continues"
    assert demo_folder(dataclasses.replace(config, overwrite=True), clear=False) == "replaced"
    assert (tmp_path / "demo" / "data").exists()  # the preflight changes nothing
    assert demo_folder(dataclasses.replace(config, overwrite=True)) == "replaced"
    assert not (tmp_path / "demo" / "data").exists() and not (tmp_path / "demo" / RECORD).exists()
