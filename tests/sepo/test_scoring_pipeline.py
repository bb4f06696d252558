"""Token scoring (index alignment by hand, resume), SePO training, and the pipeline on tiny models."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import build_model, train_config, write_pairs
from tokensift.sepo.config import ScoreConfig
from tokensift.scores import load_scores
from tokensift.sepo.score import score_tokens
from tokensift.shards import ShardStore
from tokensift.api import train_model as train
from tokensift.train.metrics import read_metrics


@pytest.fixture
def two_models(tmp_path, tokenizer):
    paths = []
    for name, seed in (("ref", 0), ("oracle", 1)):
        path = tmp_path / name
        build_model(len(tokenizer), seed=seed).save_pretrained(path)
        tokenizer.save_pretrained(path)
        paths.append(path)
    return paths


def hand_scores(model_a, model_b, tokenizer, prompt_ids, response_ids, beta):
    """beta * (log pa - log pb) of each response token, from full forward passes, position by position."""
    ids = torch.tensor([list(prompt_ids) + list(response_ids)])
    with torch.no_grad():
        la = torch.log_softmax(model_a(input_ids=ids).logits[0], -1)
        lb = torch.log_softmax(model_b(input_ids=ids).logits[0], -1)
    p = len(prompt_ids)
    return [beta * float(la[p - 1 + i, t] - lb[p - 1 + i, t]) for i, t in enumerate(response_ids)]


def test_scores_equal_logprob_differences_by_hand(tmp_path, tokenizer, two_models):
    ref_dir, oracle_dir = two_models
    data = tmp_path / "pair.jsonl"
    data.write_text(json.dumps({"prompt": "hi", "chosen": "I love it", "rejected": "bad"}) + "\n")
    cfg = ScoreConfig(data=str(data), oracle=str(oracle_dir), reference=str(ref_dir), beta=0.5,
                      output_dir=str(tmp_path / "scores"), progress=False)
    cfg.validate()
    score_tokens(cfg)
    meta, records = load_scores(cfg.output_dir)
    rec = records[0]
    prompt = tokenizer("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    chosen = tokenizer("I love it", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert rec["prompt_ids"].tolist() == prompt and rec["chosen_ids"].tolist() == chosen
    oracle = build_model(len(tokenizer), seed=1)
    ref = build_model(len(tokenizer), seed=0)
    expected = hand_scores(oracle, ref, tokenizer, prompt, chosen, 0.5)
    assert len(rec["chosen_scores"]) == len(chosen)  # the first response token and the EOS are scored
    assert np.allclose(rec["chosen_scores"], expected, atol=1e-5)
    expected_r = hand_scores(oracle, ref, tokenizer, prompt, rec["rejected_ids"].tolist(), 0.5)
    assert np.allclose(rec["rejected_scores"], expected_r, atol=1e-5)
    assert meta["complete"] and meta["rows"] == 1


def test_scoring_resumes_without_duplicates_and_refuses_other_inputs(tmp_path, two_models):
    ref_dir, oracle_dir = two_models
    data = write_pairs(tmp_path / "pairs.jsonl", n=10)
    cfg = ScoreConfig(data=str(data), oracle=str(oracle_dir), reference=str(ref_dir), chunk_pairs=3,
                      output_dir=str(tmp_path / "scores"), progress=False)
    first = score_tokens(cfg)
    assert first.rows_scored == 10 and len(ShardStore(cfg.output_dir).shards()) == 4
    _, before = load_scores(cfg.output_dir)
    # a killed run: the last shard never landed, and a temporary file was left behind
    store = ShardStore(cfg.output_dir)
    store.shards()[-1].unlink()
    (Path(cfg.output_dir) / ".tmp-dead.parquet").write_bytes(b"partial")
    again = score_tokens(cfg)
    assert again.rows_scored == 1 and again.rows_total == 10
    rows = ShardStore(cfg.output_dir).read(["row"]).column("row").to_pylist()
    assert sorted(rows) == list(range(10))  # nothing missing, nothing twice
    _, after = load_scores(cfg.output_dir)
    assert all(np.array_equal(before[r]["chosen_scores"], after[r]["chosen_scores"]) for r in range(10))
    assert not list(Path(cfg.output_dir).glob(".tmp-*"))
    from tokensift.errors import UserError

    other = ScoreConfig(**{**cfg.__dict__, "beta": 0.2})
    with pytest.raises(UserError, match="other inputs"):
        score_tokens(other)


def test_sepo_full_selection_equals_simpo_beta1_gamma0(tmp_path, two_models):
    ref_dir, oracle_dir = two_models
    data = write_pairs(tmp_path / "pairs.jsonl", n=8)
    score_cfg = ScoreConfig(data=str(data), oracle=str(oracle_dir), reference=str(ref_dir),
                            output_dir=str(tmp_path / "scores"), progress=False)
    score_tokens(score_cfg)
    sepo = train_config(tmp_path, ref_dir, data, loss="sepo", scores=score_cfg.output_dir, k_chosen=1.0,
                        k_rejected=1.0, sepo_gamma=1.0, sepo_margin=0.0, max_steps=3, output_dir=str(tmp_path / "sepo"))
    simpo = train_config(tmp_path, ref_dir, data, loss="simpo", beta=1.0, simpo_gamma=0.0, max_steps=3,
                         output_dir=str(tmp_path / "simpo"))
    train(sepo)
    train(simpo)
    a = read_metrics(tmp_path / "sepo" / "metrics.jsonl")
    b = read_metrics(tmp_path / "simpo" / "metrics.jsonl")
    assert [round(r["loss"], 6) for r in a] == [round(r["loss"], 6) for r in b]
    assert abs(a[-1]["loss"] - a[0]["loss"]) > 1e-4


def test_sepo_reads_only_selected_tokens(tmp_path, two_models):
    ref_dir, oracle_dir = two_models
    data = write_pairs(tmp_path / "pairs.jsonl", n=8)
    score_cfg = ScoreConfig(data=str(data), oracle=str(oracle_dir), reference=str(ref_dir),
                            output_dir=str(tmp_path / "scores"), progress=False)
    score_tokens(score_cfg)
    cfg = train_config(tmp_path, ref_dir, "", loss="sepo", scores=score_cfg.output_dir, k_chosen=0.3,
                       k_rejected=0.3, max_steps=1)  # no data: SePO reads its pairs from the scores
    from tokensift.train.run import selected_train_data
    from tokensift.train.loop import Trainer

    trainer = Trainer(cfg, selected_train_data)
    pairs = trainer.data.train.pairs[:4]
    batch = trainer.build_batch(pairs)
    _, records = load_scores(score_cfg.output_dir)
    for i, pair in enumerate(pairs):
        n = len(pair.chosen_ids)
        picked = batch.select_mask[i, :n].nonzero().flatten().tolist()
        top = np.argsort(-records[pair.row]["chosen_scores"], kind="stable")[: max(1, int(0.3 * n))]
        assert sorted(picked) == sorted(top.tolist())
    assert int(batch.select_mask.sum()) < int(batch.response_mask.sum())


def test_pipeline_end_to_end_and_skips_finished_stages(tmp_path, model_dir, capsys):
    from tokensift.config import build
    from tokensift.sepo.pipeline import SePOConfig, run_pipeline

    data = write_pairs(tmp_path / "pairs.jsonl", n=12)
    fast = {"learning_rate": 1e-3, "batch_size": 4, "progress": False, "ref_cache_dir": str(tmp_path / "cache")}
    cfg = build(SePOConfig, {"data": str(data), "output_dir": str(tmp_path / "sepo"), "reference_model": str(model_dir),
                             "policy_model": str(model_dir), "sft_enabled": True, "sft": fast,
                             "oracle": {**fast, "fraction": 0.5, "epochs": 2}, "score": {"progress": False},
                             "policy": {**fast, "k_chosen": 0.3}, "show_pairs": 5})
    report = run_pipeline(cfg)
    for stage in ("sft", "oracle", "policy"):
        assert (Path(report["stages"][stage]) / "model.safetensors").exists()
    card = json.loads((tmp_path / "sepo" / "oracle" / "final" / "run_card.json").read_text())
    assert card["data"]["train_pairs"] == 6 and card["data"]["oracle_fraction"] == 0.5
    assert Path(report["heatmap"]).exists() and (tmp_path / "sepo" / "report" / "mass.json").exists()
    _, records = load_scores(tmp_path / "sepo" / "scores")
    assert sorted(records) == list(range(12))
    capsys.readouterr()
    run_pipeline(cfg)
    out = capsys.readouterr().out
    assert out.count("skipped") == 4
    # A new policy setting (issue 23): the finished sft, oracle and scores are reused, the first policy is kept, and
    # the new one trains beside it, with its own report.
    stamp = (tmp_path / "sepo" / "policy" / "final" / "model.safetensors").stat().st_mtime_ns
    changed = build(SePOConfig, {**{f: getattr(cfg, f) for f in ("data", "output_dir", "reference_model",
                                                                 "policy_model", "sft_enabled", "sft", "oracle",
                                                                 "score", "show_pairs")},
                                 "policy": {**fast, "k_chosen": 0.2}})
    again = run_pipeline(changed)
    out = capsys.readouterr().out
    assert out.count("skipped") == 3 and "holds a run with other settings (k_chosen: 0.3 -> 0.2)" in out
    policy = Path(again["stages"]["policy"]).parent
    assert policy.name.startswith("policy-") and len(policy.name) == len("policy-") + 8
    assert json.loads((policy / "final" / "run_card.json").read_text())["config"]["k_chosen"] == 0.2
    assert (tmp_path / "sepo" / "policy" / "final" / "model.safetensors").stat().st_mtime_ns == stamp
    assert (tmp_path / "sepo" / ("report" + policy.name[len("policy"):]) / "pipeline.json").exists()
    run_pipeline(changed)  # and both are finished now: nothing trains
    assert capsys.readouterr().out.count("skipped") == 4


def test_pipeline_limit_reaches_every_stage(tmp_path, model_dir):
    from tokensift.config import build
    from tokensift.sepo.pipeline import SePOConfig

    data = write_pairs(tmp_path / "pairs.jsonl", n=12)
    cfg = build(SePOConfig, {"data": str(data), "limit": 5, "sft_enabled": True, "reference_model": str(model_dir)})
    assert {name: stage.limit for name, stage in cfg.stages().items()} == {"sft": 5, "oracle": 5, "score": 5,
                                                                             "policy": 5}


def test_show_cli_writes_the_heatmap_of_stored_scores(tmp_path, two_models, capsys):
    import re

    from tokensift.cli import main
    from tokensift.selection import Selection

    ref_dir, oracle_dir = two_models
    data = write_pairs(tmp_path / "pairs.jsonl", n=6)
    score_cfg = ScoreConfig(data=str(data), oracle=str(oracle_dir), reference=str(ref_dir),
                            output_dir=str(tmp_path / "scores"), progress=False)
    score_tokens(score_cfg)
    page = tmp_path / "page.html"
    assert main(["show", f"scores={score_cfg.output_dir}", f"output={page}", "pairs=4", "k_chosen=0.5"]) == 0
    assert "wrote" in capsys.readouterr().out
    text = page.read_text()
    blob = re.search(r'<script type="application/json" id="ts-data">(.*?)</script>', text, re.S).group(1)
    payload = json.loads(blob)
    _, records = load_scores(score_cfg.output_dir)
    assert [p["row"] for p in payload["pairs"]] == [0, 1, 2, 3]
    sel = Selection("per_response", 0.5, 0.3)
    for shown in payload["pairs"]:
        rec = records[shown["row"]]
        assert shown["chosen"]["selected"] == sel.chosen(rec["chosen_scores"]).tolist()
        assert shown["rejected"]["selected"] == sel.rejected(rec["rejected_scores"]).tolist()
        assert np.allclose(shown["chosen"]["scores"], rec["chosen_scores"])
        assert len(shown["chosen"]["tokens"]) == len(rec["chosen_ids"])
        margin = rec["chosen_scores"].sum() - rec["rejected_scores"].sum()
        assert np.isclose(payload["margins"][payload["pairs"].index(shown)], margin)
    assert payload["scale"]["default"] == "global"  # one scale for all pairs unless asked
    assert main(["show", f"scores={score_cfg.output_dir}", f"output={page}", "pairs=2", "scale=pair"]) == 0
    blob = re.search(r'<script type="application/json" id="ts-data">(.*?)</script>', page.read_text(), re.S).group(1)
    assert json.loads(blob)["scale"]["default"] == "pair"
    assert main(["show", f"scores={score_cfg.output_dir}", f"output={page}", "scale=row"]) == 2
