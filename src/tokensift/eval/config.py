"""Settings of `tokensift eval pairs` and `tokensift eval generate`; every field has help text."""

from __future__ import annotations

from dataclasses import dataclass

from tokensift.config import option
from tokensift.errors import UserError
from tokensift.eval.lengths import parse_edges
from tokensift.models import DEFAULT_MODEL, parse_dtype
from tokensift.judges import JUDGES, check_judge_spec
from tokensift.train.config import DataArgs



@dataclass
class RunArgs:
    """What both evaluations share: which model, where it runs, where results go."""

    model: str = option(DEFAULT_MODEL, "Policy model to evaluate: an alias, hub id, local folder or .gguf file.")
    dtype: str = option("float32", "Weight dtype: float32, bfloat16 or float16. bf16 halves memory; log-probs lose precision.")
    attn_implementation: str | None = option(None, "transformers' attention (sdpa, eager, flex_attention ...); unset: the model's default.")
    device: str = option("auto", "cpu, cuda, cuda:N or mps; auto picks cuda when available.")
    batch_size: int = option(16, "Sequences per no-grad pass (pairs, or answers when sampling). Memory grows linearly with it.")
    eval_fraction: float = option(0.0, "Use only this seeded share of the rows; with the same data, limit, eval_fraction and seed as a training run these are exactly the rows that run held aside. 0 = all rows.")
    seed: int = option(0, "Seed of the eval_fraction split (and of sampling).")
    output: str = option("", "JSON file for all results, the config and the versions (default: eval-<action>.json).")
    save_items: bool = option(True, "Also store every pair's / answer's numbers in the JSON (larger file, full detail).")
    progress: bool = option(True, "Show progress bars.")
    trust_remote_code: bool = option(False, "Allow model repositories to run their own Python code. Off unless you trust them.")

    def validate_run(self) -> None:
        parse_dtype(self.dtype)
        if self.device != "auto" and self.device.split(":")[0] not in ("cpu", "cuda", "mps"):
            raise UserError(f"device must be auto, cpu, cuda, cuda:N or mps, got '{self.device}'")
        if self.batch_size < 1:
            raise UserError(f"batch_size must be at least 1, got {self.batch_size}")
        if not 0 <= self.eval_fraction < 1:
            raise UserError(f"eval_fraction must lie in [0, 1), got {self.eval_fraction}")


@dataclass
class PairsEvalConfig(RunArgs, DataArgs):
    reference: str | None = option(None, "Reference model for the DPO implicit reward margin (none: only the reference-free mean log-prob margin). Must share the policy's tokenizer; a second model in memory.")
    beta: float = option(0.1, "DPO beta that scales the implicit reward margin (accuracy does not depend on it).")
    length_difference_edges: str = option("4,16,64", "Bucket edges (tokens) of |chosen - rejected| response length, mirrored for negative differences.")
    total_length_edges: str = option("64,256,1024", "Bucket edges (tokens) of chosen + rejected response length.")

    def validate(self) -> None:
        self.validate_data()
        self.validate_run()
        if not self.beta > 0:
            raise UserError(f"beta must be positive, got {self.beta}")
        parse_edges(self.length_difference_edges, "length_difference_edges")
        parse_edges(self.total_length_edges, "total_length_edges")


@dataclass
class PromptArgs:
    """Where the prompts (and reference answers) of a generation evaluation come from."""

    prompts: str = option("", "Prompts: a .txt file (one per line), a .jsonl/.json/.csv/.parquet file or dataset with a prompt column, or a preference source (its prompts; its chosen or rejected replies can be the reference answers).")
    prompt_column: str = option("prompt", "Column holding the prompt (a string or a list of chat messages) in a prompt file.")
    reference_column: str | None = option(None, "Column of reference answers the policy is compared against, e.g. chosen for a preference source (none: no win rate against references).")
    columns: str | None = option(None, "Column mapping for a preference source in a custom layout, e.g. 'prompt=instruction,chosen=good,rejected=bad'.")
    split: str = option("train", "Split to read from dataset folders and hub datasets.")
    skip_invalid: bool = option(False, "Skip bad rows (counted and listed in the results) instead of stopping at the first.")
    limit: int | None = option(None, "Read only the first N rows of the prompt source.")


@dataclass
class GenerateEvalConfig(RunArgs, PromptArgs):
    reference: str | None = option(None, "Reference model for KL(policy || reference) on the sampled answers (none: no KL). Must share the policy's tokenizer.")
    opponent: str | None = option(None, "Another model whose sampled answers the policy's answers are judged against (none: no head-to-head win rate).")
    judge: dict | None = option(None, "Judge settings as in judges.build_judge, e.g. judge.type=callable judge.function=tokensift.judges:vader_sentiment, or type=reward_model/local_llm/http (none: no scores or win rates).")
    samples_per_prompt: int = option(1, "Answers sampled per prompt. Time grows linearly with it; more samples tighten every estimate.")
    max_new_tokens: int = option(128, "Longest sampled answer, in tokens (longer answers are cut; KL is then over the first N tokens).")
    temperature: float = option(1.0, "Sampling temperature. KL is only an estimate of KL(policy || reference) at 1.0 (0 = greedy: no KL).")
    top_p: float = option(1.0, "Nucleus sampling threshold; below 1.0 the samples no longer come from the policy itself and KL is biased.")
    max_prompt_length: int | None = option(512, "Prompts keep their last N tokens (counted in the results).")
    tie_tolerance: float = option(0.0, "Count a comparison as a tie (half a win) when |score difference| (scoring judges) or |p_first - 0.5| (pairwise judges) is at most this.")

    def validate(self) -> None:
        self.validate_run()
        if not self.prompts:
            raise UserError("no prompts given: set prompts=PATH (a prompt file or a preference source)")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"limit must be a positive number of rows, got {self.limit}")
        for name in ("samples_per_prompt", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_prompt_length is not None and self.max_prompt_length < 1:
            raise UserError(f"max_prompt_length must be at least 1 token, got {self.max_prompt_length}")
        if self.temperature < 0:
            raise UserError(f"temperature must be 0 (greedy) or positive, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise UserError(f"top_p must lie in (0, 1], got {self.top_p}")
        if self.tie_tolerance < 0:
            raise UserError(f"tie_tolerance must be 0 or more, got {self.tie_tolerance}")
        if self.judge is not None:
            check_judge_spec(self.judge)  # before the config is saved with the results
        if self.judge is not None and self.judge.get("type") not in JUDGES:
            raise UserError(f"judge.type must be one of {', '.join(JUDGES)}, got {self.judge.get('type')!r} "
                            "(e.g. judge.type=callable judge.function=tokensift.judges:vader_sentiment)")
        if self.judge is not None and JUDGES[self.judge["type"]].pairwise and not (self.reference_column or self.opponent):
            raise UserError(f"a {self.judge['type']} judge only compares two answers: set reference_column "
                            "(reference answers) or opponent (another model) for it to compare against")
