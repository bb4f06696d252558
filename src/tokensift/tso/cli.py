"""`tokensift tso ACTION`: the TSO stage's command line (hooked into tokensift/cli.py by `add_tso_actions`).

    tokensift tso run      --config configs/tso-quickstart.yaml   # everything: matrix, rounds, evaluation
    tokensift tso generate --config ...                           # only the fixed cells of the model matrix
    tokensift tso review   --config ... [--review-file FILE.csv]  # pairs for people to decide, with the reason

All three read the same config (TSOConfig; defaults < --config file < --options < key=value overrides), so
they always agree on the run folder, the prompts and the generators. `run` exits with status 3 when it stops
for human review (unresolved=stop); rerunning it continues where it stopped.
"""

from __future__ import annotations

import argparse
import sys

ACTION_DEST = "tso_action"
SKIP = ("config", "overrides", "command", "func", "verbose", ACTION_DEST)
REVIEW_EXIT = 3


def cmd_run(args) -> int:
    from tokensift.config import config_from_args
    from tokensift.tso.config import TSOConfig
    from tokensift.tso.loop import ReviewNeeded, run_tso

    config = config_from_args(TSOConfig, args, skip=SKIP)
    try:
        run_tso(config)
    except ReviewNeeded as stop:
        print(f"[tso] stopped for review: {stop}", file=sys.stderr)
        return REVIEW_EXIT
    return 0


def cmd_generate(args) -> int:
    from tokensift.config import config_from_args
    from tokensift.tso.config import TSOConfig
    from tokensift.tso.loop import TSORun

    config = config_from_args(TSOConfig, args, skip=SKIP)
    run = TSORun(config)
    print(run.describe())
    run.begin()
    cells = run.fixed_cells()
    print(f"[tso] matrix: {len(cells)} fixed cells for {len(run.prompts.train_ids)} training prompts in "
          f"{run.out / 'matrix'} (the policy column is generated per round by `tokensift tso run`)")
    return 0


def cmd_review(args) -> int:
    from tokensift.config import config_from_args
    from tokensift.tso.config import ReviewConfig
    from tokensift.tso.loop import export_review

    config = config_from_args(ReviewConfig, args, skip=SKIP)
    path, count = export_review(config, config.review_file, config.include_decided)
    print(f"[tso] {count} pairs for review written to {path} (review_reason: disagreement, inconsistent, ambiguous "
          f"or audit); fill in 'decision' (keep, flip or drop), then rerun with decisions={path}")
    return 0


def add_tso_actions(tso: argparse.ArgumentParser) -> None:
    """Add the actions of `tokensift tso` (run, generate, review) to its parser (tokensift/cli.py makes it)."""
    from tokensift.config import add_config_options
    from tokensift.tso.config import ReviewConfig, TSOConfig

    actions = tso.add_subparsers(dest=ACTION_DEST, required=True, metavar="ACTION")
    for name, func, cls, help_text in (
        ("run", cmd_run, TSOConfig, "Run everything: matrix, K rounds (generate, judge, correct, train), evaluation."),
        ("generate", cmd_generate, TSOConfig, "Generate the fixed cells of the model matrix (resumable)."),
        ("review", cmd_review, ReviewConfig, "Export the pairs for human review (confident disagreements, inconsistent "
         "and ambiguous verdicts, an audit sample) in the decisions-file format."),
    ):
        parser = actions.add_parser(name, help=help_text, description=help_text)
        add_config_options(parser, cls)
        parser.set_defaults(func=func)
