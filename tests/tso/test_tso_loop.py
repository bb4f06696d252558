"""The iterative loop on tiny in-process models: rounds, the refreshed reference, kill-and-resume, review stops.

The resume test runs two rounds straight, then the same run killed inside round 2's training (an exception
from a patched training step, after two checkpoints), resumes it, and checks that nothing finished is
redone (generation, judge and training calls are counted) and that the final weights are bit-identical.
"""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import CORPUS
from safetensors.torch import load_file

from tokensift.config import build
from tokensift.errors import UserError
from tokensift.train.loop import Trainer
from tokensift.tso.backends import TransformersSampler
from tokensift.tso.config import TSOConfig
from tokensift.judges import CallableJudge
from tokensift.tso.loop import ReviewNeeded, export_review, run_tso


class Counts:
    def __init__(self):
        self.samples = 0
        self.judge_calls = 0
        self.train_runs = 0
        self.train_steps = 0


@pytest.fixture
def counts(monkeypatch):
    """Count generation blocks, training runs and optimizer steps; `kill_at` makes a training step raise."""
    counts = Counts()
    counts.kill_at = None
    sample, run, step = TransformersSampler.sample, Trainer.run, Trainer.train_step

    def counted_sample(self, *args, **kwargs):
        counts.samples += 1
        return sample(self, *args, **kwargs)

    def counted_run(self):
        counts.train_runs += 1
        return run(self)

    def counted_step(self, index):
        if counts.kill_at and counts.kill_at[0] in str(self.output_dir) and index == counts.kill_at[1]:
            raise KeyboardInterrupt("simulated kill")
        counts.train_steps += 1
        return step(self, index)

    monkeypatch.setattr(TransformersSampler, "sample", counted_sample)
    monkeypatch.setattr(Trainer, "run", counted_run)
    monkeypatch.setattr(Trainer, "train_step", counted_step)
    return counts


def length_judge(counts: Counts, temperature: float = 2.0):
    """Longer is better: deterministic, and it disagrees with the prior often enough to flag pairs."""
    judge = CallableJudge(lambda prompt, response: len(response), name="length", temperature=temperature)
    compare_many = judge.compare_many

    def counted(items):
        counts.judge_calls += 1
        return compare_many(items)

    judge.compare_many = counted
    return judge


def tiny_config(tmp_path, model_dir, name, **overrides):
    prompts = tmp_path / "prompts.jsonl"
    if not prompts.exists():
        rows = [{"prompt": f"{CORPUS[i % len(CORPUS)][:30]} ({i})", "answer": CORPUS[(i + 1) % len(CORPUS)]}
                for i in range(10)]
        prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    values = {
        "output_dir": str(tmp_path / name), "model": str(model_dir), "prompts": str(prompts),
        "human_column": "answer", "eval_prompts": 2, "eval_samples": 1, "rounds": 2, "max_new_tokens": 6,
        "block_prompts": 3, "generation_batch_size": 4, "progress": False, "backend": "transformers",
        "generators": [{"name": "hot", "model": str(model_dir), "temperature": 1.5, "size": 1, "stage": 0},
                       {"name": "cool", "model": str(model_dir), "temperature": 0.7, "size": 1, "stage": 1},
                       {"name": "policy", "policy": True, "size": 1, "stage": 2}],
        "judge": {"type": "callable", "function": "tokensift.judges:vader_sentiment"},
        "train": {"learning_rate": 1e-3, "batch_size": 4, "save_every": 1, "keep_checkpoints": 3,
                  "max_length": 64, "max_prompt_length": 32, "warmup_ratio": 0.0},
    }
    values.update(overrides)
    return build(TSOConfig, values)


def weights(run_dir):
    return load_file(str(run_dir / "round-02" / "train" / "final" / "model.safetensors"))


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].equal(b[key]), key


