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
    overwrite: bool = option(False, "Replace an output file written with other settings (otherwise refused, naming them; one with the same settings is replaced by the new results).")
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
    CLI_EXAMPLE = "eval_fraction=0.1 beta=0.1 limit=200"

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
    CLI_EXAMPLE = "samples_per_prompt=2 max_new_tokens=64 judge.type=reward_model"

    reference: str | None = option(None, "Reference model for KL(policy || reference) on the sampled answers (none: no KL). Must share the policy's tokenizer.")
    opponent: str | None = option(None, "Another model whose sampled answers the policy's answers are judged against (none: no head-to-head win rate).")
    judge: dict | None = option(None, "Judge settings as in judges.build_judge, e.g. judge.type=callable judge.function=tokensift.judges:vader_sentiment; judge.type is also reward_model, local_llm or http (none: no scores or win rates).")
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


@dataclass
class GLMArgs:
    """How `eval winrate` and `eval compare` read judged annotations and set up the length-controlled GLM."""

    difficulties: str | None = option(None, "Instruction difficulties for the LC GLM. None: AlpacaEval's own (shipped with the package, with its gamed-baseline rows) when every row answers one of AlpacaEval's 805 instructions against gpt4_1106_preview's answer, else fitted across the models compared against the same baseline (docs/eval.md). fit: always fitted across the models. A FILE: published difficulties, rows of instruction and instruction_difficulty, or AlpacaEval's instruction_difficulty.csv (by position) with instructions=.")
    instructions: str | None = option(None, "For AlpacaEval's files that give difficulties by position (instruction_difficulty.csv, df_gamed.csv): a file whose rows list AlpacaEval's 805 instructions in order (an `instruction` field), e.g. any 805-row results file of tatsu-lab/alpaca_eval.")
    gamed: list[str] = option([], "Comma list: annotations of the baseline prompted to be verbose and concise (AlpacaEval's gpt4_1106_preview_verbose and _concise), or AlpacaEval's df_gamed.csv (with instructions=, its difficulties are used too, as AlpacaEval does). They regularise the GLM towards the baseline (length_controlled_v1); none: no regularisation (length_controlled_noreg).")
    regularize_lambda: float = option(0.2, "Weight of the gamed-baseline rows relative to a model's own rows, shared among the gamed generators (AlpacaEval: 0.2).")
    skip_missing: bool = option(False, "Leave out rows without a preference (counted in the results) instead of stopping with an error.")
    baseline: str | None = option(None, "Only comparisons against this baseline (generator_1, the reference), when the files hold several.")
    overwrite: bool = option(False, "Replace an output file written with other settings (otherwise refused, naming them; one with the same settings is replaced by the new results).")

    def validate_glm(self) -> None:
        if not 0 <= self.regularize_lambda:
            raise UserError(f"regularize_lambda must be 0 or more, got {self.regularize_lambda}")
        if self.instructions and not ((self.difficulties and self.difficulties != "fit") or self.gamed):
            raise UserError("instructions= maps published difficulties by position: set difficulties= (AlpacaEval's "
                            "instruction_difficulty.csv) or gamed= (its df_gamed.csv) too")


@dataclass
class WinrateConfig(GLMArgs):
    CLI_EXAMPLE = "baseline=gpt4_1106_preview"

    files: list[str] = option([], "Judged annotation files (also as positional FILE arguments): AlpacaEval annotations, `eval generate` results, model-matrix files. Rows of one model against one baseline are pooled across files.")
    output: str = option("", "JSON file for the table, config and versions (default: eval-winrate.json).")

    def validate(self) -> None:
        self.validate_glm()
        if not self.files:
            raise UserError("no annotation files: tokensift eval winrate FILE [FILE ...]")


@dataclass
class CompareConfig(GLMArgs):
    CLI_EXAMPLE = "bootstrap_samples=2000 confidence=0.9"

    runs: list[str] = option([], "Runs (also as positional RUN arguments), the first is the one the others are compared with. A run is a file, or a comma list of files pooled as one run (seeds); FILE#MODEL picks one model of a file that holds several.")
    bootstrap_samples: int = option(2000, "Bootstrap draws of prompts. Time grows linearly (each draw refits every run's LC GLM).")
    seed: int = option(0, "Seed of the bootstrap draws (the same seed gives the same intervals).")
    confidence: float = option(0.95, "Level of the percentile intervals.")
    output: str = option("", "JSON file for the comparison, config and versions (default: eval-compare.json).")
    markdown: str = option("", "Also write the printed Markdown table to this file.")
    plot: str = option("auto", "PNG of the differences with their intervals: a path, auto (beside the JSON output, skipped with a note when matplotlib is not installed) or none.")

    def validate(self) -> None:
        self.validate_glm()
        if len(self.runs) < 2:
            raise UserError(f"eval compare needs at least two runs, got {len(self.runs)}: tokensift eval compare "
                            "RUN_A RUN_B [...]")
        if self.bootstrap_samples < 1:
            raise UserError(f"bootstrap_samples must be at least 1, got {self.bootstrap_samples}")
        if not 0 < self.confidence < 1:
            raise UserError(f"confidence must lie in (0, 1), got {self.confidence}")
