"""Evaluation: preference accuracy on held-out pairs, judged win rates of sampled answers, KL to a reference.

Library entry points (the CLI in eval/cli.py is a thin layer over them):
- `evaluate_preferences(PairsEvalConfig)`  accuracy and margins per pair, length breakdown
- `evaluate_generation(GenerateEvalConfig)` sampled answers: judge scores, win rates, lengths, KL
- `evaluate_winrates(WinrateConfig)`     AlpacaEval-style raw and length-controlled win rates from judged files
- `evaluate_comparison(CompareConfig)`  paired bootstrap differences between runs on the same prompts
- building blocks: `score_pairs`, `pair_margins`, `preference_metrics`, `sample_answers`, `answer_logp_sums`,
  `kl_estimate`, `judge_answers`, `win_rate_summary`, `Judged`, `raw_win_rate`, `length_controlled`,
  `fit_difficulties`, `read_judged`, `load_prompt_set`, `write_results`.
Importing this package loads torch; the CLI imports it only when an eval action runs.
"""

from tokensift.eval.annotations import read_judged
from tokensift.eval.compare import evaluate_comparison
from tokensift.eval.config import CompareConfig, GenerateEvalConfig, PairsEvalConfig, WinrateConfig
from tokensift.eval.difficulty import fit_difficulties
from tokensift.eval.generation import evaluate_generation
from tokensift.eval.judging import judge_answers
from tokensift.eval.leaderboard import evaluate_winrates
from tokensift.eval.preference import evaluate_preferences, pair_margins, preference_metrics, score_pairs
from tokensift.eval.prompts import load_prompt_set
from tokensift.eval.report import write_results
from tokensift.eval.sampling import answer_logp_sums, kl_estimate
from tokensift.generate import sample_answers
from tokensift.eval.stats import win_rate_summary
from tokensift.eval.winrate import Judged, length_controlled, raw_win_rate

__all__ = [
    "GenerateEvalConfig", "PairsEvalConfig", "evaluate_generation", "evaluate_preferences", "judge_answers",
    "pair_margins", "preference_metrics", "score_pairs", "load_prompt_set", "write_results", "answer_logp_sums",
    "kl_estimate", "sample_answers", "win_rate_summary", "Judged", "raw_win_rate", "length_controlled",
    "fit_difficulties", "read_judged", "WinrateConfig", "CompareConfig", "evaluate_winrates", "evaluate_comparison",
]
