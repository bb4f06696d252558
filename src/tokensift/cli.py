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

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


# ---------------------------------------------------------------------------------------------------- stages
def run_train(args, forced_loss: str | None = None) -> int:
    from tokensift.sepo.policy import train_run
    from tokensift.train.config import TrainConfig

    config = config_from_args(TrainConfig, args)
    if forced_loss:
        config.loss = forced_loss
        config.validate()
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

    loss = config_from_args(TrainConfig, args).loss  # --loss, the YAML file or a loss=... override
    if loss not in pairwise_losses():
        raise UserError(f"`tokensift dpo` trains pairwise losses; use `tokensift train loss={loss}` instead")
    return run_train(args)


def pairwise_losses() -> list[str]:
    """What `tokensift dpo` trains: pairwise losses on whole responses (no token selection)."""
    from tokensift.losses import LOSSES

    return [name for name, spec in LOSSES.items() if spec.pairwise and spec.selection == "none"]


def cmd_train(args) -> int:
    return run_train(args)


def cmd_oracle(args) -> int:
    from tokensift.sepo.config import OracleConfig
    from tokensift.sepo.oracle import train_oracle

    print_result(train_oracle(config_from_args(OracleConfig, args)))
    return 0


def cmd_score(args) -> int:
    from tokensift.sepo.config import ScoreConfig
    from tokensift.sepo.mass import describe, mass_summary, save_summary
    from tokensift.sepo.score import score_tokens

    config = config_from_args(ScoreConfig, args)
    result = score_tokens(config)
    print(f"scored {result.rows_scored} new pairs ({result.rows_total} in {result.output_dir}); "
          f"{result.tokens / max(result.seconds, 1e-9):.0f} tokens/s")
    summary = mass_summary(config.output_dir)
    written = save_summary(summary, config.output_dir, title="reward concentration")
    print(f"reward mass: {describe(summary)} ({', '.join(str(p) for p in written)})")
    return 0


def cmd_sepo(args) -> int:
    from tokensift.sepo.pipeline import SePOConfig, run_pipeline

    run_pipeline(config_from_args(SePOConfig, args))
    return 0


def cmd_show(args) -> int:
    from tokensift.sepo.show import ShowConfig, show_scores

    print(f"wrote {show_scores(config_from_args(ShowConfig, args))}")
    return 0


def cmd_sweep(args) -> int:
    from tokensift.sweep import SweepConfig, run_sweep

    run_sweep(config_from_args(SweepConfig, args))
    return 0


def cmd_demo(args) -> int:
    from tokensift.demo import DemoConfig, run_demo

    run_demo(config_from_args(DemoConfig, args))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from tokensift.data.inspect import add_inspect_parser
    from tokensift.train.config import TrainConfig

    parser = argparse.ArgumentParser(prog="tokensift", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"tokensift {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="Log at INFO level.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STAGE")

    data = sub.add_parser("data", help="Look at preference data: formats, lengths, problems.")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    add_inspect_parser(data_sub)

    for name, func, text in (
        ("sft", cmd_sft, "Supervised fine-tuning on the chosen responses (e.g. the SePO reference model)."),
        ("dpo", cmd_dpo, f"Pairwise preference training: {', '.join(pairwise_losses())}."),
        ("train", cmd_train, "Train with any loss, including SePO on key tokens (loss=sepo scores=DIR)."),
    ):
        p = sub.add_parser(name, help=text, description=text)
        add_config_options(p, TrainConfig, skip=("loss",) if name == "sft" else ())
        p.set_defaults(func=func)

    from tokensift.sepo.config import OracleConfig, ScoreConfig
    from tokensift.sepo.pipeline import SePOConfig
    from tokensift.demo import DemoConfig
    from tokensift.sepo.show import ShowConfig
    from tokensift.sweep import SweepConfig

    for name, func, cls, text in (
        ("oracle", cmd_oracle, OracleConfig, "Train the SePO oracle: DPO from the reference on a random fraction of the data."),
        ("score", cmd_score, ScoreConfig, "Score every response token with the oracle's implicit reward beta*(log pi_oracle - log pi_ref)."),
        ("sepo", cmd_sepo, SePOConfig, "Run the SePO pipeline: reference SFT (optional) -> oracle -> scores -> policy."),
        ("sweep", cmd_sweep, SweepConfig, "Train every combination of a grid (e.g. k, sepo_gamma, selector on stored scores) and write one table."),
        ("show", cmd_show, ShowConfig, "Write an HTML page colouring every token by its score, key tokens outlined."),
        ("demo", cmd_demo, DemoConfig, "SePO end to end on the default model: VADER-ranked samples, oracle, scores, policy."),
    ):
        p = sub.add_parser(name, help=text, description=text)
        add_config_options(p, cls)
        p.set_defaults(func=func)

    from tokensift.eval.cli import add_eval_parser
    from tokensift.tso.cli import add_tso_parser

    add_tso_parser(sub)
    add_eval_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from tokensift.provenance import record_command

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    # key=value overrides may come before, between or after --options (argparse alone takes one run of them)
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides") and not any(item.startswith("-") for item in extra):
        args.overrides = [*(args.overrides or []), *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format=LOG_FORMAT)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass
    record_command(argv)  # the exact command, for the model card of what this run writes
    try:
        return args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        record_command(None)  # a later run in this process (the Python API) was not started by this command


if __name__ == "__main__":
    sys.exit(main())
