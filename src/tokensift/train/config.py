"""Settings of a training run (`tokensift sft`, `tokensift dpo`, `tokensift train`, the oracle and policy stages)."""

from __future__ import annotations

from dataclasses import dataclass

from tokensift.config import option
from tokensift.errors import UserError
from tokensift.models import DEFAULT_MODEL

LOSSES = ("sft", "dpo", "ipo", "cdpo", "robust", "hinge", "simpo", "rrhf", "tdpo", "sepo", "tso")
REFERENCE_FREE = ("sft", "simpo", "rrhf", "sepo")
DEFAULT_BETA = {"simpo": 2.0}
SELECTIONS = ("per_response", "global_threshold", "reward_mass")
# accelerate's LoggerType names (its own error for another name is a ValueError deep inside Accelerator()).
TRACKERS = ("tensorboard", "wandb", "aim", "comet_ml", "mlflow", "clearml", "dvclive", "trackio", "swanlab", "all")


@dataclass
class DataArgs:
    data: str = option("", "Preference data: a .jsonl/.json/.parquet/.csv file (or .gz), a save_to_disk folder or a hub id.")
    columns: str | None = option(None, "Column mapping for custom files, e.g. 'prompt=instruction,chosen=good,rejected=bad'.")
    split: str = option("train", "Split to read from dataset folders and hub datasets.")
    skip_invalid: bool = option(False, "Skip bad rows (listed with reasons in a rejects file) instead of stopping at the first.")
    limit: int | None = option(None, "Use only the first N valid pairs (quick experiments).")
    max_length: int | None = option(1024, "Max tokens of prompt+response; responses are cut at the end. Memory and time grow with it.")
    max_prompt_length: int | None = option(512, "Max prompt tokens; prompts keep their last tokens.")
    share_prompt: bool = option(True, "Run each pair's prompt once, as one [prompt|chosen|rejected] sequence with the model's own attention (exact; much faster with long prompts). Models whose attention cannot be expressed that way run unpacked.")

    def validate_data(self) -> None:
        if not self.data:
            raise UserError("no data given: set data=PATH (a preference file, dataset folder or hub id)")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"limit must be a positive number of pairs, got {self.limit}")


