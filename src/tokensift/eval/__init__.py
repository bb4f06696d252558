"""Evaluation: preference accuracy on held-out pairs, judged win rates of sampled answers, KL to a reference.

Library entry points (the CLI in eval/cli.py is a thin layer over them):
- `evaluate_preferences(PairsEvalConfig)`  accuracy and margins per pair, length breakdown
- `evaluate_generation(GenerateEvalConfig)` sampled answers: judge scores, win rates, lengths, KL
- building blocks: `score_pairs`, `pair_margins`, `preference_metrics`, `sample_answers`, `answer_logp_sums`,
  `kl_estimate`, `judge_answers`, `win_rate_summary`, `length_controlled_win_rate`, `logistic_fit`,
  `load_prompt_set`, `write_results`.
Importing this package loads torch; the CLI imports it only when an eval action runs.
"""

from tokensift.eval.config import GenerateEvalConfig, PairsEvalConfig
from tokensift.eval.generation import evaluate_generation
from tokensift.eval.judging import judge_answers
from tokensift.eval.preference import evaluate_preferences, pair_margins, preference_metrics, score_pairs
from tokensift.eval.prompts import load_prompt_set
from tokensift.eval.report import write_results
from tokensift.eval.sampling import answer_logp_sums, kl_estimate
from tokensift.generate import sample_answers
from tokensift.eval.stats import length_controlled_win_rate, logistic_fit, win_rate_summary

__all__ = [
    "GenerateEvalConfig", "PairsEvalConfig", "evaluate_generation", "evaluate_preferences", "judge_answers",
    "pair_margins", "preference_metrics", "score_pairs", "load_prompt_set", "write_results", "answer_logp_sums",
    "kl_estimate", "sample_answers", "length_controlled_win_rate", "logistic_fit", "win_rate_summary",
]
