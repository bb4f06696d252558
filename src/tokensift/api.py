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

What differs from the command line, because Python holds objects and runs many calls in one process:
- models: `model=` / `ref_model=` take a name or path or a loaded transformers (or peft) model, `processing_class=`
  a tokenizer, `peft_config=` a peft LoraConfig (given.py); the config records the objects' names.
- folders: a call whose output folder is not set (neither as a keyword nor in the config object, where the
  field's default counts as not set) writes to a fresh folder `runs/<stage>-<YYYYmmdd-HHMMSS>-<4 hex>`, so two
  calls never share one; to write into a fixed folder (and resume there), pass `output_dir=...`.
- progress=False silences every progress bar of the call, the libraries' own (model loading) included.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import time
from pathlib import Path

from tokensift.config import build
from tokensift.data.io import as_source
from tokensift.errors import UserError
from tokensift.given import given_objects, tokenizer_argument, unset

RUNS = Path("runs")  # where fresh output folders go (relative to the working directory)
SCORES_TYPES = "a folder of token scores (a path), a ScoreResult, or the (ScoreResult, records) pair score_tokens returns"


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


# ---------------------------------------------------------------------------------------------- output folders
def fresh_folder(stage: str, root: Path = RUNS) -> Path:
    """A new, empty folder `root/<stage>-<YYYYmmdd-HHMMSS>-<4 hex>`: created here (mkdir without exist_ok), so two
    calls, even in two processes at the same second, never get the same one."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for _ in range(256):
        folder = root / f"{stage}-{stamp}-{secrets.token_hex(2)}"
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            continue
        except OSError as exc:
            raise UserError(f"cannot create the output folder {folder}: {exc.strerror or exc}") from None
    raise UserError(f"no free folder name under {root} for {stage}-{stamp}; pass output_dir=")


def _configure_run(cls, config, settings: dict, stage: str, field: str = "output_dir", file: str | None = None,
                   check=None):
    """configure() and `check(config)`, then a fresh output folder when the caller set none (see the module's
    docstring)."""
    fresh = unset(cls, config, settings, field)
    built = configure(cls, config, **settings)
    if check is not None:
        check(built)
    if fresh:
        folder = fresh_folder(stage)
        setattr(built, field, str(folder / file) if file else str(folder))
        if getattr(built, "progress", True):
            print(f"[tokensift] {stage}: writing to {folder}")
    return built


# ---------------------------------------------------------------------------------------------- progress bars
@contextlib.contextmanager
def progress_bars(enabled: bool):
    """With enabled=False, transformers', huggingface_hub's and datasets' progress bars (weight loading, downloads,
    dataset preparation) are off for the block; each library's own setting is restored afterwards. tokensift's own
    bars follow the configs' `progress`."""
    if enabled:
        yield
        return
    import importlib
    import sys
    import warnings

    from transformers.utils import logging as transformers_logging

    hub = importlib.import_module("huggingface_hub.utils.tqdm")
    hub_states = dict(hub.progress_bar_states)
    transformers_on = transformers_logging.is_progress_bar_enabled()
    datasets_bars = None
    datasets_env = os.environ.get("HF_DATASETS_DISABLE_PROGRESS_BARS")
    if "datasets" in sys.modules:  # a dataset folder or hub id loads through it
        datasets_bars = importlib.import_module("datasets.utils.tqdm")
        datasets_on = not datasets_bars.are_progress_bars_disabled()
    else:  # not imported for this (its import starts threads); if the block imports it, it reads this
        os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an environment variable that forces bars on wins (with a warning)
        transformers_logging.disable_progress_bar()  # transformers' and huggingface_hub's
        if datasets_bars is not None:
            datasets_bars.disable_progress_bars()
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if transformers_on:
                transformers_logging.enable_progress_bar()
            hub.progress_bar_states.clear()
            hub.progress_bar_states.update(hub_states)
            if datasets_bars is not None and datasets_on:
                datasets_bars.enable_progress_bars()
            if datasets_bars is None:
                if datasets_env is None:
                    os.environ.pop("HF_DATASETS_DISABLE_PROGRESS_BARS", None)
                else:
                    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = datasets_env


