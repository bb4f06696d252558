"""The `tokensift` command: one subcommand per stage.

Every stage reads its settings from a dataclass: defaults < `--config FILE.yaml` < `--option value` <
trailing `key=value` overrides. `tokensift <stage> --help` lists every option with its help text.
User errors (bad files, rows, keys, values) print one paragraph and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from tokensift import __version__
from tokensift.config import add_config_options, config_from_args
from tokensift.errors import UserError
from tokensift.preflight import print_plan

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


# ---------------------------------------------------------------------------------------------------- stages
def run_train(args, forced_loss: str | None = None) -> int:
    from tokensift.train.config import TrainConfig
    from tokensift.train.plan import plan_training
    from tokensift.train.run import data_of, train_run

    config = config_from_args(TrainConfig, args)
    if forced_loss:
        config.loss = forced_loss
        config.validate()
    if args.check:
        return print_plan(plan_training(config, data_of(config), args.command))
    print_result(train_run(config))  # not api.train_model: the command line keeps its default output_dir
    return 0


def print_result(result) -> None:
    metrics = result.eval_metrics or result.train_metrics
    shown = {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float) and ("loss" in k or "accuracy" in k)}
    print(f"done: {result.steps} steps; final model in {result.final_dir}; {shown}")


def cmd_sft(args) -> int:
    return run_train(args, forced_loss="sft")


def cmd_dpo(args) -> int:
    from tokensift.train.config import TrainConfig

    config = config_from_args(TrainConfig, args)  # --loss, the YAML file or a loss=... override
    spec = config.loss_spec  # one loss or a mixture
    if not (spec.pairwise and spec.selection == "none" and spec.data == "paired"):
        raise UserError(f"`tokensift dpo` trains pairwise losses; use `tokensift train loss={config.loss}` instead")
    return run_train(args)


def pairwise_losses() -> list[str]:
    """What `tokensift dpo` trains: pairwise losses on paired data and whole responses (no token selection)."""
    from tokensift.losses import LOSSES

    return [name for name, spec in LOSSES.items() if spec.pairwise and spec.selection == "none" and spec.data == "paired"]


def cmd_train(args) -> int:
    return run_train(args)


def cmd_oracle(args) -> int:
    from tokensift.sepo.config import OracleConfig
    from tokensift.sepo.oracle import oracle_data, train_oracle
    from tokensift.train.plan import plan_training

    config = config_from_args(OracleConfig, args)
    if args.check:
        return print_plan(plan_training(config, oracle_data, "oracle"))
    print_result(train_oracle(config))
    return 0


def cmd_score(args) -> int:
    from tokensift.sepo.config import ScoreConfig
    from tokensift.sepo.mass import describe, mass_summary, save_summary
    from tokensift.sepo.score import plan_scoring, score_tokens

    config = config_from_args(ScoreConfig, args)
    if args.check:
        return print_plan(plan_scoring(config))
    result = score_tokens(config)
    print(f"scored {result.rows_scored} new pairs ({result.rows_total} in {result.output_dir}); "
          f"{result.tokens / max(result.seconds, 1e-9):.0f} tokens/s")
    summary = mass_summary(config.output_dir)
    written = save_summary(summary, config.output_dir, title="reward concentration")
    print(f"reward mass: {describe(summary)} ({', '.join(str(p) for p in written)})")
    return 0


def cmd_sepo(args) -> int:
    from tokensift.sepo.pipeline import SePOConfig, plan_pipeline, run_pipeline

    config = config_from_args(SePOConfig, args)
    if args.check:
        return print_plan(plan_pipeline(config))
    run_pipeline(config)
    return 0


def cmd_show(args) -> int:
    from tokensift.sepo.show import ShowConfig, plan_show, show_scores

    config = config_from_args(ShowConfig, args)
    if args.check:
        return print_plan(plan_show(config))
    print(f"wrote {show_scores(config)}")
    return 0


def cmd_sweep(args) -> int:
    from tokensift.sweep import SweepConfig, plan_sweep, run_sweep

    config = config_from_args(SweepConfig, args)
    if args.check:
        return print_plan(plan_sweep(config))
    run_sweep(config)
    return 0


def cmd_demo(args) -> int:
    from tokensift.demo import DemoConfig, plan_demo, run_demo

    config = config_from_args(DemoConfig, args)
    if args.check:
        return print_plan(plan_demo(config))
    run_demo(config)
    return 0


# The stages, in the order `tokensift --help` lists them: name -> (one line of help, the function that adds the
# stage's options). Only the stage being run has its options built, so `--help` and argument errors come back
# before any model library is imported (tests/test_cli_help.py).
def _train_stage(name: str, func):
    def add(p) -> None:
        from tokensift.train.config import TrainConfig

        add_config_options(p, TrainConfig, skip=("loss",) if name == "sft" else ())
        p.set_defaults(func=func)

    return add


def _config_stage(module: str, cls: str, func):
    def add(p) -> None:
        import importlib

        add_config_options(p, getattr(importlib.import_module(module), cls))
        p.set_defaults(func=func)

    return add


def _data_stage(p) -> None:
    from tokensift.data.inspect import add_inspect_parser

    add_inspect_parser(p.add_subparsers(dest="data_command", required=True, metavar="ACTION"))


def _tso_stage(p) -> None:
    from tokensift.tso.cli import add_tso_actions

    add_tso_actions(p)


def _eval_stage(p) -> None:
    from tokensift.eval.cli import add_eval_actions

    add_eval_actions(p)


def _dpo_help() -> str:
    return f"Pairwise preference training: {', '.join(pairwise_losses())}."


STAGES = {
    "data": (lambda: "Look at preference data: formats, lengths, problems.", _data_stage),
    "sft": (lambda: "Supervised fine-tuning on the chosen responses (e.g. the SePO reference model).",
            _train_stage("sft", cmd_sft)),
    "dpo": (_dpo_help, _train_stage("dpo", cmd_dpo)),
    "train": (lambda: "Train with any loss, including SePO on key tokens (loss=sepo scores=DIR).",
              _train_stage("train", cmd_train)),
    "oracle": (lambda: "Train the SePO oracle: DPO from the reference on a random fraction of the data.",
               _config_stage("tokensift.sepo.config", "OracleConfig", cmd_oracle)),
    "score": (lambda: "Score every response token with the oracle's implicit reward beta*(log pi_oracle - log pi_ref).",
              _config_stage("tokensift.sepo.config", "ScoreConfig", cmd_score)),
    "sepo": (lambda: "Run the SePO pipeline: reference SFT (optional) -> oracle -> scores -> policy.",
             _config_stage("tokensift.sepo.pipeline", "SePOConfig", cmd_sepo)),
    "sweep": (lambda: "Train every combination of a grid (e.g. k, sepo_gamma, selector on stored scores) and write one table.",
              _config_stage("tokensift.sweep", "SweepConfig", cmd_sweep)),
    "show": (lambda: "Write an HTML page colouring every token by its score, key tokens outlined.",
             _config_stage("tokensift.sepo.show", "ShowConfig", cmd_show)),
    "demo": (lambda: "SePO end to end on the default model: VADER-ranked samples, oracle, scores, policy.",
             _config_stage("tokensift.demo", "DemoConfig", cmd_demo)),
    "tso": (lambda: "TSO: model matrix, judged and human-corrected pairs, mini-batch iterative dual-clip DPO.",
            _tso_stage),
    "eval": (lambda: ("Evaluate a model: preference accuracy on held-out pairs, judged win rates of sampled answers, "
                      "KL, AlpacaEval-style raw and length-controlled win rates, paired comparisons of runs."),
             _eval_stage),
}


def build_parser(stage: str | None = "*") -> argparse.ArgumentParser:
    """The command line's parser. `stage`: the stage whose options are built ("*": every stage, as the help
    tests walk them; None: none, for `tokensift --help`). The others are listed with their one line of help."""
    parser = argparse.ArgumentParser(prog="tokensift", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"tokensift {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="Log at INFO level.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STAGE")
    for name, (text, add) in STAGES.items():
        text = text()
        p = sub.add_parser(name, help=text, description=text)
        if stage in ("*", name):
            add(p)
    return parser


def stage_of(argv: list[str]) -> str | None:
    """The stage an argument list runs: its first argument that is not an option (None when there is none)."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    from tokensift.provenance import record_command

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(stage_of(argv))
    # key=value overrides may come before, between or after --options (argparse alone takes one run of them)
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides") and not any(item.startswith("-") for item in extra):
        args.overrides = [*(args.overrides or []), *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format=LOG_FORMAT)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # transformers' and the hub's own progress bars and warnings, off, as environment settings that they read when
    # they are imported (a stage imports them only when it needs them); ours stay (progress=true).
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if "transformers" in sys.modules:  # imported already (the API, tests): the environment is read; say it now
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    record_command(argv)  # the exact command, for the model card of what this run writes
    try:
        code = args.func(args)
        if code == 0:
            from tokensift.distributed import close_process_group

            close_process_group()  # under a launcher: every process leaves together
        return code
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `tokensift ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    finally:
        record_command(None)  # a later run in this process (the Python API) was not started by this command


if __name__ == "__main__":
    sys.exit(main())
