"""Tokenise preference pairs exactly as the model's chat template renders them (data/chat_format.py).

Prompt ids are the template's rendering with the generation prompt; response ids are what the template renders
after it for the reply, through the turn-end marker (`<|im_end|>`, `<|eot_id|>`, `<end_of_turn>` ...), so labels
end where generation stops. We tokenise `prompt_text + response_text` and check that the prompt's tokens are a
prefix of the result; when a tokenizer merges across the boundary the check fails and we tokenise the response
on its own instead (counted in `TokenizeReport.boundary_mismatches`, never silent). Templates that render the
prompt differently once a reply follows are counted in `template_mismatches` (see chat_format.py).

Tokenizers without a chat template use a fallback: each message as `"<Role>: <content>\n\n"`, then
`"Assistant:"`; the response follows after a space and ends with EOS. It is documented, plain, and the same at
generation time.

Truncation (counted and reported): prompts keep their *end* (the latest turns matter most) within
`max_prompt_length`; responses keep their *start* within `max_length - prompt_length`. A truncated response
loses its turn end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tokensift.data.chat_format import ChatFormat, RenderedResponse
from tokensift.data.example import PreferenceExample
from tokensift.errors import UserError

@dataclass
class TokenizeSettings:
    max_length: int | None = 1024
    max_prompt_length: int | None = 512

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
    target_margin: float | None = None  # the pair's own target margin, from TrainConfig.margin_column
    label: float | None = None  # unpaired rows (KTO, BCO): 1.0 desirable, 0.0 undesirable (data/unpaired.py)

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
    template_mismatches: int = 0
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
        if self.template_mismatches:
            text += (
                f"; {self.template_mismatches} responses: the chat template renders the prompt differently once "
                "the reply follows; the reply was taken after the last generation header"
            )
        return text


def continuation(tokenizer, prompt_ids: list[int], full_ids: list[int], response: RenderedResponse,
                 report: TokenizeReport, full_offsets: list | None = None, prompt_chars: int = 0):
    """Response ids from the encoding of prompt + response text: (ids, character offsets in `response.text`).

    The ids after the prompt's when the prompt's ids are a prefix; otherwise the response tokenised on its own
    (counted in `report`). An EOS is appended when the response has no turn-end marker. Offsets are only
    computed when `full_offsets` (of the prompt + response encoding, `prompt_chars` characters of prompt) is given;
    an appended EOS covers no character.
    """
    n = len(prompt_ids)
    offsets = None
    if full_ids[:n] == prompt_ids:
        ids = list(full_ids[n:])
        if full_offsets is not None:
            offsets = [(max(a - prompt_chars, 0), max(b - prompt_chars, 0)) for a, b in full_offsets[n:]]
    else:
        report.boundary_mismatches += 1
        alone = tokenizer(response.text, add_special_tokens=False, return_offsets_mapping=full_offsets is not None)
        ids = list(alone["input_ids"])
        offsets = [tuple(o) for o in alone["offset_mapping"]] if full_offsets is not None else None
    if not response.matched:
        report.template_mismatches += 1
    if response.append_eos:
        if tokenizer.eos_token_id is None:
            raise UserError("the tokenizer has no EOS token to end responses with; set tokenizer.eos_token")
        ids.append(tokenizer.eos_token_id)
        if offsets is not None:
            offsets.append((len(response.text), len(response.text)))
    return ids, offsets


@dataclass
class EncodedResponse:
    """One response tokenised exactly as PairTokenizer does, with where each token sits in `rendered.text`."""

    ids: list[int]
    offsets: list[tuple[int, int]]
    rendered: RenderedResponse


def encode_response(tokenizer, messages: list[dict], reply: str) -> EncodedResponse:
    fmt = ChatFormat.of(tokenizer)
    prompt = fmt.prompt(messages)
    rendered = fmt.response(messages, reply, prompt)
    prompt_ids = tokenizer(prompt, add_special_tokens=fmt.add_special_tokens)["input_ids"]
    full = tokenizer(prompt + rendered.text, add_special_tokens=fmt.add_special_tokens, return_offsets_mapping=True)
    ids, offsets = continuation(tokenizer, prompt_ids, full["input_ids"], rendered, TokenizeReport(),
                                full["offset_mapping"], len(prompt))
    return EncodedResponse(ids, offsets, rendered)


class PairTokenizer:
    """Tokenises PreferenceExamples consistently and counts every truncation."""

    def __init__(self, tokenizer, settings: TokenizeSettings | None = None):
        self.tokenizer = tokenizer
        self.settings = settings or TokenizeSettings()
        self.settings.validate()
        self.format = ChatFormat.of(tokenizer)
        self.report = TokenizeReport()

    def _encode(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, add_special_tokens=self.format.add_special_tokens)["input_ids"]

    def _continuation(self, prompt_ids: list[int], full_ids: list[int], response: RenderedResponse) -> list[int]:
        return continuation(self.tokenizer, prompt_ids, full_ids, response, self.report)[0]

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
        fmt = self.format
        prompts, chosen, rejected = [], [], []
        for ex in examples:
            try:
                prompts.append(fmt.prompt(ex.prompt))
                chosen.append(fmt.response(ex.prompt, ex.chosen, prompts[-1]))
                rejected.append(fmt.response(ex.prompt, ex.rejected, prompts[-1]))
            except UserError as exc:
                raise UserError(f"row {ex.row}: {exc}") from None
        prompt_ids = self._encode(prompts)
        chosen_full = self._encode([p + c.text for p, c in zip(prompts, chosen)])
        rejected_full = self._encode([p + r.text for p, r in zip(prompts, rejected)])
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
