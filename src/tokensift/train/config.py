"""Settings of a training run (`tokensift sft`, `tokensift dpo`, `tokensift train`, the oracle and policy stages)."""

from __future__ import annotations

from dataclasses import dataclass

import dataclasses

from tokensift.config import option, suggest
from tokensift.data.io import as_source
from tokensift.errors import UserError
from tokensift.losses import LOSSES, LossSpec, resolve
from tokensift.models import DEFAULT_MODEL, check_qlora_available
from tokensift.selection import SelectionArgs
from tokensift.selectors import SELECTORS
from tokensift.train.hub import HubArgs
from tokensift.train.trl_names import TRL_NAMES

PACKINGS = ("auto", "rows", "one_row", "pairs")
DEFAULT_PROMPT_LENGTH = 512
LOSS_HELP = "; ".join(f"{name}: {spec.summary}" for name, spec in LOSSES.items())


def losses_reading(name: str, per_pair: bool = False) -> str:
    """The losses that read a setting (LossSpec.params) or, per_pair, a per-pair value (LossSpec.pair_inputs)."""
    return ", ".join(loss for loss, spec in LOSSES.items() if name in (spec.pair_inputs if per_pair else spec.params))


def read_by(name: str, per_pair: bool = False) -> str:
    """" Read by loss: a, b." for a setting's help text, from the losses' declarations."""
    return f" Read by loss: {losses_reading(name, per_pair)}."
# accelerate's LoggerType names (its own error for another name is a ValueError deep inside Accelerator()).
TRACKERS = ("tensorboard", "wandb", "aim", "comet_ml", "mlflow", "clearml", "dvclive", "trackio", "swanlab", "all")


@dataclass
class DataArgs:
    data: str = option("", "Preference data: a .jsonl/.json/.parquet/.csv file (or .gz), a save_to_disk folder or a hub id (in Python also a list of dicts or a datasets.Dataset).", in_memory=True)
    columns: str | None = option(None, "Column mapping for custom files, e.g. 'prompt=instruction,chosen=good,rejected=bad'.")
    split: str = option("train", "Split to read from dataset folders and hub datasets.")
    skip_invalid: bool = option(False, "Skip bad rows (listed with reasons in a rejects file) instead of stopping at the first.")
    limit: int | None = option(None, "Use only the first N valid pairs (quick experiments).")
    max_length: int | None = option(1024, "Max tokens of prompt+response; responses are cut at the end. Memory and time grow with it.")
    max_prompt_length: int | None = option(512, "Max prompt tokens; prompts keep their last tokens. Left at 512 with a max_length of 512 or less, it becomes half of max_length.")
    share_prompt: bool = option(True, "Run packed with the model's own attention: each pair's prompt once, as [prompt|chosen|rejected], and sequences (SFT) back to back without padding (exact; much faster with long prompts). Models whose attention cannot be expressed that way run unpacked (flash-attention packs SFT sequences by position_ids).")
    packing: str = option("auto", "How shared-prompt pairs fill rows: rows (back to back in rows as long as the longest pair: least padding for dense attention), one_row (all in one row: for flex attention, whose block mask skips the empty blocks), pairs (one per row, padded), auto (one_row with flex_attention, else rows). Exact in every layout.")

    def validate_packing(self) -> None:
        if self.packing not in PACKINGS:
            trl = " (TRL's packing=true is what share_prompt=true does here, by default)" if str(self.packing).lower() in (
                "true", "false") else ""
            raise UserError(f"packing must be one of {', '.join(PACKINGS)}, got '{self.packing}'{trl}")

    def resolve_prompt_length(self) -> None:
        """max_length=256 alone works: the default prompt limit (512) becomes half of a max_length it would not fit."""
        if self.max_prompt_length == DEFAULT_PROMPT_LENGTH and self.max_length is not None \
                and self.max_length <= DEFAULT_PROMPT_LENGTH:
            self.max_prompt_length = max(1, self.max_length // 2)

    def validate_data(self) -> None:
        self.resolve_prompt_length()
        self.data = as_source(self.data, "data")
        if hasattr(self, "eval_data"):
            self.eval_data = as_source(self.eval_data, "eval_data")
        self.validate_packing()
        if not self.data:
            raise UserError("no data given: set data=PATH (a preference file, dataset folder or hub id)")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"limit must be a positive number of pairs, got {self.limit}")


