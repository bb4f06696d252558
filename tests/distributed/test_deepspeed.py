"""DeepSpeed ZeRO-2 and ZeRO-3 under `accelerate launch` with the shipped configs/accelerate/zero{2,3}.yaml, on
CPU (DeepSpeed's CPU accelerator, gloo).

Two processes against one process with the same global batch: the same loss trajectory and the same final
weights; then a run resumed from its mid-run checkpoint ends with exactly the weights of the uninterrupted run.
ZeRO-3 partitions every weight, including the LM head that tokensift evaluates outside its module.
"""

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("deepspeed")

from safetensors.torch import load_file, save_file  # noqa: E402

from conftest import build_model  # noqa: E402
from launching import (  # noqa: E402
    launch, losses, make_setup, max_weight_diff, score_job, train_job, weights,
)
from tokensift.errors import UserError  # noqa: E402
from tokensift.train.metrics import read_metrics  # noqa: E402


CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "accelerate"


def zero_launcher(stage: int) -> list[str]:
    """The shipped config; batch size, accumulation and clipping are filled in from tokensift's config."""
    return ["--config_file", str(CONFIGS / f"zero{stage}.yaml")]


def eval_loss(run) -> float:
    return [r["eval/loss"] for r in read_metrics(run / "metrics.jsonl") if "eval/loss" in r][-1]


# 16 pairs; ZeRO-3 DPO holds 3 aside for eval: 13 train pairs leave one process idle in each epoch's last step,
# and the 3 eval pairs split 2/1. Under ZeRO-3 every forward gathers weights, a collective both processes must
# join, so the idle process has to run zero-weight passes in step.
UNEVEN = {"eval_fraction": 0.2, "eval_batch_size": 1}
CASES = [(2, "sepo", 1, 2, True, {}), (3, "dpo", 2, 1, True, UNEVEN), (3, "tdpo", 2, 1, False, {})]


@pytest.mark.parametrize("stage,loss,batch,accum,resume,extra", CASES,
                         ids=["zero2-sepo-accumulation", "zero3-dpo-uneven", "zero3-tdpo"])
def test_zero_training_equals_one_process(tmp_path, tokenizer, stage, loss, batch, accum, resume, extra):
    setup = make_setup(tmp_path, tokenizer)
    extra = dict(extra)
    if loss == "sepo":
        launch(score_job(setup, tmp_path / "scores"), 1, 0)
        extra = {"scores": str(tmp_path / "scores"), "k_chosen": 0.5, "k_rejected": 0.5}
    one = tmp_path / "one"
    launch(train_job(tmp_path, setup, loss=loss, batch_size=4, epochs=2.0, output_dir=str(one), **extra), 1, 0)
    # 2 processes x batch x accumulation = the same global batch of 4 pairs. A reference cache of its own: under
    # ZeRO-3 the reference pass must work with the policy's weights partitioned.
    zero = tmp_path / "zero"
    job = train_job(tmp_path, setup, loss=loss, batch_size=batch, grad_accum=accum, epochs=2.0, save_every=4,
                    output_dir=str(zero), ref_cache_dir=str(tmp_path / "refcache-zero"), **extra)
    launch(job, 2, 29620 + stage, zero_launcher(stage))
    assert len(losses(one)) == len(losses(zero)) >= 7
    assert np.allclose(losses(one), losses(zero), atol=1e-4), (losses(one), losses(zero))
    if extra.get("eval_fraction"):
        assert np.isclose(eval_loss(one), eval_loss(zero), atol=1e-4)
    assert abs(losses(one)[-1] - losses(one)[0]) > 1e-3  # the loss really moved
    assert max_weight_diff(weights(one), weights(zero)) < 1e-5
    assert max_weight_diff(weights(one), load_file(setup["policy"] / "model.safetensors")) > 1e-4  # and trained
    if not resume:
        return
    # Interrupted after the step-4 checkpoint: resume from it under the same ZeRO stage.
    resumed = tmp_path / "resumed"
    shutil.copytree(zero, resumed, ignore=shutil.ignore_patterns("final"))
    assert (resumed / "checkpoint-00000004").is_dir()
    job["config"].update(output_dir=str(resumed), resume=True)
    launch(job, 2, 29630 + stage, zero_launcher(stage))
    assert losses(resumed) == losses(zero)
    assert max_weight_diff(weights(zero), weights(resumed)) == 0.0


def fake_deepspeed_accelerator(ds_config: dict, stage: int = 2, processes: int = 2):
    from accelerate.utils import DistributedType

    plugin = SimpleNamespace(deepspeed_config=ds_config, zero_stage=stage)
    return SimpleNamespace(distributed_type=DistributedType.DEEPSPEED, num_processes=processes,
                           state=SimpleNamespace(deepspeed_plugin=plugin))