def test_two_rounds_kill_in_round_two_and_resume(tmp_path, model_dir, counts, capsys):
    straight = tiny_config(tmp_path, model_dir, "straight")
    result = run_tso(straight, judge=length_judge(counts))
    reports = result["rounds"]
    # Matrix: 2 fixed columns x 8 training prompts in blocks of 3 (3 blocks each); policy: 4 prompts a round
    # in 2 blocks; evaluation: before and after.
    assert counts.samples == 2 * 3 + 2 * 2 + 2
    # one batched judging per round, one stability win rate per round, + the final win rate
    assert counts.judge_calls == 2 + 2 + 1 and counts.train_runs == 2
    assert reports[0]["policy_in"] == str(model_dir)
    assert reports[1]["policy_in"] == reports[0]["policy_out"] == str(tmp_path / "straight" / "round-01" / "train" / "final")
    card = json.loads((tmp_path / "straight" / "round-02" / "train" / "final" / "run_card.json").read_text())
    assert card["config"]["loss"] == "tso" and card["config"]["model"] == reports[0]["policy_out"]
    assert card["config"]["reference"] is None  # reference = the round's starting policy
    for report in reports:
        c = report["corrections"]
        assert c["pairs"] == c["kept"] + c["flipped"] + c["dropped"] and c["trained"] == c["kept"] + c["flipped"]
        assert {"rewards/chosen", "rewards/rejected", "rewards/margin", "rewards/accuracy", "clip/chosen_fraction",
                "clip/rejected_fraction"} <= set(report["train"])
        assert report["candidates"]["per_generator"]["human"] == 4
    printed = capsys.readouterr().out
    assert "[tso] round 2/2:" in printed and "clip/chosen_fraction" in printed and "review: " in printed
    assert "stability (2 held-out answers at T=1): KL to start" in printed
    for report in reports:  # KL estimates and the win rate over the previous round, from real samples
        s = report["stability"]
        assert s["answers"] == 2 and 0 <= s["win_rate_vs_previous"] <= 1 and report["stop"] is None
        assert s["kl_to_start"]["n"] == 2 and s["kl_to_previous"]["n"] == 2
    assert reports[0]["stability"]["kl_to_previous"] == reports[0]["stability"]["kl_to_start"]  # previous = start
    steps_round2 = reports[1]["train"]["steps"]
    assert steps_round2 >= 4

    killed = tiny_config(tmp_path, model_dir, "killed")
    counts.__init__()
    counts.kill_at = ("killed/round-02", 2)
    with pytest.raises(KeyboardInterrupt):
        run_tso(killed, judge=length_judge(counts))
    assert not (tmp_path / "killed" / "round-02" / "round.json").exists()
    assert (tmp_path / "killed" / "round-02" / "train" / "checkpoint-00000002").exists()

    counts.__init__()
    counts.kill_at = None
    resumed = run_tso(killed, judge=length_judge(counts))
    assert counts.samples == 1  # only the after-training evaluation; matrix, policy columns, "before" were done
    assert counts.judge_calls == 2  # round 2's stability and the final win rate: all pairs were judged before
    assert counts.train_runs == 1 and counts.train_steps == steps_round2 - 2  # round 2 only, from checkpoint 2
    assert "round 1: finished earlier, skipped" in capsys.readouterr().out
    assert_same_weights(weights(tmp_path / "straight"), weights(tmp_path / "killed"))
    for again, first in zip(resumed["rounds"], reports):
        for key in ("pairing", "corrections", "candidates", "train", "stability"):
            assert again[key] == first[key]
    for key in ("mean_score_before", "mean_score_after", "win_rate_after_vs_before"):
        assert resumed["eval"][key] == result["eval"][key]

    # A second kind of interruption: round 2 lost its completion mark, its corrected pairs and its final model.
    round2 = tmp_path / "killed" / "round-02"
    for path in (round2 / "round.json", round2 / "pairs.jsonl"):
        path.unlink()
    shutil.rmtree(round2 / "train" / "final")
    counts.__init__()
    run_tso(killed, judge=length_judge(counts))
    assert (counts.samples, counts.judge_calls, counts.train_runs) == (0, 1, 1)
    assert counts.train_steps == 1  # from the last checkpoint (steps - 1) to the end
    assert_same_weights(weights(tmp_path / "straight"), weights(tmp_path / "killed"))


def test_unresolved_stop_waits_for_human_decisions(tmp_path, model_dir, counts):
    config = tiny_config(tmp_path, model_dir, "review", rounds=1, eval_prompts=0, unresolved="stop",
                         train={"max_steps": 1, "batch_size": 4, "max_length": 64, "max_prompt_length": 32})
    bad = build(TSOConfig, {**{k: getattr(config, k) for k in config.__dataclass_fields__}, "judge": {"type": "magic"}})
    with pytest.raises(UserError, match="judge type must be one of"):
        run_tso(bad)
    assert not (tmp_path / "review" / "tso-config.json").exists()  # a failed start does not lock the folder
    with pytest.raises(ReviewNeeded, match="reviewed pairs need a human decision"):
        run_tso(config, judge=length_judge(counts, temperature=0.5))
    sheet, count = export_review(config, str(tmp_path / "sheet.csv"), include_decided=False)
    assert count > 0
    import csv

    # `tokensift tso review` with only the run folder: the run's own settings come from its record (issue 23)
    from tokensift.cli import main

    assert main(["tso", "review", f"output_dir={config.output_dir}", f"review_file={tmp_path / 'cli.csv'}"]) == 0
    assert (tmp_path / "cli.csv").read_text() == sheet.read_text()

    rows = list(csv.DictReader(sheet.open()))
    assert {"pair_id", "decision", "review_reason", "chosen_text", "rejected_text", "judge_p_chosen"} <= set(rows[0])
    assert {row["review_reason"] for row in rows} <= {"disagreement", "inconsistent", "ambiguous", "audit"}
    for i, row in enumerate(rows):
        row["decision"] = ("keep", "flip", "drop")[i % 3]
    with sheet.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    judge_calls = counts.judge_calls
    decided = build(TSOConfig, {**{k: getattr(config, k) for k in config.__dataclass_fields__},
                                "decisions": str(sheet)})
    result = run_tso(decided, judge=length_judge(counts, temperature=0.5))
    c = result["rounds"][0]["corrections"]
    assert c["human_keep"] + c["human_flip"] + c["human_drop"] == count == c["review_total"]
    assert c["human_drop"] == len(rows[2::3]) and counts.judge_calls == judge_calls  # judged once only
    assert export_review(decided, str(tmp_path / "left.jsonl"), include_decided=False)[1] == 0
    changed = build(TSOConfig, {**{k: getattr(decided, k) for k in config.__dataclass_fields__}, "seed": 5})
    with pytest.raises(UserError, match=r"other settings \(seed changed\)"):
        run_tso(changed)