@dataclass
class TrainConfig(HubArgs, SelectionArgs, DataArgs):
    KEY_ALIASES = TRL_NAMES  # a TRL user's names (per_device_train_batch_size ...): see train/trl_names.py
    CLI_EXAMPLE = "learning_rate=5e-6 max_steps=100 max_length=512"

    model: str = option(DEFAULT_MODEL, "Model to train: an alias, hub id, local folder or .gguf file.")
    reference: str | None = option(None, "Reference model for DPO-family losses (default: the starting model itself).")
    output_dir: str = option("runs/train", "Where checkpoints, metrics.jsonl, the final model and run card go.")
    loss: str = option("dpo", f"Objective, or a comma list of objectives trained as their weighted sum (see loss_weights). {LOSS_HELP}.")
    beta: float | None = option(None, "Temperature beta (unset: the loss's own default, 0.1 for the DPO family, 2.0 for SimPO)." + read_by("beta"))
    label_smoothing: float | None = option(None, "Label smoothing epsilon (unset: the loss's own default: 0.1 for cdpo and robust, whose label-noise rate it is (robust needs < 0.5); 1e-3 for exo_pair, in (0, 1); 0 for aot, aot_unpaired and cpo)." + read_by("label_smoothing"))
    discopop_tau: float = option(0.05, "DiscoPOP temperature tau of the log-ratio modulation (the paper's 0.05)." + read_by("discopop_tau"))
    cpo_alpha: float = option(1.0, "Weight of CPO's NLL term on the chosen response (TRL's cpo_alpha)." + read_by("cpo_alpha"))
    rpo_alpha: float = option(0.0, "Weight of RPO's NLL term added to any pairwise loss: alpha times the chosen response's mean NLL over the tokens the loss reads (0: none). TRL's rpo_alpha; its mixture of sigmoid and sft averages the NLL over the batch's chosen tokens instead (docs/losses.md).")
    desirable_weight: float = option(1.0, "KTO/BCO: weight of the desirable rows' loss (the KTO paper: keep desirable_weight x desirable rows / (undesirable_weight x undesirable rows) in [1, 4/3])." + read_by("desirable_weight"))
    undesirable_weight: float = option(1.0, "KTO/BCO: weight of the undesirable rows' loss." + read_by("undesirable_weight"))
    split_pairs: bool = option(False, "KTO/BCO on a paired file: split each pair into a desirable row (prompt, chosen) and an undesirable one (prompt, rejected). Unpaired files (prompt, completion, label) need no setting.")
    loss_weights: list[float] | None = option(None, "With several losses (loss=dpo,bco_pair): their weights as a comma list, e.g. loss_weights=0.8,0.2 (unset: 1 each). Each term is logged as loss/NAME; terms are pairwise losses without a live reference, and sft.")
    simpo_gamma: float = option(0.5, "SimPO target margin gamma." + read_by("simpo_gamma"))
    sepo_gamma: float = option(1.0, "SePO scale gamma on the mean selected-token log-prob (the paper searched 2.1-2.5; the official code uses 1)." + read_by("sepo_gamma"))
    sepo_margin: float = option(0.0, "SePO margin lambda (0 in the official code)." + read_by("sepo_margin"))
    rrhf_sft_weight: float = option(1.0, "Weight of RRHF's SFT term on the chosen response." + read_by("rrhf_sft_weight"))
    tdpo_alpha: float = option(0.5, "TDPO weight alpha of the sequential KL term." + read_by("tdpo_alpha"))
    tdpo_variant: int = option(2, "TDPO variant: 1 or 2 (2 stops the gradient of the chosen KL)." + read_by("tdpo_variant"))
    clip_chosen: float = option(2.0, "TSO dual clip: cap on the chosen implicit reward (beta-scaled units)." + read_by("clip_chosen"))
    clip_rejected: float = option(2.0, "TSO dual clip: floor -c on the rejected implicit reward." + read_by("clip_rejected"))
    clip_mode: str = option("per_reward", "TSO clip mode: per_reward (default) or margin." + read_by("clip_mode"))
    clip_margin_low: float | None = option(None, "TSO margin mode: lower clip of the reward margin." + read_by("clip_margin_low"))
    clip_margin_high: float | None = option(None, "TSO margin mode: upper clip of the reward margin." + read_by("clip_margin_high"))
    selector: str = option("auto", "Which tokens the loss trains on: " + "; ".join(
        f"{name}: {spec.summary}" for name, spec in SELECTORS.items()) + "; none: every response token; auto: oracle for loss=sepo, else none. Any token-level loss takes a selection (docs/selectors.md).")
    scores: str | None = option(None, "Folder of token scores written by `tokensift score`: what the oracle and soft selectors read (and the pairs, when data is unset).")
    gap_quantile: float = option(0.6, "reference_gap selector: keep each response's tokens at or above this quantile of its policy-reference gap (0.6: the top 40%).")
    weight_scale: float = option(1.0, "soft selector: mu in w = clip(exp(mu * reward), weight_min, weight_max).")
    weight_min: float = option(0.7, "soft selector: the smallest token weight.")
    weight_max: float = option(1.3, "soft selector: the largest token weight.")
    margin_column: str | None = option(None, "Data column holding each pair's target margin (beta-scaled reward units, a number >= 0) for losses that take one per pair: TSO's scaled margin (tso/config.py writes it). Unset: no per-pair margin." + read_by("target_margin", per_pair=True))
    allow_projection: bool = option(False, "SePO: allow scores from an oracle with another tokenizer, projected through character offsets.")
    learning_rate: float = option(1e-6, "Peak learning rate of AdamW.")
    epochs: float = option(1.0, "Passes over the training pairs (fractions allowed).")
    max_steps: int | None = option(None, "Stop after this many optimizer steps (overrides epochs).")
    batch_size: int = option(8, "Pairs per device per micro-step. Memory grows linearly with it.")
    grad_accum: int = option(1, "Micro-steps per optimizer step; global batch = batch_size x grad_accum x processes.")
    max_tokens_per_batch: int | None = option(None, "Fill micro-batches with pairs up to this many tokens (each pair counted as it runs: prompt once with share_prompt) instead of batch_size pairs; a step still trains on batch_size x grad_accum x processes pairs, in as many micro-batches as the budget needs. Memory follows the budget, not the longest pair; the loss weighting stays exact.")
    warmup_ratio: float = option(0.1, "Share of steps with linear warmup.")
    scheduler: str = option("cosine", "Learning-rate schedule after warmup: cosine, linear or constant.")
    weight_decay: float = option(0.0, "AdamW weight decay.")
    adam_beta1: float = option(0.9, "AdamW beta1.")
    adam_beta2: float = option(0.999, "AdamW beta2.")
    max_grad_norm: float = option(1.0, "Clip the global gradient norm to this value (0 disables).")
    seed: int = option(0, "Seed for data order, held-out split and initialisation of LoRA.")
    dtype: str = option("float32", "Weight dtype: float32, bfloat16 or float16. In bf16 frozen weights (a LoRA base, references) take half the memory; trained weights and optimizer states stay fp32 and the matmuls run in bf16 (autocast).")
    attn_implementation: str | None = option(None, "transformers' attention: sdpa, eager, flex_attention (block-sparse masks: pairs share one row, see packing), flash_attention_2 ...; unset: the model's default.")
    mixed_precision: str = option("no", "Autocast: no, bf16 or fp16 (accelerate).")
    gradient_checkpointing: bool | None = option(None, "Recompute whole layers in backward: much less activation memory, about a fifth slower. Unset: on only when the largest micro-batch's activations would not fit in the memory the device has left after the training state (estimated before loading; the log says which and why).")
    keep_freed_memory: bool = option(True, "CPU: keep freed heap memory for the next step (glibc) instead of returning it to the OS and faulting it in again every step, as CUDA's caching allocator does: same peak, about 7% faster steps. False returns memory between steps.")
    selective_recompute: bool = option(True, "Recompute only the cheap activations in backward (norms and their outputs, the gated MLP's activation and down projection): about a third less activation memory for a few percent of the step, same results. Not used with gradient_checkpointing (which recomputes everything), FSDP or DeepSpeed.")
    lora: bool = option(False, "Train LoRA adapters instead of all weights (peft).")
    lora_r: int = option(16, "LoRA rank.")
    lora_alpha: int = option(32, "LoRA alpha.")
    lora_dropout: float = option(0.0, "LoRA dropout.")
    lora_targets: str = option("q_proj,k_proj,v_proj,o_proj", "Comma list of module names LoRA adapts.")
    qlora: bool = option(False, "QLoRA: load the base model in 4-bit (bitsandbytes NF4, double quantisation, matmuls in dtype) and train LoRA adapters on it (needs lora=true, the bitsandbytes package and a CUDA GPU). About a quarter of the base's 16-bit memory; final/ holds the adapter merged into the unquantized base.")
    eval_data: str | None = option(None, "Held-out pairs for evaluation (default: eval_fraction of data); in Python also a list of dicts or a datasets.Dataset.", in_memory=True)
    eval_fraction: float = option(0.0, "Share of data held aside for evaluation when eval_data is not given (seeded).")
    eval_every: int = option(0, "Evaluate every N optimizer steps (0: only at the end when there is eval data).")
    eval_batch_size: int = option(16, "Pairs per evaluation batch.")
    save_every: int = option(50, "Write a resumable checkpoint every N optimizer steps (0: none until the end).")
    keep_checkpoints: int = option(2, "How many recent checkpoints to keep.")
    log_every: int = option(1, "Log metrics every N optimizer steps.")
    resume: bool = option(True, "Continue the run in output_dir when it was started with the same settings: from its last checkpoint, or not at all when it finished. A run there with other settings is refused, naming them. false: refuse any run there.")
    overwrite: bool = option(False, "Replace the run in output_dir (its checkpoints, final model and metrics) instead of refusing one made with other settings.")
    trackers: str = option("", "Extra metric trackers through accelerate: tensorboard and/or wandb (comma list).")
    ref_cache_dir: str | None = option(None, "Where cached reference log-probs live (default: $TOKENSIFT_CACHE/ref_logps).")
    ref_batch_size: int = option(16, "Pairs per batch when computing reference log-probs (no-grad).")
    nan_policy: str = option("stop", "On NaN/inf loss or gradients: stop (keep the last good checkpoint) or skip the step.")
    trust_remote_code: bool = option(False, "Allow model repositories to run their own Python code. Off unless you trust them.")
    progress: bool = option(True, "Show a progress bar.")

    def validate(self) -> None:
        spec = self.loss_spec
        selector = self.active_selector
        self.validate_selector(spec, selector)
        self.resolve_prompt_length()
        if not (self.scores and selector != "none") or (self.data and self.allow_projection):
            self.validate_data()  # with scores the pairs come from them; only projection re-reads the data
        if self.beta is not None and self.beta <= 0:
            raise UserError(f"beta must be positive, got {self.beta}")
        self.validate_packing()
        self.validate_selection()
        for name in ("batch_size", "grad_accum", "eval_batch_size", "ref_batch_size", "keep_checkpoints", "log_every"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_tokens_per_batch is not None and self.max_tokens_per_batch < 2:
            raise UserError(f"max_tokens_per_batch must be at least 2 tokens, got {self.max_tokens_per_batch}")
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
        self.check_unread_settings(spec)
        if self.split_pairs and spec.data != "unpaired":
            raise UserError(f"split_pairs=true splits pairs into unpaired rows for KTO and BCO; loss={self.loss} "
                            "trains on the pairs themselves")
        if self.rpo_alpha:
            if not (self.rpo_alpha > 0 and self.rpo_alpha < float("inf")):
                raise UserError(f"rpo_alpha must be a finite number >= 0, got {self.rpo_alpha}")
            if not spec.pairwise or spec.data != "paired":
                raise UserError(f"rpo_alpha adds an NLL term on the chosen response to a pairwise loss; loss={self.loss} "
                                "has no chosen response (an unpaired row's completion may be undesirable)"
                                if spec.pairwise else f"rpo_alpha adds an NLL term to a pairwise loss; loss={self.loss} "
                                "is not pairwise")
        if self.margin_column and "target_margin" not in spec.pair_inputs:
            raise UserError(f"loss={self.loss} takes no per-pair margin (margin_column); losses that do: "
                            f"{losses_reading('target_margin', per_pair=True)}")
        if self.qlora:
            if not self.lora:
                raise UserError("qlora=true trains LoRA adapters on a 4-bit base: set lora=true as well")
            check_qlora_available()
        self.validate_hub(lora=self.lora)
        try:
            spec.check(spec.keywords(self))
        except ValueError as exc:
            raise UserError(f"loss={self.loss}: {exc}") from None

    @property
    def active_selector(self) -> str:
        """The selector in use: `selector`, with auto resolved (the oracle for losses that need a selection)."""
        if self.selector == "auto":
            return "oracle" if self.loss_spec.selection == "required" else "none"
        if self.selector != "none" and self.selector not in SELECTORS:
            raise UserError(f"unknown selector '{self.selector}'; choose one of none, auto, {', '.join(SELECTORS)}"
                            f"{suggest(self.selector, SELECTORS)}")
        return self.selector

    def validate_selector(self, spec: LossSpec, selector: str) -> None:
        if selector == "none":
            if spec.selection == "required":
                raise UserError(f"loss={self.loss} trains on a token selection: set selector (e.g. oracle with "
                                "scores=DIR from `tokensift score`, or random)")
            return
        declared = SELECTORS[selector]
        if spec.no_selection:
            raise UserError(f"selector={selector}: loss={self.loss} takes no token selection: {spec.no_selection}")
        if not spec.pairwise:
            raise UserError(f"selector={selector}: loss={self.loss} trains on whole responses; token selectors work "
                            "with the pairwise losses")
        if "scores" in declared.reads and not self.scores:
            if spec.selection == "required" and self.selector == "auto":
                raise UserError(f"loss={self.loss} needs scores=DIR from `tokensift score`")
            raise UserError(f"selector={selector} reads the oracle's token scores: set scores=DIR from "
                            "`tokensift score`")
        if declared.output == "weights" and not spec.token_weights:
            takes = ", ".join(name for name, other in LOSSES.items() if other.token_weights)
            raise UserError(f"selector={selector} gives token weights, which loss={self.loss} does not take "
                            f"(losses that do: {takes})")
        if not 0 < self.gap_quantile < 1:
            raise UserError(f"gap_quantile must lie in (0, 1), got {self.gap_quantile}")
        if not 0 < self.weight_min <= self.weight_max:
            raise UserError(f"soft weights need 0 < weight_min <= weight_max, got {self.weight_min}, {self.weight_max}")

    @property
    def loss_spec(self) -> LossSpec:
        """The declared loss, or the mixture of several (loss=a,b with loss_weights)."""
        try:
            return resolve(self.loss, self.loss_weights)
        except KeyError as exc:
            name = exc.args[0]
            raise UserError(f"unknown loss '{name}'; choose one of {', '.join(LOSSES)}{suggest(name, LOSSES)}") from None
        except ValueError as exc:
            raise UserError(f"loss={self.loss}: {exc}") from None

    def check_unread_settings(self, spec: LossSpec) -> None:
        """A setting the loss does not read must keep its default: otherwise the user expects an effect it has not."""
        selector = SELECTORS.get(self.active_selector)
        selecting = {"scores", "allow_projection", *selector.settings} if selector else set()
        read = set(spec.params) | selecting
        selection_settings = {"scores", "allow_projection", *(n for s in SELECTORS.values() for n in s.settings)}
        loss_settings = {name for other in LOSSES.values() for name in other.params} | selection_settings
        defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                    for f in dataclasses.fields(self)}
        for name in sorted(loss_settings - read):
            if getattr(self, name) != defaults[name]:
                if name in selection_settings and selector:
                    owners = ", ".join(s.name for s in SELECTORS.values() if name in s.settings)
                    raise UserError(f"selector={selector.name} does not read {name} (it reads "
                                    f"{', '.join(selector.settings) or 'no setting'}; {name} is read by selector "
                                    f"{owners}); leave {name} unset{suggest(name, selecting)}")
                reads = ", ".join(sorted(spec.params)) or "no loss setting"
                if name in selection_settings:
                    reads += "; token-selection settings need a selector"
                raise UserError(f"loss={self.loss} does not read {name} (it reads {reads}); leave {name} unset"
                                f"{suggest(name, read)}")

    @property
    def needs_reference(self) -> bool:
        return self.loss_spec.needs_reference
