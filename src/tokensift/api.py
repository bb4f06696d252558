"""The Python API: every stage as a function, for notebooks and scripts (docs/python-api.md).

The functions are named for what they do (`train_model`, `run_sepo` ...), not after the subpackages
`tokensift.train`, `tokensift.sepo` and `tokensift.tso`, which Python would put in their place.

Each function takes a typed config object (the same dataclass the command line fills, with help text on every
field) and/or keyword settings that override it, plus the data as a path, a list of dicts or a
`datasets.Dataset`, and returns results (metrics, paths, per-pair values), not only files:

    import tokensift
    rows = [{"prompt": "Say hi", "chosen": "Hi there!", "rejected": "Go away."}, ...]
    result = tokensift.train_model(loss="dpo", model="smollm2-135m-instruct", train_dataset=rows, max_steps=20)
    result.train_metrics["rewards/accuracy"], result.final_dir

Settings are checked exactly as on the command line (unknown keys, wrong types, values out of range, settings the
chosen loss does not read), before any model is loaded.
"""

from __future__ import annotations

import dataclasses

from tokensift.config import build
from tokensift.data.io import as_source
from tokensift.errors import UserError


def configure(cls, config=None, **settings):
    """A validated `cls` config: `config` (or the defaults) with `settings` applied on top."""
    if config is not None and not isinstance(config, cls):
        raise UserError(f"expected a {cls.__name__}, got {type(config).__name__}")
    base = {} if config is None else {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    return build(cls, {**base, **settings})


def _with_data(settings: dict, key: str, value, name: str) -> dict:
    if value is not None:
        settings[key] = as_source(value, name)
    return settings


def train_model(config=None, *, train_dataset=None, eval_dataset=None, processing_class=None, **settings):
    """Train with any loss (`TrainConfig`); returns a TrainResult (metrics, the final model's folder).

    train_dataset / eval_dataset: preference data (path, list of dicts, datasets.Dataset), else `config.data`.
    processing_class: the policy's tokenizer object (default: loaded from `model`).
    With a token selector (`selector`, or loss="sepo", which trains on the oracle's key tokens from `scores`) the
    pairs and selection are built by train/run.selected_train_data.
    """
    from tokensift.train.config import TrainConfig
    from tokensift.train.run import train_run

    _with_data(settings, "data", train_dataset, "train_dataset")
    _with_data(settings, "eval_data", eval_dataset, "eval_dataset")
    return train_run(configure(TrainConfig, config, **settings), processing_class)


def sweep(config=None, **settings):
    """Train every combination of `grid` over the `base` TrainConfig (`SweepConfig`), e.g. k, sepo_gamma and
    selector on stored scores; returns the table's rows (one dict per run) and writes sweep.md/csv/json."""
    from tokensift.sweep import SweepConfig, run_sweep

    return run_sweep(configure(SweepConfig, config, **settings))


def train_oracle(config=None, *, train_dataset=None, **settings):
    """SePO's oracle: DPO from the reference on a random fraction of the data (`OracleConfig`); a TrainResult."""
    from tokensift.sepo.config import OracleConfig
    from tokensift.sepo.oracle import train_oracle as run

    return run(configure(OracleConfig, config, **_with_data(settings, "data", train_dataset, "train_dataset")))


def score_tokens(config=None, *, dataset=None, **settings):
    """Score every response token with the oracle's implicit reward (`ScoreConfig`); returns (ScoreResult,
    records), records: row -> {prompt_ids, chosen_ids, rejected_ids, chosen_scores, rejected_scores}."""
    from tokensift.scores import load_scores
    from tokensift.sepo.config import ScoreConfig
    from tokensift.sepo.score import score_tokens as run

    result = run(configure(ScoreConfig, config, **_with_data(settings, "data", dataset, "dataset")))
    return result, load_scores(result.output_dir)[1]


def select_tokens(scores: str, *, limit: int | None = None, eval_fraction: float = 0.0, seed: int = 0, **selection):
    """The token selection training would make from stored scores, fitted on the same training rows:
    row -> (chosen mask, rejected mask) as boolean arrays. `selection`: SelectionArgs settings (k_chosen ...)."""
    from tokensift.scores import load_scores
    from tokensift.selection import SelectionArgs
    from tokensift.train.run import training_rows

    args = configure(SelectionArgs, None, **selection)
    args.validate_selection()
    _, records = load_scores(scores)
    fit, _ = training_rows(records, limit, eval_fraction, seed)
    fitted = args.fitted_selection([records[r]["chosen_scores"] for r in fit],
                                   [records[r]["rejected_scores"] for r in fit])
    return {row: (fitted.chosen(rec["chosen_scores"]), fitted.rejected(rec["rejected_scores"]))
            for row, rec in records.items()}


def run_sepo(config=None, *, dataset=None, **settings) -> dict:
    """The SePO pipeline (`SePOConfig`): reference SFT (optional) -> oracle -> scores -> policy; its report."""
    from tokensift.sepo.pipeline import SePOConfig, run_pipeline

    return run_pipeline(configure(SePOConfig, config, **_with_data(settings, "data", dataset, "dataset")))


def run_tso(config=None, *, judge=None, **settings) -> dict:
    """TSO (`TSOConfig`): model matrix, judged and corrected pairs, iterative dual-clip DPO; its report.
    judge: a Judge object to use instead of the config's `judge` mapping."""
    from tokensift.tso.config import TSOConfig
    from tokensift.tso.loop import run_tso as run

    return run(configure(TSOConfig, config, **settings), judge)


def evaluate_pairs(config=None, *, dataset=None, **settings) -> dict:
    """Preference accuracy and margins on pairs (`PairsEvalConfig`); the results dict `eval pairs` writes."""
    from tokensift.eval.config import PairsEvalConfig
    from tokensift.eval.preference import evaluate_preferences

    return evaluate_preferences(configure(PairsEvalConfig, config,
                                          **_with_data(settings, "data", dataset, "dataset")))


def evaluate_generation(config=None, **settings) -> dict:
    """Sampled answers, judged scores and win rates, KL (`GenerateEvalConfig`); the results dict."""
    from tokensift.eval.config import GenerateEvalConfig
    from tokensift.eval.generation import evaluate_generation as run

    return run(configure(GenerateEvalConfig, config, **settings))


def show_scores(config=None, **settings):
    """The HTML token heatmap of stored scores (`ShowConfig`); the page's path."""
    from tokensift.sepo.show import ShowConfig
    from tokensift.sepo.show import show_scores as run

    return run(configure(ShowConfig, config, **settings))