# ---------------------------------------------------------------------------------------------- stages
def train_model(config=None, *, train_dataset=None, eval_dataset=None, processing_class=None, model=None,
                ref_model=None, peft_config=None, callbacks=None, **settings):
    """Train with any loss (`TrainConfig`); returns a TrainResult (metrics, the final model's folder).

    train_dataset / eval_dataset: preference data (path, list of dicts, datasets.Dataset), else `config.data`.
    model: a name or path, or a loaded transformers model (or peft model): trained in place, never re-loaded;
    afterwards it holds the trained weights (adapters merged into it, as in final/). The run card records its
    name_or_path, class and a sha256 of its starting weights.
    ref_model: the reference, a name or path or a model object (default: the policy's start). Reference-based
    losses run it once, no-grad, into the reference cache (keyed by its weights' sha256 when it is an object);
    a live-reference loss (tdpo) keeps it frozen beside the policy.
    processing_class: the policy's tokenizer, an object or a name (default: loaded from `model`; an in-memory
    model without a name_or_path needs it).
    peft_config: a peft LoraConfig: train these adapters, as given, instead of the lora_* settings (lora=true with
    other lora_* values is refused).
    callbacks: objects called at the loop's events, transformers' TrainerCallback protocol (on_log to log your own
    metrics, control.should_training_stop for early stopping; tokensift.EarlyStopping): train/callbacks.py.
    output_dir unset (as a keyword, or left at its default "runs/train" in a config object): a fresh folder
    runs/train-<time>-<hex> (TrainResult.output_dir). With a token selector (`selector`, or loss="sepo", which
    trains on the oracle's key tokens from `scores`) the pairs and selection are built by
    train/run.selected_train_data.
    """
    from tokensift.train.config import TrainConfig
    from tokensift.train.run import train_run

    _with_data(settings, "data", train_dataset, "train_dataset")
    _with_data(settings, "eval_data", eval_dataset, "eval_dataset")
    given = given_objects(TrainConfig, config, settings, model, ref_model, peft_config)
    config = _configure_run(TrainConfig, config, settings, "train", check=given.check_call(processing_class))
    with progress_bars(config.progress):
        return train_run(config, tokenizer_argument(processing_class), given, callbacks)


def sweep(config=None, **settings):
    """Train every combination of `grid` over the `base` TrainConfig (`SweepConfig`), e.g. k, sepo_gamma and
    selector on stored scores; returns the table's rows (one dict per run) and writes sweep.md/csv/json.
    output_dir unset: a fresh folder runs/sweep-<time>-<hex>."""
    from tokensift.sweep import SweepConfig, run_sweep

    config = _configure_run(SweepConfig, config, settings, "sweep")
    with progress_bars(any(run.progress for _, _, run in config.runs())):
        return run_sweep(config)


def train_oracle(config=None, *, train_dataset=None, processing_class=None, model=None, peft_config=None,
                 **settings):
    """SePO's oracle: DPO from the reference on a random fraction of the data (`OracleConfig`); a TrainResult.
    model / processing_class / peft_config: as in train_model (the oracle's reference is its own start).
    output_dir unset: a fresh folder runs/oracle-<time>-<hex>."""
    from tokensift.sepo.config import OracleConfig
    from tokensift.sepo.oracle import train_oracle as run

    _with_data(settings, "data", train_dataset, "train_dataset")
    given = given_objects(OracleConfig, config, settings, model, None, peft_config)
    config = _configure_run(OracleConfig, config, settings, "oracle", check=given.check_call(processing_class))
    with progress_bars(config.progress):
        return run(config, tokenizer_argument(processing_class), given)


def score_tokens(config=None, *, dataset=None, **settings):
    """Score every response token with the oracle's implicit reward (`ScoreConfig`); returns (ScoreResult,
    records), records: row -> {prompt_ids, chosen_ids, rejected_ids, chosen_scores, rejected_scores}.
    output_dir unset: a fresh folder runs/scores-<time>-<hex> (ScoreResult.output_dir)."""
    from tokensift.scores import load_scores
    from tokensift.sepo.config import ScoreConfig
    from tokensift.sepo.score import score_tokens as run

    config = _configure_run(ScoreConfig, config, _with_data(settings, "data", dataset, "dataset"), "scores")
    with progress_bars(config.progress):
        result = run(config)
    return result, load_scores(result.output_dir)[1]


def _scores(scores, argument: str = "scores"):
    """(folder, records or None) of what select_tokens and show_scores take."""
    from tokensift.sepo.score import ScoreResult

    records = None
    if isinstance(scores, tuple) and len(scores) == 2 and isinstance(scores[0], ScoreResult):
        scores, records = scores
        if not isinstance(records, dict):
            raise UserError(f"{argument}= takes {SCORES_TYPES}; got a pair whose second item is a "
                            f"{type(records).__name__}")
    if isinstance(scores, ScoreResult):
        return str(scores.output_dir), records
    if isinstance(scores, (str, os.PathLike)):
        return os.fspath(scores), None
    raise UserError(f"{argument}= takes {SCORES_TYPES}; got {type(scores).__name__}")


