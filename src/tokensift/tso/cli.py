"""`tokensift tso ACTION`: the TSO stage's command line (hooked into tokensift/cli.py by `add_tso_actions`).

    tokensift tso run      --config configs/tso-quickstart.yaml   # everything: matrix, rounds, evaluation
    tokensift tso generate --config ...                           # only the fixed cells of the model matrix
    tokensift tso review   --config ... [--review-file FILE.csv]  # pairs for people to decide, with the reason
    tokensift tso review   --config ... --serve                   # the same pairs as a local web page

All three read the same config (TSOConfig; defaults < the settings the run in output_dir recorded when it started <
--config file < --options < key=value overrides), so they always agree on the run folder, the prompts and the
generators, and `tokensift tso review output_dir=runs/tso` needs none of the run's overrides again. `run` exits with status 3 when it stops
for human review (unresolved=stop); rerunning it continues where it stopped.
"""

from __future__ import annotations

import argparse
import sys

ACTION_DEST = "tso_action"
SKIP = ("config", "overrides", "command", "func", "verbose", ACTION_DEST)
REVIEW_EXIT = 3


def load(cls, args, need_run: bool = False):
    """The action's config: defaults < the settings the run in output_dir recorded < --config < --options <
    key=value, so `tso review output_dir=runs/tso` needs none of the run's overrides again. need_run: the action
    reads a run's rounds (review): say so when output_dir holds none, before any other complaint."""
    from tokensift.config import config_from_args
    from tokensift.errors import UserError
    from tokensift.tso.config import recorded_run_settings

    def base(values: dict) -> dict:
        folder = values.get("output_dir") or cls.__dataclass_fields__["output_dir"].default
        recorded = recorded_run_settings(folder)
        if need_run and not recorded:
            raise UserError(f"{folder} holds no TSO run yet; start one with `tokensift tso run` first")
        return recorded

    return config_from_args(cls, args, skip=SKIP, base=base)


def check(args, config, action: str) -> int | None:
    """`--check`: print the plan and return the exit status; None to go on."""
    if not args.check:
        return None
    from tokensift.preflight import print_plan
    from tokensift.tso.plan import plan_tso

    return print_plan(plan_tso(config, action))


def cmd_run(args) -> int:
    from tokensift.tso.config import TSOConfig
    from tokensift.tso.loop import ReviewNeeded, run_tso

    config = load(TSOConfig, args)
    if (code := check(args, config, "run")) is not None:
        return code
    try:
        run_tso(config)
    except ReviewNeeded as stop:
        print(f"[tso] stopped for review: {stop}", file=sys.stderr)
        return REVIEW_EXIT
    return 0


def cmd_generate(args) -> int:
    from tokensift.tso.config import TSOConfig
    from tokensift.tso.loop import TSORun

    config = load(TSOConfig, args)
    if (code := check(args, config, "generate")) is not None:
        return code
    run = TSORun(config)
    print(run.describe())
    run.begin()
    cells = run.fixed_cells()
    print(f"[tso] matrix: {len(cells)} fixed cells for {len(run.prompts.train_ids)} training prompts in "
          f"{run.out / 'matrix'} (the policy column is generated per round by `tokensift tso run`)")
    return 0


def cmd_review(args) -> int:
    from tokensift.tso.config import ReviewConfig
    from tokensift.tso.loop import export_review

    config = load(ReviewConfig, args, need_run=True)
    if (code := check(args, config, "review")) is not None:
        return code
    if config.serve:
        from tokensift.tso.review_server import serve

        return serve(config)
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
         "and ambiguous verdicts, an audit sample) in the decisions-file format, or with --serve as a local web "
         "page that writes the decisions file."),
    ):
        parser = actions.add_parser(name, help=help_text, description=help_text)
        add_config_options(parser, cls)
        parser.set_defaults(func=func)
