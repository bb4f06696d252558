"""Evaluation: preference accuracy on held-out pairs, judged win rates of sampled answers, KL to a reference.

Library entry points (the CLI in eval/cli.py is a thin layer over them):
- `evaluate_preferences(PairsEvalConfig)`  accuracy and margins per pair, length breakdown
- `evaluate_generation(GenerateEvalConfig)` sampled answers: judge scores, win rates, lengths, KL
- `evaluate_winrates(WinrateConfig)`     AlpacaEval-style raw and length-controlled win rates from judged files
- `evaluate_comparison(CompareConfig)`  paired bootstrap differences between runs on the same prompts
- building blocks: `score_pairs`, `pair_margins`, `preference_metrics`, `sample_answers`, `answer_logp_sums`,
  `kl_estimate`, `judge_answers`, `win_rate_summary`, `Judged`, `raw_win_rate`, `length_controlled`,
  `fit_difficulties`, `read_judged`, `load_prompt_set`, `write_results`.
Names load on first use (as in `tokensift/__init__.py`): the command line imports eval/config.py for `--help`
without loading torch.
"""

_NAMES = {
    "read_judged": "annotations", "evaluate_comparison": "compare", "CompareConfig": "config",
    "GenerateEvalConfig": "config", "PairsEvalConfig": "config", "WinrateConfig": "config",
    "fit_difficulties": "difficulty", "evaluate_generation": "generation", "judge_answers": "judging",
    "evaluate_winrates": "leaderboard", "evaluate_preferences": "preference", "pair_margins": "preference",
    "preference_metrics": "preference", "score_pairs": "preference", "load_prompt_set": "prompts",
    "write_results": "report", "answer_logp_sums": "sampling", "kl_estimate": "sampling",
    "win_rate_summary": "stats", "Judged": "winrate", "length_controlled": "winrate", "raw_win_rate": "winrate",
}

__all__ = [
    "GenerateEvalConfig", "PairsEvalConfig", "evaluate_generation", "evaluate_preferences", "judge_answers",
    "pair_margins", "preference_metrics", "score_pairs", "load_prompt_set", "write_results", "answer_logp_sums",
    "kl_estimate", "sample_answers", "win_rate_summary", "Judged", "raw_win_rate", "length_controlled",
    "fit_difficulties", "read_judged", "WinrateConfig", "CompareConfig", "evaluate_winrates", "evaluate_comparison",
]


def __getattr__(name: str):
    import importlib

    if name == "sample_answers":
        return importlib.import_module("tokensift.generate").sample_answers
    if name not in _NAMES:
        raise AttributeError(f"module 'tokensift.eval' has no attribute {name!r}")
    return getattr(importlib.import_module(f"tokensift.eval.{_NAMES[name]}"), name)


def __dir__():
    return sorted(__all__)