def select_tokens(scores, *, limit: int | None = None, eval_fraction: float = 0.0, seed: int = 0,
                  processing_class=None, **selection):
    """The token selection training would make from stored scores, fitted on the same training rows.

    scores: a folder of token scores, a ScoreResult, or the (ScoreResult, records) pair score_tokens returns.
    selection: SelectionArgs settings (k_chosen ...). Returns row -> SelectedPair: the (chosen mask, rejected
    mask) tuple of boolean arrays, with `.chosen` / `.rejected` carrying ids, scores, mask, `tokens` (each token's
    text), `text` (the selected tokens decoded) and `selected_tokens()`. Text is decoded with processing_class
    (a tokenizer or name), default the oracle's tokenizer, loaded once on first use.
    """
    from tokensift.scores import load_scores, scores_meta
    from tokensift.selection import SelectionArgs
    from tokensift.sepo.selected import TokenText, selections

    args = configure(SelectionArgs, None, **selection)
    args.validate_selection()
    folder, records = _scores(scores)
    if records is None:
        meta, records = load_scores(folder)
    else:
        meta = scores_meta(folder)
    decoder = TokenText(meta.get("oracle_model"), tokenizer_argument(processing_class))
    return selections(records, args, limit, eval_fraction, seed, decoder)


def run_sepo(config=None, *, dataset=None, **settings) -> dict:
    """The SePO pipeline (`SePOConfig`): reference SFT (optional) -> oracle -> scores -> policy; its report.
    output_dir unset: a fresh folder runs/sepo-<time>-<hex> (a rerun resumes only in a folder it names)."""
    from tokensift.sepo.pipeline import SePOConfig, run_pipeline

    config = _configure_run(SePOConfig, config, _with_data(settings, "data", dataset, "dataset"), "sepo")
    with progress_bars(any(stage.progress for stage in config.stages().values())):
        return run_pipeline(config)


def run_tso(config=None, *, judge=None, **settings) -> dict:
    """TSO (`TSOConfig`): model matrix, judged and corrected pairs, iterative dual-clip DPO; its report.
    judge: a Judge object to use instead of the config's `judge` mapping. output_dir unset: a fresh folder
    runs/tso-<time>-<hex>."""
    from tokensift.tso.config import TSOConfig
    from tokensift.tso.loop import run_tso as run

    config = _configure_run(TSOConfig, config, settings, "tso")
    with progress_bars(config.progress):
        return run(config, judge)


def evaluate_pairs(config=None, *, dataset=None, processing_class=None, model=None, ref_model=None,
                   **settings) -> dict:
    """Preference accuracy and margins on pairs (`PairsEvalConfig`); the results dict `eval pairs` writes.
    model / ref_model (or reference) / processing_class: names or paths, or objects as in train_model (moved to
    the device and put in eval mode, not re-loaded)."""
    from tokensift.eval.config import PairsEvalConfig
    from tokensift.eval.preference import evaluate_preferences

    _with_data(settings, "data", dataset, "dataset")
    given = given_objects(PairsEvalConfig, config, settings, model, ref_model)
    given.check_tokenizer(processing_class)
    config = configure(PairsEvalConfig, config, **settings)
    with progress_bars(config.progress):
        return evaluate_preferences(config, tokenizer_argument(processing_class), given)


def evaluate_generation(config=None, **settings) -> dict:
    """Sampled answers, judged scores and win rates, KL (`GenerateEvalConfig`); the results dict."""
    from tokensift.eval.config import GenerateEvalConfig
    from tokensift.eval.generation import evaluate_generation as run

    config = configure(GenerateEvalConfig, config, **settings)
    with progress_bars(config.progress):
        return run(config)


# ---------------------------------------------------------------------------------------------- the heatmap
class HtmlPage(type(Path())):
    """The path of an HTML page the API wrote: a pathlib.Path (str(), open(), os.fspath and .exists() work as on
    any path), which a notebook shows inline (`_repr_html_`: the page in a sandboxed iframe)."""

    height = 640

    @property
    def path(self) -> Path:
        return Path(self)

    def _repr_html_(self) -> str:
        from tokensift.viz.heatmap import notebook_html

        return notebook_html(self.read_text(encoding="utf-8"), self.height)


def show_scores(config=None, *, scores=None, **settings):
    """The HTML token heatmap of stored scores (`ShowConfig`); an HtmlPage: the page's path, shown inline by a
    notebook. scores: a folder of token scores, a ScoreResult or the (ScoreResult, records) pair score_tokens
    returns. output unset (as a keyword, or left at its default in a config object): a fresh folder
    runs/show-<time>-<hex>/token-scores.html."""
    from tokensift.sepo.show import ShowConfig
    from tokensift.sepo.show import show_scores as run

    if scores is None and config is not None and not isinstance(config.scores, str):
        scores = config.scores
    if scores is not None:
        settings["scores"] = _scores(scores)[0]
    config = _configure_run(ShowConfig, config, settings, "show", field="output", file="token-scores.html")
    return HtmlPage(run(config))
