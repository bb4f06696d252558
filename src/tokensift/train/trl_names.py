"""TRL's names for our training settings: a TRL user's `per_device_train_batch_size=8` works here, and a TRL
setting we have no counterpart for is answered with what to do instead, not with a did-you-mean.

`TRL_NAMES` is TrainConfig's `KEY_ALIASES` (config.apply_aliases and config.unknown_key read it):
- name -> (our key, converter or None): the same setting under another name; the converter maps TRL's values
  onto ours and raises UserError for a value with no counterpart. Run cards record our names.
- name -> "text": no counterpart; the text says what to write instead.
Names from TRL 1.16's DPOConfig and transformers' TrainingArguments, and TRL scripts' ModelConfig / ScriptArguments.
"""

from __future__ import annotations

from tokensift.errors import UserError

# TRL's DPO loss_type values with a tokensift loss of the same equation (tests/test_trl_parity.py checks them):
# every loss type TRL 1.16's DPOTrainer accepts
TRL_LOSS_TYPES = {"sigmoid": "dpo", "ipo": "ipo", "hinge": "hinge", "robust": "robust", "sft": "sft",
                  "sigmoid_norm": "sigmoid_norm", "exo_pair": "exo_pair", "nca_pair": "nca_pair",
                  "bco_pair": "bco_pair", "sppo_hard": "sppo_hard", "aot": "aot", "aot_unpaired": "aot_unpaired",
                  "apo_zero": "apo_zero", "apo_down": "apo_down", "discopop": "discopop"}


def _names(value) -> list[str]:
    values = value if isinstance(value, (list, tuple)) else str(value).strip("[]").replace("'", "").replace('"', "").split(",")
    return [str(v).strip() for v in values if str(v).strip()]


def _loss_type(value):
    """TRL's loss_type (one name or a list) -> our loss (one name, or a comma list: a mixture weighed by
    loss_weights)."""
    values = _names(value)
    if not values:
        raise UserError("loss_type: no loss given")
    for name in values:
        if name not in TRL_LOSS_TYPES:
            known = ", ".join(f"{k} -> loss={v}" for k, v in TRL_LOSS_TYPES.items())
            raise UserError(f"loss_type={name}: not a loss type of TRL's DPOTrainer. TRL names: {known} (see "
                            "`tokensift train --help` for every loss, e.g. loss=orpo, cpo, simpo, tdpo)")
    return ",".join(TRL_LOSS_TYPES[name] for name in values)


def _precision(name: str):
    def convert(value):
        on = str(value).lower() in ("1", "true", "yes", "on")
        if not on and str(value).lower() not in ("0", "false", "no", "off", "none", "null"):
            raise UserError(f"{name}: expected true or false, got {value!r}")
        return name if on else "no"

    return convert


def _scheduler(value):
    mapping = {"cosine": "cosine", "linear": "linear", "constant_with_warmup": "constant"}
    if str(value) == "constant":
        raise UserError("lr_scheduler_type=constant: write scheduler=constant warmup_ratio=0 (our constant schedule "
                        "warms up over warmup_ratio of the steps first)")
    if str(value) not in mapping:
        raise UserError(f"lr_scheduler_type={value}: not available here; scheduler= takes cosine, linear or constant")
    return mapping[str(value)]


def _report_to(value):
    items = value if isinstance(value, list) else str(value).split(",")
    return ",".join(v.strip() for v in items if v.strip() and v.strip() != "none")


NOT_NEEDED = "nothing to set here"
TRL_NAMES: dict = {
    # the same setting under another name
    "per_device_train_batch_size": ("batch_size", None),
    "per_device_eval_batch_size": ("eval_batch_size", None),
    "gradient_accumulation_steps": ("grad_accum", None),
    "num_train_epochs": ("epochs", None),
    "lr_scheduler_type": ("scheduler", _scheduler),
    "logging_steps": ("log_every", None),
    "save_steps": ("save_every", None),
    "eval_steps": ("eval_every", None),
    "save_total_limit": ("keep_checkpoints", None),
    "report_to": ("trackers", _report_to),
    "precompute_ref_batch_size": ("ref_batch_size", None),
    "loss_type": ("loss", _loss_type),
    "bf16": ("mixed_precision", _precision("bf16")),
    "fp16": ("mixed_precision", _precision("fp16")),
    "model_name_or_path": ("model", None),
    "dataset_name": ("data", None),
    "use_peft": ("lora", None),
    "lora_target_modules": ("lora_targets", _report_to),
    "load_in_4bit": ("qlora", None),
    "hub_private_repo": ("hub_private", None),
    # no counterpart: what to write instead
    "warmup_steps": "the warmup here is a share of the steps: warmup_ratio=0.1",
    "max_completion_length": "responses get max_length minus the prompt's tokens: set max_length (prompt + "
                             "response) and max_prompt_length",
    "precompute_ref_log_probs": f"always on: reference log-probs are computed once before training and cached on "
                                f"disk (ref_cache_dir); {NOT_NEEDED}",
    "model_init_kwargs": "use our keys dtype=, attn_implementation= and trust_remote_code=",
    "ref_model_init_kwargs": "the reference loads with the policy's dtype= and attn_implementation=",
    "ref_model": "write reference=MODEL (a name, folder or .gguf file)",
    "padding_free": "on by default: share_prompt=true runs pairs packed without padding (packing= picks the layout)",
    "truncation_mode": f"prompts keep their last tokens and responses their first (TRL's keep_start); {NOT_NEEDED}",
    "disable_dropout": f"always: dropout is off in every model tokensift trains or scores; {NOT_NEEDED}",
    "dataset_num_proc": f"tokenisation runs once, in this process; {NOT_NEEDED}",
    "dataloader_num_workers": f"batches are built in this process from tokenised pairs; {NOT_NEEDED}",
    "resume_from_checkpoint": "a run continues from its last checkpoint in output_dir by itself when its settings "
                              "are the same (resume=true, the default)",
    "eval_strategy": "write eval_every=N (optimizer steps; 0: only at the end)",
    "save_strategy": "write save_every=N (optimizer steps; 0: only the final model)",
    "logging_dir": "trackers=tensorboard writes its logs under output_dir",
    "optim": f"AdamW is the optimizer (fused where the device allows); {NOT_NEEDED}",
    "reference_free": "pick a reference-free loss instead: loss=simpo, orpo or cpo (or loss=sepo on key tokens)",
    "use_weighting": "WPO-style pair weighting is not available here",
    "ld_alpha": "LD-DPO's length weighting is not available here",
    "f_divergence_type": "f-DPO's divergences are not available here (the DPO family uses the reverse KL)",
    "sync_ref_model": "TR-DPO's reference syncing is not available; TSO rounds refresh the reference (tokensift tso)",
}