@dataclass
class TrainConfig(DataArgs):
    model: str = option(DEFAULT_MODEL, "Model to train: an alias, hub id, local folder or .gguf file.")
    reference: str | None = option(None, "Reference model for DPO-family losses (default: the starting model itself).")
    output_dir: str = option("runs/train", "Where checkpoints, metrics.jsonl, the final model and run card go.")
    loss: str = option("dpo", f"Objective: one of {', '.join(LOSSES)}.")
    beta: float | None = option(None, "Temperature beta (DPO family: 0.1 by default; SimPO: 2.0).")
    label_smoothing: float = option(0.1, "Label-noise rate epsilon for cdpo and robust (robust needs < 0.5).")
    simpo_gamma: float = option(0.5, "SimPO target margin gamma.")
    sepo_gamma: float = option(1.0, "SePO scale gamma on the mean selected-token log-prob (the paper searched 2.1-2.5; the official code uses 1).")
    sepo_margin: float = option(0.0, "SePO margin lambda (0 in the official code).")
    rrhf_sft_weight: float = option(1.0, "Weight of RRHF's SFT term on the chosen response.")
    tdpo_alpha: float = option(0.5, "TDPO weight alpha of the sequential KL term.")
    tdpo_variant: int = option(2, "TDPO variant: 1 or 2 (2 stops the gradient of the chosen KL).")
    clip_chosen: float = option(2.0, "TSO dual clip: cap on the chosen implicit reward (beta-scaled units).")
    clip_rejected: float = option(2.0, "TSO dual clip: floor -c on the rejected implicit reward.")
    clip_mode: str = option("per_reward", "TSO clip mode: per_reward (default) or margin.")
    clip_margin_low: float | None = option(None, "TSO margin mode: lower clip of the reward margin.")
    clip_margin_high: float | None = option(None, "TSO margin mode: upper clip of the reward margin.")
    scores: str | None = option(None, "SePO: folder of token scores written by `tokensift score` (required for loss=sepo).")
    k_chosen: float = option(0.3, "SePO: share of each chosen response's tokens to train on (highest scores), in (0, 1].")
    k_rejected: float = option(0.3, "SePO: share of each rejected response's tokens to train on (lowest scores), in (0, 1].")
    selection: str = option("per_response", f"SePO token selection: {', '.join(SELECTIONS)}.")
    reward_mass: float = option(0.8, "SePO reward_mass selection: keep the fewest tokens carrying this share of a response's reward.")
    allow_projection: bool = option(False, "SePO: allow scores from an oracle with another tokenizer, projected through character offsets.")
    learning_rate: float = option(1e-6, "Peak learning rate of AdamW.")
    epochs: float = option(1.0, "Passes over the training pairs (fractions allowed).")
    max_steps: int | None = option(None, "Stop after this many optimizer steps (overrides epochs).")
    batch_size: int = option(8, "Pairs per device per micro-step. Memory grows linearly with it.")
    grad_accum: int = option(1, "Micro-steps per optimizer step; global batch = batch_size x grad_accum x processes.")
    warmup_ratio: float = option(0.1, "Share of steps with linear warmup.")
    scheduler: str = option("cosine", "Learning-rate schedule after warmup: cosine, linear or constant.")
    weight_decay: float = option(0.0, "AdamW weight decay.")
    adam_beta1: float = option(0.9, "AdamW beta1.")
    adam_beta2: float = option(0.999, "AdamW beta2.")
    max_grad_norm: float = option(1.0, "Clip the global gradient norm to this value (0 disables).")
    seed: int = option(0, "Seed for data order, held-out split and initialisation of LoRA.")
    dtype: str = option("float32", "Weight dtype: float32, bfloat16 or float16. bf16 halves memory.")
    mixed_precision: str = option("no", "Autocast: no, bf16 or fp16 (accelerate).")
    gradient_checkpointing: bool = option(False, "Recompute activations in backward: much less memory, ~20-30% slower.")
    lora: bool = option(False, "Train LoRA adapters instead of all weights (peft).")
    lora_r: int = option(16, "LoRA rank.")
    lora_alpha: int = option(32, "LoRA alpha.")
    lora_dropout: float = option(0.0, "LoRA dropout.")
    lora_targets: str = option("q_proj,k_proj,v_proj,o_proj", "Comma list of module names LoRA adapts.")
    eval_data: str | None = option(None, "Held-out pairs for evaluation (default: eval_fraction of data).")
    eval_fraction: float = option(0.0, "Share of data held aside for evaluation when eval_data is not given (seeded).")
    eval_every: int = option(0, "Evaluate every N optimizer steps (0: only at the end when there is eval data).")
    eval_batch_size: int = option(16, "Pairs per evaluation batch.")
    save_every: int = option(50, "Write a resumable checkpoint every N optimizer steps (0: none until the end).")
    keep_checkpoints: int = option(2, "How many recent checkpoints to keep.")
    log_every: int = option(1, "Log metrics every N optimizer steps.")
    resume: bool = option(False, "Continue from the latest checkpoint in output_dir.")
    trackers: str = option("", "Extra metric trackers through accelerate: tensorboard and/or wandb (comma list).")
    ref_cache_dir: str | None = option(None, "Where cached reference log-probs live (default: $TOKENSIFT_CACHE/ref_logps).")
    ref_batch_size: int = option(16, "Pairs per batch when computing reference log-probs (no-grad).")
    nan_policy: str = option("stop", "On NaN/inf loss or gradients: stop (keep the last good checkpoint) or skip the step.")
    trust_remote_code: bool = option(False, "Allow model repositories to run their own Python code. Off unless you trust them.")
    progress: bool = option(True, "Show a progress bar.")

    def validate(self) -> None:
        if self.loss != "sepo" or (self.data and self.allow_projection):
            self.validate_data()  # SePO reads its pairs from the scores; only projection re-reads the data
        if self.loss not in LOSSES:
            raise UserError(f"unknown loss '{self.loss}'; choose one of {', '.join(LOSSES)}")
        if self.beta is not None and self.beta <= 0:
            raise UserError(f"beta must be positive, got {self.beta}")
        for name in ("k_chosen", "k_rejected", "reward_mass"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise UserError(f"{name} must lie in (0, 1] (a share of tokens), got {value}")
        if self.selection not in SELECTIONS:
            raise UserError(f"unknown selection '{self.selection}'; choose one of {', '.join(SELECTIONS)}")
        if self.loss == "sepo" and not self.scores:
            raise UserError("loss=sepo needs scores=DIR from `tokensift score`")
        if self.loss == "robust" and not 0 <= self.label_smoothing < 0.5:
            raise UserError(f"robust loss needs 0 <= label_smoothing < 0.5, got {self.label_smoothing}")
        if self.loss == "tdpo" and self.tdpo_variant not in (1, 2):
            raise UserError(f"tdpo_variant must be 1 or 2, got {self.tdpo_variant}")
        if self.clip_mode not in ("per_reward", "margin"):
            raise UserError(f"clip_mode must be per_reward or margin, got '{self.clip_mode}'")
        for name in ("batch_size", "grad_accum", "eval_batch_size", "ref_batch_size", "keep_checkpoints", "log_every"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("save_every", "eval_every"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} must be 0 or more steps, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise UserError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.epochs <= 0 and not self.max_steps:
            raise UserError(f"epochs must be positive, got {self.epochs}")
        if not 0 <= self.eval_fraction < 1:
            raise UserError(f"eval_fraction must lie in [0, 1), got {self.eval_fraction}")
        if not 0 <= self.warmup_ratio < 1:
            raise UserError(f"warmup_ratio must lie in [0, 1), got {self.warmup_ratio}")
        if self.scheduler not in ("cosine", "linear", "constant"):
            raise UserError(f"scheduler must be cosine, linear or constant, got '{self.scheduler}'")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise UserError(f"mixed_precision must be no, bf16 or fp16, got '{self.mixed_precision}'")
        if self.nan_policy not in ("stop", "skip"):
            raise UserError(f"nan_policy must be stop or skip, got '{self.nan_policy}'")
        unknown = [t for t in (t.strip() for t in self.trackers.split(",")) if t and t not in TRACKERS]
        if unknown:
            raise UserError(f"unknown tracker '{unknown[0]}' in trackers; choose from {', '.join(TRACKERS)}")

    @property
    def needs_reference(self) -> bool:
        return self.loss not in REFERENCE_FREE

    @property
    def effective_beta(self) -> float:
        return self.beta if self.beta is not None else DEFAULT_BETA.get(self.loss, 0.1)
