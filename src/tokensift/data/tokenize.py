"""Tokenise preference pairs: the prompt through the chat template, each response as its continuation plus EOS.

Why this way: a response's tokens must be exactly what the model sees after the prompt at training and at
generation time. We render the prompt with the chat template (`add_generation_prompt=True`), tokenise
`prompt_text + response`, and check that the prompt tokens are a prefix of the result; when a tokenizer
merges across the boundary the check fails and we tokenise the response on its own instead (counted in
`TokenizeReport.boundary_mismatches`, never silent). The EOS token is appended so the model learns to stop.

Tokenizers without a chat template use a fallback: each message as `"<Role>: <content>\n\n"`, then
`"Assistant:"`; the response follows after a space. It is documented, plain, and the same at generation time.

Truncation (counted and reported): prompts keep their *end* (the latest turns matter most) within
`max_prompt_length`; responses keep their *start* within `max_length - prompt_length`. A truncated response
loses its EOS.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tokensift.data.example import PreferenceExample
from tokensift.errors import UserError

@dataclass
class TokenizeSettings:
    max_length: int | None = 1024
    max_prompt_length: int | None = 512
    add_eos: bool = True

    def validate(self) -> None:
        if self.max_length is not None and self.max_length < 2:
            raise UserError(f"max_length must be at least 2 tokens, got {self.max_length}")
        if self.max_prompt_length is not None and self.max_prompt_length < 1:
            raise UserError(f"max_prompt_length must be at least 1 token, got {self.max_prompt_length}")
        if (
            self.max_length is not None
            and self.max_prompt_length is not None
            and self.max_prompt_length >= self.max_length
        ):
            raise UserError(
                f"max_prompt_length ({self.max_prompt_length}) must be smaller than max_length "
                f"({self.max_length}) so every response keeps at least one token"
            )


@dataclass
class TokenizedPair:
    """Token ids of one pair. `chosen_ids[i]` is label i of the chosen response (see data/positions.py)."""

    row: int
    prompt_ids: np.ndarray
    chosen_ids: np.ndarray
    rejected_ids: np.ndarray

    @property
    def num_tokens(self) -> int:
        return 2 * len(self.prompt_ids) + len(self.chosen_ids) + len(self.rejected_ids)


@dataclass
class TokenizeReport:
    pairs: int = 0
    prompts_truncated: int = 0
    prompt_tokens_dropped: int = 0
    responses_truncated: int = 0
    response_tokens_dropped: int = 0
    boundary_mismatches: int = 0
    prompt_lengths: list[int] = field(default_factory=list)
    response_lengths: list[int] = field(default_factory=list)

    def summary(self) -> str:
        text = (
            f"{self.pairs} pairs tokenised; {self.prompts_truncated} prompts truncated "
            f"({self.prompt_tokens_dropped} tokens dropped from their start), {self.responses_truncated} "
            f"responses truncated ({self.response_tokens_dropped} tokens dropped from their end)"
        )
        if self.boundary_mismatches:
            text += (
                f"; {self.boundary_mismatches} responses merged with the prompt when tokenised together and were "
                "tokenised on their own"
            )
        return text


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_prompt(tokenizer, messages: list[dict]) -> str:
    """The prompt text the model sees, ending where the assistant reply starts."""
    if has_chat_template(tokenizer):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    turns = "".join(f"{m['role'].capitalize()}: {m['content']}\n\n" for m in messages)
    return turns + "Assistant:"


def response_text(tokenizer, text: str) -> str:
    """Fallback-template replies start after a space ("Assistant: reply"); chat templates end in a newline."""
    if has_chat_template(tokenizer) or text.startswith((" ", "\n")):
        return text
    return " " + text


class PairTokenizer:
    """Tokenises PreferenceExamples consistently and counts every truncation."""

    def __init__(self, tokenizer, settings: TokenizeSettings | None = None):
        self.tokenizer = tokenizer
        self.settings = settings or TokenizeSettings()
        self.settings.validate()
        if self.settings.add_eos and tokenizer.eos_token_id is None:
            raise UserError("the tokenizer has no EOS token; set one (tokenizer.eos_token) or pass add_eos=false")
        # A chat template writes its own special tokens into the text; the fallback relies on the tokenizer's.
        self.add_special_tokens = not has_chat_template(tokenizer)
        self.report = TokenizeReport()

    def _encode(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, add_special_tokens=self.add_special_tokens)["input_ids"]

    def _continuation(self, prompt_ids: list[int], full_ids: list[int], response: str) -> list[int]:
        n = len(prompt_ids)
        if full_ids[:n] == prompt_ids:
            ids = full_ids[n:]
        else:
            self.report.boundary_mismatches += 1
            ids = self.tokenizer(response, add_special_tokens=False)["input_ids"]
        if self.settings.add_eos:
            ids = ids + [self.tokenizer.eos_token_id]
        return ids

    def truncate(self, prompt_ids: list[int], chosen: list[int], rejected: list[int]):
        """Apply the truncation policies to one pair's ids, counting what is dropped in `self.report`."""
        s, r = self.settings, self.report
        prompt_limit = s.max_prompt_length
        if s.max_length is not None:  # every response keeps at least one token
            prompt_limit = min(prompt_limit if prompt_limit is not None else s.max_length - 1, s.max_length - 1)
        if prompt_limit is not None and len(prompt_ids) > prompt_limit:
            r.prompts_truncated += 1
            r.prompt_tokens_dropped += len(prompt_ids) - prompt_limit
            prompt_ids = prompt_ids[-prompt_limit:]
        out = []
        for ids in (chosen, rejected):
            if s.max_length is not None and len(prompt_ids) + len(ids) > s.max_length:
                keep = s.max_length - len(prompt_ids)
                r.responses_truncated += 1
                r.response_tokens_dropped += len(ids) - keep
                ids = ids[:keep]
            out.append(ids)
        return prompt_ids, out[0], out[1]

    def tokenize_batch(self, examples: list[PreferenceExample]) -> list[TokenizedPair]:
        """Tokenise many pairs with batched tokenizer calls (the fast tokenizers parallelise a batch)."""
        prompts = [render_prompt(self.tokenizer, ex.prompt) for ex in examples]
        chosen = [response_text(self.tokenizer, ex.chosen) for ex in examples]
        rejected = [response_text(self.tokenizer, ex.rejected) for ex in examples]
        prompt_ids = self._encode(prompts)
        chosen_full = self._encode([p + c for p, c in zip(prompts, chosen)])
        rejected_full = self._encode([p + r for p, r in zip(prompts, rejected)])
        pairs = []
        for i, ex in enumerate(examples):
            if not prompt_ids[i]:
                raise UserError(f"row {ex.row}: the prompt tokenises to zero tokens")
            c = self._continuation(prompt_ids[i], chosen_full[i], chosen[i])
            r = self._continuation(prompt_ids[i], rejected_full[i], rejected[i])
            p, c, r = self.truncate(prompt_ids[i], c, r)
            self.report.pairs += 1
            self.report.prompt_lengths.append(len(p))
            self.report.response_lengths.extend((len(c), len(r)))
            pairs.append(
                TokenizedPair(
                    row=ex.row,
                    prompt_ids=np.asarray(p, dtype=np.int32),
                    chosen_ids=np.asarray(c, dtype=np.int32),
                    rejected_ids=np.asarray(r, dtype=np.int32),
                )
            )
        return pairs

    def __call__(self, example: PreferenceExample) -> TokenizedPair:
        return self.tokenize_batch([example])[0]


def tokenize_examples(tokenizer, examples, settings: TokenizeSettings | None = None, batch_size: int = 256):
    """Tokenise a list of examples; returns (pairs, report)."""
    tok = PairTokenizer(tokenizer, settings)
    pairs: list[TokenizedPair] = []
    for start in range(0, len(examples), batch_size):
        pairs.extend(tok.tokenize_batch(examples[start : start + batch_size]))
    return pairs, tok.report
