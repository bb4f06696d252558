"""Settings of a TSO run (`tokensift tso generate|review|run`) and the generators of its model matrix.

The model matrix (spec §3.2) is a YAML list of generators. Each one is exactly one of:
  model:  NAME     a model (alias, hub id, folder or .gguf) sampled once per prompt; its cells are fixed
                   for the whole run and generated once into `matrix/` (`tokensift tso generate`);
  policy: true     the current policy: its column is regenerated every round from the round's reference
                   (spec §3.7, "the reference model and its responses are updated");
  column: NAME     an offline cell read from `matrix_file` (e.g. the AlpacaEval matrix), never generated.
Its prior place in the quality ladder (spec §3.4: larger > smaller, later stage > earlier stage) is given
either by `size` (any unit, larger is better) and `stage` (larger is later, default 0), compared size first,
or by an explicit `rank` (larger is better) when generators have no common size/stage scale, as in the
AlpacaEval matrix. One run uses one style. Human responses always rank above every generator (spec §3.3).
"""

from __future__ import annotations

import difflib
import math
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

from tokensift.config import build, option
from tokensift.errors import UserError
from tokensift.models import DEFAULT_MODEL
from tokensift.train.hub import HUB_KEYS, HubArgs

HUMAN = "human"  # the generator name of human responses
PAIRINGS = ("rank_gap", "best_vs_worst")
UNRESOLVED = ("keep", "flip", "drop", "stop")
MARGIN_BY = ("rank_gap", "judge", "both")
BACKENDS = ("auto", "transformers", "vllm")
GENERATOR_KEYS = ("name", "model", "policy", "column", "size", "stage", "rank", "temperature", "top_p",
                  "max_new_tokens", "seed")
# Set by the loop for every round; a user value would be silently overwritten, so it is refused instead.
ROUND_OWNED_TRAIN_KEYS = ("data", "model", "reference", "output_dir", "loss", "resume", "eval_data", "margin_column")
MARGIN_COLUMN = "target_margin"  # the column of pairs.jsonl holding each pair's scaled margin
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
RUN_RECORD = "tso-config.json"  # a run's settings, written when it starts (tso/loop.py)


def recorded_run_settings(output_dir: str | Path) -> dict:
    """The settings the TSO run in `output_dir` was started with ({} when none started there): what `tso review`,
    `tso generate` and a rerun of `tso run` start from, so a run's overrides need not be repeated."""
    import json

    path = Path(output_dir) / RUN_RECORD
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} cannot be read ({exc}); it records the run's settings") from None


@dataclass
class GeneratorSpec:
    """One column of the model matrix. `kind` is model, policy or offline; `prior_key` orders the columns."""

    name: str
    kind: str
    source: str | None  # the model for kind=model, the matrix_file column for kind=offline
    prior_key: tuple
    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int

    def settings(self) -> dict:
        """What decides this column's text: stored with generated cells so a changed spec is noticed."""
        return {"kind": self.kind, "source": self.source, "temperature": self.temperature, "top_p": self.top_p,
                "max_new_tokens": self.max_new_tokens, "seed": self.seed}


def _number(where: str, key: str, value, kind=float):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{where}: '{key}' must be a number, got {value!r}")
    if kind is int and float(value) != int(value):
        raise UserError(f"{where}: '{key}' must be a whole number, got {value!r}")
    return kind(value)