def test_deepspeed_config_filled_from_tokensift_and_contradictions_refused():
    from tokensift.train.config import TrainConfig
    from tokensift.train.deepspeed_setup import configure

    config = TrainConfig(model="m", data="d", batch_size=3, grad_accum=2, max_grad_norm=0.5)
    ds = {"train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": 2, "zero_optimization": {}}
    configure(fake_deepspeed_accelerator(ds, stage=3), config)
    assert ds["train_micro_batch_size_per_gpu"] == 3
    assert ds["train_batch_size"] == 3 * 2 * 2
    assert ds["gradient_clipping"] == 0.5
    assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True

    with pytest.raises(UserError, match=r"gradient_accumulation_steps=4.*grad_accum.*gives 2"):
        configure(fake_deepspeed_accelerator({"gradient_accumulation_steps": 4}), config)
    with pytest.raises(UserError, match=r"gradient_clipping=1.0.*max_grad_norm"):
        configure(fake_deepspeed_accelerator({"gradient_clipping": 1.0}), config)


def test_zero2_non_finite_step_is_skipped_or_stops(tmp_path, tokenizer):
    """A NaN embedding row read by one pair only: DeepSpeed sees a non-finite gradient norm and does not apply
    that step; tokensift counts it (nan_policy=skip) or stops naming the step (stop)."""
    setup = make_setup(tmp_path, tokenizer)
    token = tokenizer.convert_tokens_to_ids("~")
    state = load_file(setup["policy"] / "model.safetensors")
    state["model.embed_tokens.weight"][token] = float("nan")
    save_file(state, str(setup["policy"] / "model.safetensors"), metadata={"format": "pt"})
    clean = setup["data"].read_text().splitlines()[:7]  # 7 clean pairs + the poisoned one: 2 steps of 4
    poisoned = json.dumps({"prompt": "Answer ~ briefly.", "chosen": "I love it.", "rejected": "I hate it."})
    setup["data"].write_text("\n".join(clean + [poisoned]) + "\n")

    skip = tmp_path / "skip"
    launch(train_job(tmp_path, setup, loss="dpo", batch_size=2, epochs=1.0, nan_policy="skip",
                     output_dir=str(skip)), 2, 29641, zero_launcher(2))
    records = [r for r in read_metrics(skip / "metrics.jsonl") if "loss" in r]
    assert len(records) == 2 and records[-1]["skipped_steps"] == 1
    bad = [r for r in records if not math.isfinite(r["loss"])]
    assert len(bad) == 1 and not math.isfinite(bad[0]["grad_norm"])
    final = weights(skip)
    final["model.embed_tokens.weight"][token] = 0.0  # the poisoned row itself stays NaN
    assert all(bool(v.isfinite().all()) for v in final.values())  # the NaN step reached no weight

    with pytest.raises(AssertionError, match=rf"step {bad[0]['step']}: the loss or gradient norm is not finite"):
        launch(train_job(tmp_path, setup, loss="dpo", batch_size=2, epochs=1.0, output_dir=str(tmp_path / "stop")),
               2, 29642, zero_launcher(2))


def test_sepo_pipeline_under_zero3_equals_one_process(tmp_path, tokenizer):
    """`tokensift sepo` (oracle DPO on 30% of the pairs, scoring, SePO policy, report) under zero3.yaml with two
    processes: the oracle's 5 pairs leave a process idle in its last step. The policy (another, larger model
    with the same tokenizer) ends with the weights of the one-process pipeline."""
    setup = make_setup(tmp_path, tokenizer)
    policy = tmp_path / "policy-big"
    build_model(len(tokenizer), seed=3, layers=3, hidden=48).save_pretrained(policy)
    tokenizer.save_pretrained(policy)

    def pipeline(out, batch):
        return {"kind": "cli", "args": [
            "sepo", "--data", str(setup["data"]), "--output-dir", str(out), "--reference-model",
            str(setup["policy"]), "--policy-model", str(policy), "--show-pairs", "2", "oracle.learning_rate=1e-3",
            "policy.learning_rate=1e-3", f"oracle.batch_size={batch}", f"policy.batch_size={batch}",
            "oracle.progress=false", "policy.progress=false", "score.progress=false",
            f"oracle.ref_cache_dir={out / 'refcache'}"]}

    launch(pipeline(tmp_path / "one", 4), 1, 0)
    launch(pipeline(tmp_path / "zero", 2), 2, 29643, zero_launcher(3))
    for stage in ("oracle", "policy"):
        one, zero = tmp_path / "one" / stage, tmp_path / "zero" / stage
        assert np.allclose(losses(one), losses(zero), atol=1e-4), (stage, losses(one), losses(zero))
        assert max_weight_diff(weights(one), weights(zero)) < 1e-5, stage
    assert (tmp_path / "zero" / "report").is_dir()
