"""The `tokensift eval` stage: `eval pairs` (preference accuracy) and `eval generate` (judged answers, KL).

`tokensift.cli` calls `add_eval_parser(subparsers)`; options come from the config dataclasses, exactly as
for every other stage (defaults < --config YAML < --options < key=value).
"""

from __future__ import annotations

import argparse

SKIP = ("config", "overrides", "command", "eval_command", "func", "verbose")


def cmd_pairs(args) -> int:
    from tokensift.config import config_from_args
    from tokensift.eval.config import PairsEvalConfig
    from tokensift.eval.preference import evaluate_preferences
    from tokensift.eval.report import default_output, pairs_summary, write_results

    config = config_from_args(PairsEvalConfig, args, skip=SKIP)
    result = evaluate_preferences(config)
    path = write_results(result, config, config.output or default_output("pairs"))
    print(pairs_summary(result, config.beta))
    print(f"\nresults: {path}")
    return 0


def cmd_generate(args) -> int:
    from tokensift.config import config_from_args
    from tokensift.eval.config import GenerateEvalConfig
    from tokensift.eval.generation import evaluate_generation
    from tokensift.eval.report import default_output, generation_summary, write_results

    config = config_from_args(GenerateEvalConfig, args, skip=SKIP)
    result = evaluate_generation(config)
    path = write_results(result, config, config.output or default_output("generate"))
    print(generation_summary(result))
    print(f"\nresults: {path}")
    return 0


def add_eval_parser(subparsers) -> argparse.ArgumentParser:
    """Register `eval` with its actions on the stage subparsers of `tokensift`; returns the `eval` parser."""
    from tokensift.config import add_config_options
    from tokensift.eval.config import GenerateEvalConfig, PairsEvalConfig

    text = "Evaluate a model: preference accuracy on held-out pairs, judged win rates of sampled answers, KL."
    parser = subparsers.add_parser("eval", help=text, description=text)
    actions = parser.add_subparsers(dest="eval_command", required=True, metavar="ACTION")
    for name, func, cls, help_text in (
        ("pairs", cmd_pairs, PairsEvalConfig,
         "Preference accuracy and margins (DPO implicit reward, mean log-prob) on pairs, with a length breakdown."),
        ("generate", cmd_generate, GenerateEvalConfig,
         "Sample answers to prompts; judge scores, win rates (raw and length-controlled), lengths, KL to a reference."),
    ):
        action = actions.add_parser(name, help=help_text, description=help_text)
        add_config_options(action, cls)
        action.set_defaults(func=func)
    return parser
