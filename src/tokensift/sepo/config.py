"""Settings of the SePO stages: token scoring, the oracle, and the whole pipeline."""

from __future__ import annotations

from dataclasses import dataclass

from tokensift.config import option
from tokensift.errors import UserError
from tokensift.losses import LOSSES
from tokensift.train.config import DataArgs, TrainConfig


@dataclass
class ScoreConfig(DataArgs):
    CLI_EXAMPLE = "batch_size=32 limit=100"

    oracle: str = option("", "The oracle: a DPO-trained model (its folder, hub id or alias).")
    reference: str = option("", "The oracle's reference: the model the oracle's DPO started from (its SFT model).")
    output_dir: str = option("runs/scores", "Folder of Parquet score shards (token ids + scores + rows) and meta.json.")
    beta: float = option(0.1, "Scale of the token reward beta*(log pi_oracle - log pi_ref); ranking does not depend on it.")
    batch_size: int = option(16, "Pairs per scoring batch (no-grad). Larger is faster until memory runs out.")
    dtype: str = option("float32", "Weights dtype for both models: float32 or bfloat16 (faster on GPU).")
    attn_implementation: str | None = option(None, "transformers' attention for both models (sdpa, eager, flex_attention ...); unset: the model's default.")
    chunk_pairs: int = option(512, "Pairs scored and written per shard: the resume granularity after a kill.")
    overwrite: bool = option(False, "Replace scores in output_dir that were made from other inputs.")
    trust_remote_code: bool = option(False, "Allow model repositories to run their own Python code.")
    progress: bool = option(True, "Show a progress bar.")

    def validate(self) -> None:
        self.validate_data()
        if not self.oracle or not self.reference:
            raise UserError("scoring needs oracle=MODEL and reference=MODEL (the model the oracle was trained from)")
        if self.batch_size < 1 or self.chunk_pairs < 1:
            raise UserError("batch_size and chunk_pairs must be at least 1")
        if self.beta <= 0:
            raise UserError(f"beta must be positive, got {self.beta}")


@dataclass
class OracleConfig(TrainConfig):
    CLI_EXAMPLE = "fraction=0.3 epochs=2 beta=0.05"

    fraction: float = option(1.0, "Share of the data (random, seeded) the oracle's DPO trains on, in (0, 1].")

    def validate(self) -> None:
        super().validate()
        if not 0 < self.fraction <= 1:
            raise UserError(f"fraction must lie in (0, 1], got {self.fraction}")
        if self.loss_spec.reference != "cached":  # its token reward is beta * (log pi_oracle - log pi_ref)
            choices = ", ".join(name for name, spec in LOSSES.items() if spec.reference == "cached")
            raise UserError(f"the oracle is trained with a reference-based loss (dpo by default; one of {choices}), "
                            f"not '{self.loss}'")