def parse_generators(items: list, defaults: dict, base_seed: int, have_matrix_file: bool) -> list[GeneratorSpec]:
    """Check every generator entry and return specs; errors name the entry (index and name) and the key."""
    if not isinstance(items, list) or not items:
        raise UserError("generators: give a list of at least one generator (see docs/tso.md, 'The model matrix')")
    specs, styles = [], set()
    for index, item in enumerate(items):
        where = f"generators[{index}]"
        if not isinstance(item, dict):
            raise UserError(f"{where}: expected a mapping such as {{name: ..., model: ..., size: ...}}, got {item!r}")
        name = item.get("name")
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise UserError(f"{where}: 'name' must be letters, digits, '_', '.', '-' (got {name!r})")
        where = f"generators[{index}] ('{name}')"
        for key in item:
            if key not in GENERATOR_KEYS:
                close = difflib.get_close_matches(str(key), GENERATOR_KEYS, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise UserError(f"{where}: unknown key '{key}'{hint}; allowed: {', '.join(GENERATOR_KEYS)}")
        if name == HUMAN:
            raise UserError(f"{where}: the name '{HUMAN}' is reserved for human responses (human_column)")
        given = [key for key in ("model", "policy", "column") if item.get(key) not in (None, False, "")]
        if len(given) != 1:
            raise UserError(f"{where}: give exactly one of 'model: NAME', 'policy: true' or 'column: NAME' "
                            f"(found {given or 'none'})")
        kind = {"model": "model", "policy": "policy", "column": "offline"}[given[0]]
        if kind == "policy" and item["policy"] is not True:
            raise UserError(f"{where}: 'policy' must be true")
        source = None if kind == "policy" else item[given[0]]
        if source is not None and not isinstance(source, str):
            raise UserError(f"{where}: '{given[0]}' must be a string, got {source!r}")
        if kind == "offline" and not have_matrix_file:
            raise UserError(f"{where}: 'column: {source}' reads an offline matrix, but matrix_file is not set")
        if "rank" in item:
            if "size" in item or "stage" in item:
                raise UserError(f"{where}: give either 'rank' or 'size'/'stage', not both")
            styles.add("rank")
            prior_key = (_number(where, "rank", item["rank"]),)
        elif "size" in item:
            styles.add("size/stage")
            prior_key = (_number(where, "size", item["size"]), _number(where, "stage", item.get("stage", 0), int))
        else:
            raise UserError(f"{where}: give its prior place: 'size' (and 'stage') or 'rank' (larger is better)")
        sampling = {key: item.get(key, defaults[key]) for key in ("temperature", "top_p", "max_new_tokens")}
        temperature = _number(where, "temperature", sampling["temperature"])
        top_p = _number(where, "top_p", sampling["top_p"])
        max_new = _number(where, "max_new_tokens", sampling["max_new_tokens"], int)
        if temperature < 0 or not 0 < top_p <= 1 or max_new < 1:
            raise UserError(f"{where}: need temperature >= 0, 0 < top_p <= 1 and max_new_tokens >= 1")
        # Each column gets its own seed, so two columns of one model at one temperature still differ.
        seed = _number(where, "seed", item["seed"], int) if "seed" in item else base_seed + zlib.crc32(name.encode()) % 1_000_000
        specs.append(GeneratorSpec(name, kind, source, prior_key, temperature, top_p, max_new, seed))
    if len(styles) > 1:
        raise UserError("generators: either every generator has 'rank' or every one has 'size'/'stage'; "
                        "mixing the two gives no common order")
    names = [s.name for s in specs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise UserError(f"generators: the name '{duplicated[0]}' is used twice")
    if sum(s.kind == "policy" for s in specs) > 1:
        raise UserError("generators: at most one generator may be 'policy: true'")
    return specs


def _train_config():
    """TrainConfig, the class of the `train` section (imported when a key is looked up, not with this module)."""
    from tokensift.train.config import TrainConfig

    return TrainConfig


def prior_ranks(specs: list[GeneratorSpec], with_human: bool) -> dict[str, int]:
    """Dense integer ranks (0 = lowest) of the generators' prior keys; human responses get the top rank."""
    levels = sorted({s.prior_key for s in specs})
    ranks = {s.name: levels.index(s.prior_key) for s in specs}
    if with_human:
        ranks[HUMAN] = len(levels)
    return ranks


@dataclass
class TSOConfig(HubArgs):
    CLI_EXAMPLE = "rounds=2 limit=40 train.beta=0.05"

    output_dir: str = option("runs/tso", "Run folder: prompts.json, matrix/, round-XX/, eval/, report.json.")
    model: str = option(DEFAULT_MODEL, "Starting policy: round 1's reference and policy column (alias, hub id, folder).")
    prompts: str = option("", "Prompt source: a .jsonl/.json/.csv/.parquet file (or .gz), a dataset folder, "
                          "'builtin:quickstart', or empty to take the prompts of matrix_file.")
    prompt_column: str = option("prompt", "Column of the prompt: a string (one user message) or a chat message list.")
    id_column: str | None = option(None, "Column of stable prompt ids (default: a hash of the prompt messages).")
    human_column: str | None = option(None, "Column of human responses; they join each prompt's candidates with "
                                      "the top prior rank. Empty cells mean no human response for that prompt.")
    matrix_file: str | None = option(None, "Offline model matrix: JSONL rows {prompt, responses: {generator: "
                                     "{text}}} (the AlpacaEval matrix format); read by generators with 'column:'.")
    limit: int | None = option(None, "Use only the first N prompts of the source (quick experiments).")
    eval_prompts: int = option(0, "Prompts held out (seeded) and never trained on; the policy's judged score of "
                               "fresh samples on them is measured before and after. 0: no evaluation.")
    eval_samples: int = option(2, "Samples per held-out prompt in the before/after evaluation.")
    rounds: int = option(3, "K: the training prompts are split into K disjoint chunks (seeded); one round each.")
    seed: int = option(0, "Seed of the prompt split, the generators' sampling and training.")
    generators: list[dict] = option([], "The model matrix: a list of {name, model|policy|column, size+stage|rank, "
                              "optional temperature, top_p, max_new_tokens, seed}. See docs/tso.md.")
    max_new_tokens: int = option(128, "Default answer length of every generator (tokens). Time grows with it.")
    temperature: float = option(0.8, "Default sampling temperature of every generator (0: greedy).")
    top_p: float = option(0.95, "Default nucleus sampling threshold of every generator.")
    generation_batch_size: int = option(16, "Prompts per generation batch (transformers backend). Memory grows with it.")
    block_prompts: int = option(64, "Prompts per stored block of generated cells: the resume granularity of generation.")
    backend: str = option("auto", "Generation back end: transformers, vllm (needs vLLM and a GPU), or auto "
                          "(vllm when both are present).")
    vllm_tensor_parallel: int = option(0, "vLLM back end: GPUs each generating model is split over (tensor "
                                       "parallel); 0 = every visible GPU.")
    pairing: str = option("rank_gap", "rank_gap: every pair of candidates whose prior ranks differ by >= "
                          "min_rank_gap; best_vs_worst: one pair per prompt, top vs bottom rank.")
    min_rank_gap: int = option(1, "Smallest prior rank difference that makes a pair (rank_gap pairing), in ladder "
                               "levels: distinct size/stage (or rank) values are one level apart.")
    judge: dict[str, object] = option({}, "The AI-feedback judge, as for build_judge: {type: callable|reward_model|local_llm|"
                         "http, ...}. Cached in output_dir/judge-cache.sqlite unless it sets its own cache.")
    flag_threshold: float = option(0.8, "A pair is flagged as a prior error (a confident disagreement, sent to "
                                   "review) when the judge prefers the prior's rejected response with at least "
                                   "this probability (in (0.5, 1]).")
    ambiguous_band: float = option(0.1, "A verdict within this distance of 0.5 (|p - 0.5| <= band) is ambiguous "
                                   "and sent to review; 0 sends only exact ties. In [0, 0.5).")
    audit_fraction: float = option(0.05, "Share of the remaining pairs of each round (the judge agrees with the "
                                   "prior) sent to review as a seeded random audit sample (at least one when > 0); "
                                   "0: no audit. In [0, 1].")
    consistent_only: bool = option(False, "Drop undecided pairs whose two presentation orders name different "
                                   "winners (judges that ask both orders: local_llm, http); otherwise they keep "
                                   "the prior's order.")
    decisions: str | None = option(None, "Human decisions file (JSONL or CSV: pair_id, decision = keep|flip|drop); "
                                   "read when a round's pairs are corrected. `tokensift tso review` writes it.")
    unresolved: str = option("keep", "Confident disagreements without a human decision: keep (the prior's order "
                             "stands until a person flips it), flip (trust the AI judge alone: opt-in), drop, or "
                             "stop (halt the run until people decide every reviewed pair; rerun to go on).")
    scaled_margin: float = option(0.0, "Scaled preference optimization (docs/tso.md): each pair's target margin in "
                                  "beta-scaled reward units is this value times its distance (margin_by); the "
                                  "dual-clip loss then asks r_w - r_l to exceed it. 0: off (plain dual clip).")
    margin_by: str = option("rank_gap", "The distance the scaled margin multiplies: rank_gap (ladder levels the "
                            "chosen answer sits above the rejected one; 0 for flipped pairs), judge (2p - 1 of the "
                            "judge's probability for the trained order, 1 for a human decision), or both (product).")
    stability: bool = option(True, "After every round, sample the held-out prompts (eval_prompts) from the round's "
                             "policy at temperature 1 and report KL to the start model and to the previous round "
                             "and the judge's win rate over the previous round (a few forward passes per round).")
    stop_min_win_rate: float | None = option(None, "Stop early when a round's win rate over the previous round "
                                             "falls below this (e.g. 0.5); the final model is then the previous "
                                             "round's. Needs stability and eval_prompts.")
    stop_max_kl: float | None = option(None, "Stop early when a round's KL to the start model exceeds this many "
                                       "nats per answer; the final model is then the previous round's.")
    train: dict[str, object] = option({}, "TrainConfig keys for each round's dual-clip training (beta, clip_chosen, "
                         "clip_rejected, learning_rate, epochs, batch_size, max_length, ...), e.g. train.beta=0.05.",
                         section=_train_config)
    progress: bool = option(True, "Show progress bars.")

    def validate(self) -> None:
        if self.judge:
            from tokensift.judges import check_judge_spec

            check_judge_spec(self.judge)  # configs are saved with the run: no secret may be in one
        for name in ("rounds", "eval_samples", "generation_batch_size", "block_prompts", "min_rank_gap"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.eval_prompts < 0:
            raise UserError(f"eval_prompts must be 0 or more, got {self.eval_prompts}")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"limit must be a positive number of prompts, got {self.limit}")
        if not self.prompts and not self.matrix_file:
            raise UserError("no prompts: set prompts=FILE (or builtin:quickstart), or matrix_file=FILE")
        if self.pairing not in PAIRINGS:
            raise UserError(f"pairing must be one of {', '.join(PAIRINGS)}, got '{self.pairing}'")
        if self.unresolved not in UNRESOLVED:
            raise UserError(f"unresolved must be one of {', '.join(UNRESOLVED)}, got '{self.unresolved}'")
        if self.vllm_tensor_parallel < 0:
            raise UserError(f"vllm_tensor_parallel must be >= 0 (0 = every visible GPU), got {self.vllm_tensor_parallel}")
        if self.backend not in BACKENDS:
            raise UserError(f"backend must be one of {', '.join(BACKENDS)}, got '{self.backend}'")
        if not 0.5 < self.flag_threshold <= 1:
            raise UserError(f"flag_threshold must lie in (0.5, 1], got {self.flag_threshold}")
        if not 0 <= self.ambiguous_band < 0.5:
            raise UserError(f"ambiguous_band must lie in [0, 0.5), got {self.ambiguous_band}")
        if not 0 <= self.audit_fraction <= 1:
            raise UserError(f"audit_fraction must lie in [0, 1], got {self.audit_fraction}")
        if not (self.scaled_margin >= 0 and math.isfinite(self.scaled_margin)):
            raise UserError(f"scaled_margin must be a finite number >= 0, got {self.scaled_margin}")
        if self.margin_by not in MARGIN_BY:
            raise UserError(f"margin_by must be one of {', '.join(MARGIN_BY)}, got '{self.margin_by}'")
        self.validate_stops()
        self.validate_hub()
        self.generator_specs()
        self.train_config("placeholder.jsonl", self.model, "placeholder", round_index=1)

    def validate_stops(self) -> None:
        if self.stop_min_win_rate is not None and not 0 < self.stop_min_win_rate <= 1:
            raise UserError(f"stop_min_win_rate must lie in (0, 1], got {self.stop_min_win_rate}")
        if self.stop_max_kl is not None and not self.stop_max_kl > 0:
            raise UserError(f"stop_max_kl must be a positive number of nats, got {self.stop_max_kl}")
        if (self.stop_min_win_rate is not None or self.stop_max_kl is not None) and not (
                self.stability and self.eval_prompts > 0):
            raise UserError("stop_min_win_rate / stop_max_kl read each round's answers on the held-out prompts: "
                            "they need stability=true and eval_prompts > 0")

    def generator_specs(self) -> list[GeneratorSpec]:
        defaults = {"temperature": self.temperature, "top_p": self.top_p, "max_new_tokens": self.max_new_tokens}
        return parse_generators(self.generators, defaults, self.seed, bool(self.matrix_file))

    def train_config(self, data: str, model: str, output_dir: str, round_index: int):
        """The TrainConfig of one round: dual-clip loss, starting from (and referenced to) the round's policy."""
        from tokensift.train.config import TrainConfig

        owned = sorted(set(self.train) & set(ROUND_OWNED_TRAIN_KEYS))
        if owned:
            raise UserError(f"train.{owned[0]} is set by each TSO round and cannot be given "
                            f"(round-owned keys: {', '.join(ROUND_OWNED_TRAIN_KEYS)})")
        hub = sorted(set(self.train) & set(HUB_KEYS))
        if hub:
            raise UserError(f"train.{hub[0]}: a TSO run publishes its final model, not each round's; set "
                            f"{hub[0]} at the top level of the TSO config")
        values = {"max_length": 512, "max_prompt_length": 256, "seed": self.seed, "progress": self.progress,
                  "ref_cache_dir": str(Path(self.output_dir) / "ref-cache"), **self.train,
                  "data": data, "model": model, "reference": None, "output_dir": output_dir, "loss": "tso",
                  "resume": True, "margin_column": MARGIN_COLUMN if self.scaled_margin > 0 else None}
        return build(TrainConfig, values, prefix="train.")


@dataclass
class ReviewConfig(TSOConfig):
    CLI_EXAMPLE = "output_dir=runs/tso review_file=review.csv serve=false port=8765"

    review_file: str | None = option(None, "Where to write the pairs for review (.jsonl or .csv; default "
                                     "output_dir/review.jsonl). Fill in 'decision' and pass it as decisions=FILE.")
    include_decided: bool = option(False, "Also export reviewed pairs that already have a decision in the decisions file.")
    serve: bool = option(False, "Serve the reviewed pairs as a local web page instead of writing a sheet: one pair "
                         "per screen, keyboard decisions, written to the decisions file (decisions=FILE, default "
                         "output_dir/decisions.jsonl) as they are made. See docs/tso.md, 'Review in the browser'.")
    host: str = option("127.0.0.1", "--serve: the interface to listen on. Anything but the loopback also needs "
                       "allow_remote=true.")
    port: int = option(8765, "--serve: the port (0 picks a free one; the URL is printed).")
    token_scores: str | None = option(None, "--serve: a `tokensift score` folder over a review sheet of this run "
                                      "(with its pair_id column): the page can colour each answer's tokens by them.")
    allow_remote: bool = option(False, "--serve: allow a host other than the loopback (prints a warning: anyone "
                                "who can reach the port and has the URL's token can decide pairs).")

    def validate(self) -> None:
        super().validate()
        if not 0 <= self.port <= 65535:
            raise UserError(f"port must lie in [0, 65535], got {self.port}")
