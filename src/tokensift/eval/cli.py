"""The `tokensift eval` stage: `eval pairs` (preference accuracy), `eval generate` (judged answers, KL), `eval
winrate` (AlpacaEval-style win rates from judged annotations) and `eval compare` (paired differences of runs).

`tokensift.cli` calls `add_eval_actions(parser)` for the `eval` stage; options come from the config dataclasses, exactly as
for every other stage (defaults < --config YAML < --options < key=value).
"""

from __future__ import annotations

import argparse

SKIP = ("config", "overrides", "command", "eval_command", "func", "verbose")


def _run(args, cls, evaluate, summary, action: str, positional: str | None = None, check=None):
    """Config from the command line (plain arguments into the list field `positional`), `check(config)` before the
    work, `evaluate(config)`, the JSON written, `summary(result, config)` and the JSON's path printed.
    Returns (config, result, path of the JSON, what `check` returned)."""
    from tokensift.config import config_from_args, split_positional
    from tokensift.eval.report import check_results_file, default_output, write_results

    if positional:
        split_positional(args, positional)
    config = config_from_args(cls, args, skip=SKIP)
    output = config.output or default_output(action)
    if args.check:
        from tokensift.eval.plan import plan_eval
        from tokensift.preflight import print_plan

        print_plan(plan_eval(action, config, output))
        return config, None, None, None
    check_results_file(config, output)  # a results file of other settings: refused now, not after the work
    extra = check(config) if check else None
    result = evaluate(config)
    path = write_results(result, config, output)
    print(summary(result, config))
    print(f"\nresults: {path}")
    return config, result, path, extra


def cmd_pairs(args) -> int:
    from tokensift.eval.config import PairsEvalConfig
    from tokensift.eval.preference import evaluate_preferences
    from tokensift.eval.report import pairs_summary

    _run(args, PairsEvalConfig, evaluate_preferences, lambda r, c: pairs_summary(r, c.beta), "pairs")
    return 0


def cmd_generate(args) -> int:
    from tokensift.eval.config import GenerateEvalConfig
    from tokensift.eval.generation import evaluate_generation
    from tokensift.eval.report import generation_summary

    _run(args, GenerateEvalConfig, evaluate_generation, lambda r, c: generation_summary(r), "generate")
    return 0


def cmd_winrate(args) -> int:
    from tokensift.eval.config import WinrateConfig
    from tokensift.eval.leaderboard import evaluate_winrates, winrate_table

    _run(args, WinrateConfig, evaluate_winrates, lambda r, c: winrate_table(r), "winrate", "files")
    return 0


def _plot_target(config) -> tuple[str | None, str | None]:
    """(where the plot goes: a path, "auto" or None; a note to print), checked before the bootstrap runs."""
    from tokensift.errors import UserError

    plot = None if config.plot.lower() in ("none", "false", "") else config.plot
    if plot is None:
        return None, None
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        if plot != "auto":
            raise UserError("plot= needs matplotlib: pip install 'tokensift[plots]' (or plot=none)") from None
        return None, "no plot: matplotlib is not installed (pip install 'tokensift[plots]')"
    return plot, None


def cmd_compare(args) -> int:
    from pathlib import Path

    from tokensift.errors import UserError
    from tokensift.eval.compare import evaluate_comparison, markdown_table, plot_differences
    from tokensift.eval.config import CompareConfig

    def summary(result, config):
        text = markdown_table(result)
        if config.markdown:
            try:
                Path(config.markdown).write_text(text + "\n", encoding="utf-8")
            except OSError as exc:
                raise UserError(f"cannot write the Markdown table to {config.markdown}: {exc.strerror}") from None
        return text

    _, result, path, extra = _run(args, CompareConfig, evaluate_comparison, summary, "compare", "runs",
                                  _plot_target)
    if result is None:  # --check
        return 0
    plot, note = extra
    if note:
        print(f"note: {note}")
    if plot is not None:
        plot = str(path.with_suffix(".png")) if plot == "auto" else plot
        plot_differences(result, plot)
        print(f"plot: {plot}")
    return 0


def add_eval_actions(parser: argparse.ArgumentParser) -> None:
    """Add the actions of `tokensift eval` (pairs, generate, winrate, compare) to its parser (tokensift/cli.py
    makes it)."""
    from tokensift.config import add_config_options
    from tokensift.eval.config import CompareConfig, GenerateEvalConfig, PairsEvalConfig, WinrateConfig

    actions = parser.add_subparsers(dest="eval_command", required=True, metavar="ACTION")
    for name, func, cls, positional, help_text in (
        ("pairs", cmd_pairs, PairsEvalConfig, None,
         "Preference accuracy and margins (DPO implicit reward, mean log-prob) on pairs, with a length breakdown."),
        ("generate", cmd_generate, GenerateEvalConfig, None,
         "Sample answers to prompts; judge scores, win rates (raw and length-controlled), lengths, KL to a reference."),
        ("winrate", cmd_winrate, WinrateConfig, "FILE",
         "Raw and length-controlled (AlpacaEval 2 GLM) win rates with standard errors from judged annotations: "
         "AlpacaEval annotations, eval generate results, model-matrix files."),
        ("compare", cmd_compare, CompareConfig, "RUN",
         "Differences between runs on the same prompts (win rate, LC win rate, judge score, length) with paired "
         "bootstrap intervals over prompts; Markdown, JSON and a plot."),
    ):
        action = actions.add_parser(name, help=help_text, description=help_text)
        add_config_options(action, cls, positional=positional)
        action.set_defaults(func=func)