def test_refused_when_launched_as_several_processes(tmp_path, model_dir, monkeypatch):
    """Under accelerate launch / torchrun every process would generate, judge and write the same files."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    config = tiny_config(tmp_path, model_dir, "multi")
    with pytest.raises(UserError, match="runs in one process, but it was launched as 2"):
        run_tso(config)
    assert not (tmp_path / "multi").exists()
    with pytest.raises(UserError, match="vllm_tensor_parallel must be >= 0"):
        tiny_config(tmp_path, model_dir, "tp", vllm_tensor_parallel=-1)


def test_scaled_margin_reaches_training_and_the_card_describes_the_run(tmp_path, model_dir, counts):
    """One round with the scaled margin on: each trained pair carries 0.5 x its ladder gap (0 if flipped), the
    training logs their mean, and the final folder's card is the whole run's (Hub metadata parsed back)."""
    import yaml

    config = tiny_config(tmp_path, model_dir, "scaled", rounds=1, scaled_margin=0.5, unresolved="flip",
                         train={"max_steps": 1, "batch_size": 16, "max_length": 64, "max_prompt_length": 32})
    result = run_tso(config, judge=length_judge(counts))
    rows = [json.loads(line) for line in (tmp_path / "scaled" / "round-01" / "pairs.jsonl").read_text().splitlines()]
    for row in rows:
        gap = 0 if row["flipped"] else row["chosen_rank"] - row["rejected_rank"]
        assert row["target_margin"] == 0.5 * gap
    assert any(row["flipped"] for row in rows) and any(row["target_margin"] > 0 for row in rows)
    steps = json.loads((tmp_path / "scaled" / "round-01" / "train" / "metrics.jsonl").read_text().splitlines()[0])
    assert 0 < steps["rewards/target_margin"] <= 0.5 * 3  # a mean of margins, each at most 0.5 x 3 levels
    assert result["rounds"][0]["train"]["rewards/target_margin"] == steps["rewards/target_margin"]
    card = (tmp_path / "scaled" / "round-01" / "train" / "final" / "README.md").read_text()
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["library_name"] == "tokensift" and meta["tags"][:2] == ["tokensift", "tso"]
    assert "## Rounds" in card and "| scaled margin | 0.5 x rank_gap |" in card and "KL to start" in card


def test_early_stop_when_a_round_does_not_improve(tmp_path, model_dir, counts, capsys):
    """stop_min_win_rate=1.0 cannot be met (the judge's probabilities are below 1): the run stops after round 1,
    skips round 2, and its final model is the one round 1 started from (here the start model, left untouched)."""
    config = tiny_config(tmp_path, model_dir, "stop", rounds=2, stop_min_win_rate=1.0,
                         train={"max_steps": 1, "batch_size": 8, "max_length": 64, "max_prompt_length": 32})
    result = run_tso(config, judge=length_judge(counts))
    assert len(result["rounds"]) == 1 and result["stopped_early"]["rounds_skipped"] == 1
    assert "win rate over the previous round" in result["stopped_early"]["reason"]
    assert result["final_model"] == str(model_dir) and not (model_dir / "README.md").exists()
    assert not (tmp_path / "stop" / "round-02").exists()
    assert "[tso] stopped after round 1" in capsys.readouterr().out
    again = run_tso(config, judge=length_judge(counts))  # a rerun reads the stop from round 1's report
    assert again["stopped_early"] == result["stopped_early"]
    with pytest.raises(UserError, match="need stability=true and eval_prompts > 0"):
        tiny_config(tmp_path, model_dir, "nostab", eval_prompts=0, stop_max_kl=1.0)
