"""Settings as a newcomer and a TRL user write them (issue 23, findings 5 and 6): TRL's names work or are answered
with our key, a key in the wrong section is pointed to the right one, `key=null` unsets, and a word for a number
says what is expected."""

from __future__ import annotations

import pytest

from tokensift.config import build, load_config
from tokensift.errors import UserError
from tokensift.train.config import TrainConfig

DATA = {"data": "pairs.jsonl"}


def train(**values) -> TrainConfig:
    return build(TrainConfig, {**DATA, **values})


def test_trls_names_for_the_same_settings_work_and_become_ours():
    config = train(per_device_train_batch_size=4, gradient_accumulation_steps=2, num_train_epochs=3,
                   per_device_eval_batch_size=2, logging_steps=5, save_steps=20, eval_steps=10, save_total_limit=1,
                   lr_scheduler_type="linear", bf16="true", report_to="none", model_name_or_path="m",
                   precompute_ref_batch_size=32)
    assert (config.batch_size, config.grad_accum, config.epochs, config.eval_batch_size) == (4, 2, 3.0, 2)
    assert (config.log_every, config.save_every, config.eval_every, config.keep_checkpoints) == (5, 20, 10, 1)
    assert (config.scheduler, config.mixed_precision, config.trackers, config.model) == ("linear", "bf16", "", "m")
    assert config.ref_batch_size == 32


@pytest.mark.parametrize("trl, ours", [("sigmoid", "dpo"), ("ipo", "ipo"), ("hinge", "hinge"), ("robust", "robust"),
                                       ("apo_zero", "apo_zero"), ("discopop", "discopop")])
def test_trl_loss_types_name_our_losses(trl, ours):
    assert train(loss_type=trl).loss == ours
    assert train(loss_type=[trl]).loss == ours  # TRL's list form, from YAML


def test_trl_loss_type_lists_with_loss_weights_are_mixtures():
    config = train(loss_type=["sigmoid", "bco_pair", "sft"], loss_weights=[0.8, 0.2, 1.0])
    assert (config.loss, config.loss_weights) == ("dpo,bco_pair,sft", [0.8, 0.2, 1.0])
    assert config.loss_spec.summary == "mixture: 0.8 x dpo + 0.2 x bco_pair + 1 x sft"
    config = load_config(TrainConfig, overrides=["data=x.jsonl", "loss_type=sigmoid,ipo", "loss_weights=1,0.5"])
    assert config.loss == "dpo,ipo" and config.loss_spec.summary == "mixture: 1 x dpo + 0.5 x ipo"
    with pytest.raises(UserError, match="loss_weights has 1 weight"):
        train(loss_type=["sigmoid", "ipo"], loss_weights=[1.0])


@pytest.mark.parametrize("key, value, message", [
    ("loss_type", "kto", "loss_type=kto: not a loss type of TRL's DPOTrainer. TRL names: sigmoid -> loss=dpo"),
    ("lr_scheduler_type", "constant", "write scheduler=constant warmup_ratio=0"),
    ("max_completion_length", "256", "responses get max_length minus the prompt's tokens"),
    ("precompute_ref_log_probs", "true", "always on: reference log-probs are computed once"),
    ("model_init_kwargs", "{}", "use our keys dtype=, attn_implementation= and trust_remote_code="),
    ("warmup_steps", "10", "warmup_ratio=0.1"),
    ("padding_free", "true", "share_prompt=true"),
])
def test_trl_settings_without_a_counterpart_say_what_to_write(key, value, message):
    with pytest.raises(UserError, match=f"unknown config key '{key}'|{key}"):
        try:
            load_config(TrainConfig, overrides=[f"data=x.jsonl", f"{key}={value}"])
        except UserError as error:
            assert message in str(error), str(error)
            raise


def test_both_names_of_one_setting_are_refused():
    with pytest.raises(UserError, match="'per_device_train_batch_size' and 'batch_size' are the same setting"):
        train(per_device_train_batch_size=4, batch_size=8)


def test_trls_packing_true_is_explained():
    with pytest.raises(UserError, match="TRL's packing=true is what share_prompt=true does here"):
        train(packing="true")


def test_a_key_of_a_section_is_pointed_to_it():
    from tokensift.sepo.pipeline import SePOConfig
    from tokensift.tso.config import TSOConfig

    with pytest.raises(UserError, match="unknown config key 'beta': here it belongs to a section; write train.beta$"):
        load_config(TSOConfig, overrides=["prompts=builtin:quickstart", "beta=0.05"])
    with pytest.raises(UserError, match="write sft.beta, oracle.beta, score.beta or policy.beta"):
        load_config(SePOConfig, overrides=["data=x.jsonl", "beta=0.05"])
    with pytest.raises(UserError, match="unknown config key 'fraction': here it belongs to a section; write "
                                        "oracle.fraction"):
        load_config(SePOConfig, overrides=["data=x.jsonl", "fraction=0.3"])
    with pytest.raises(UserError, match=r"unknown config key 'lerning_rate' \(did you mean 'learning_rate'\?\)"):
        train(lerning_rate=1e-6)  # a typo still gets its did-you-mean


def test_null_unsets_an_optional_key():
    config = load_config(TrainConfig, overrides=["data=x.jsonl", "max_steps=10", "max_steps=null", "beta=null"])
    assert config.max_steps is None and config.beta is None
    with pytest.raises(UserError, match="config key 'batch_size' may not be empty"):
        load_config(TrainConfig, overrides=["data=x.jsonl", "batch_size=null"])


@pytest.mark.parametrize("value, message", [
    ("eight", "expected a whole number such as 8"), ("8.5", "expected a whole number such as 8"),
    ("true", "expected a whole number such as 8"),
])
def test_a_word_for_an_integer_says_a_whole_number_is_expected(value, message):
    with pytest.raises(UserError, match=f"config key 'batch_size': cannot use '{value}': {message}"):
        load_config(TrainConfig, overrides=["data=x.jsonl", f"batch_size={value}"])
    assert train(batch_size="1e1").batch_size == 10 and train(batch_size=8.0).batch_size == 8


def test_yaml_word_for_an_integer(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: x.jsonl\nbatch_size: eight\n")
    with pytest.raises(UserError, match="config key 'batch_size': cannot use 'eight': expected a whole number"):
        load_config(TrainConfig, str(path))


def test_settings_of_a_stage_that_does_not_run_are_checked_and_said(caplog):
    """`tokensift sepo sft.enabled=true` ran the pipeline without SFT and said nothing (found replaying the
    newcomer's path)."""
    from tokensift.sepo.pipeline import SePOConfig

    with pytest.raises(UserError, match="unknown config key 'sft.enabled': the SFT stage is switched on by "
                                        "sft_enabled=true"):
        load_config(SePOConfig, overrides=["data=x.jsonl", "sft.enabled=true"])
    with pytest.raises(UserError, match="config key 'sft.learning_rate': cannot use 'fast'"):
        load_config(SePOConfig, overrides=["data=x.jsonl", "sft.learning_rate=fast"])  # checked although off
    import logging

    with caplog.at_level(logging.WARNING):
        load_config(SePOConfig, overrides=["data=x.jsonl", "sft.learning_rate=1e-5"])
    assert "sft.learning_rate is set, but sft_enabled=false: the SFT stage does not run" in caplog.text
    assert load_config(SePOConfig, overrides=["data=x.jsonl", "sft_enabled=true", "sft.learning_rate=1e-5"]
                       ).stages()["sft"].learning_rate == 1e-5
