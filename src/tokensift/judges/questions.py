"""The pairwise questions the LLM judges (local and HTTP) ask, by name or as a custom template.

- "default": our short question (`PAIRWISE_TEMPLATE`), answer "A" or "B".
- "alpaca_eval": AlpacaEval 2's weighted GPT-4-Turbo judge question (tatsu-lab/alpaca_eval,
  `evaluators_configs/alpaca_eval_clf_gpt4_turbo/alpaca_eval_clf.txt`, Apache-2.0; the wording is kept because a
  judge's numbers depend on it): a system message plus the instruction and the two outputs, answered with the
  model identifier "m" (first output) or "M" (second). AlpacaEval reads the continuous preference from the log
  probabilities of those two tokens (`logprob_parser`), and so do our judges: P(first) = P(m) / (P(m) + P(M)),
  asked in both orders and averaged (AlpacaEval asks one randomly chosen order).

A custom template is a format string with {conversation}, {response_a} and {response_b}, answered with A or B.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokensift.judges.base import PAIRWISE_TEMPLATE, check_template, format_conversation, template_id

ALPACA_EVAL_SYSTEM = (
    "You are a highly efficient assistant, who evaluates and selects the best large language model (LLMs) based on "
    "the quality of their responses to a given instruction. This process will be used to create a leaderboard "
    "reflecting the most accurate and human-preferred answers."
)
ALPACA_EVAL_USER = (
    "I require a leaderboard for various large language models. I'll provide you with prompts given to these "
    "models and their corresponding outputs. Your task is to assess these responses, and select the model that "
    "produces the best output from a human perspective.\n\n"
    "## Instruction\n\n"
    "{{\n"
    '    "instruction": """{conversation}""",\n'
    "}}\n\n"
    "## Model Outputs\n\n"
    "Here are the unordered outputs from the models. Each output is associated with a specific model, identified "
    "by a unique model identifier.\n\n"
    "{{\n"
    "    {{\n"
    '        "model_identifier": "m",\n'
    '        "output": """{response_a}"""\n'
    "    }},\n"
    "    {{\n"
    '        "model_identifier": "M",\n'
    '        "output": """{response_b}"""\n'
    "    }}\n"
    "}}\n\n"
    "## Task\n\n"
    "Evaluate the models based on the quality and relevance of their outputs, and select the model that generated "
    "the best output. Answer by providing the model identifier of the best model. We will use your output as the "
    "name of the best model, so make sure your output only contains one of the following model identifiers and "
    "nothing else (no quotes, no spaces, no new lines, ...): m or M.\n\n"
    "## Best Model Identifier"
)


@dataclass(frozen=True)
class PairwiseQuestion:
    """user: format string with {conversation}, {response_a}, {response_b}; system: an optional system message;
    letters: the answer tokens meaning "response A is better" and "response B is better"; bare_instruction: a
    single user message goes in as its text (AlpacaEval's instruction), not as a "User: ..." transcript."""

    user: str
    system: str | None = None
    letters: tuple[str, str] = ("A", "B")
    bare_instruction: bool = False

    @property
    def id(self) -> str:
        """Part of judge names and so of cache keys: changes whenever the question does."""
        if self.system is None and self.letters == ("A", "B") and not self.bare_instruction:
            return template_id(self.user)  # the default's id as before presets existed (cached verdicts stay valid)
        return template_id("\x00".join([self.system or "", self.user, *self.letters, str(self.bare_instruction)]))

    def messages(self, prompt: list[dict], response_a: str, response_b: str) -> list[dict]:
        conversation = format_conversation(prompt)
        if self.bare_instruction and len(prompt) == 1 and prompt[0].get("role") == "user":
            conversation = str(prompt[0]["content"])
        user = self.user.format(conversation=conversation, response_a=response_a, response_b=response_b)
        system = [{"role": "system", "content": self.system}] if self.system else []
        return system + [{"role": "user", "content": user}]


QUESTIONS = {
    "default": PairwiseQuestion(PAIRWISE_TEMPLATE),
    "alpaca_eval": PairwiseQuestion(ALPACA_EVAL_USER, ALPACA_EVAL_SYSTEM, ("m", "M"), bare_instruction=True),
}


def pairwise_question_for(template: str) -> PairwiseQuestion:
    """A preset by name, else a custom template (checked for its three fields, answered with A or B)."""
    if template in QUESTIONS:
        return QUESTIONS[template]
    return PairwiseQuestion(check_template(template))
