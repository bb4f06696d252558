"""Cross-tokenizer projection of token scores (beyond the paper, which needs one shared vocabulary).

A token reward is additive over a response, so we move it through the characters: each oracle token spreads
its score evenly over the characters it covers, and each policy token collects the score of the characters
it covers. The total reward of a response is preserved, and a word the oracle liked stays liked whatever
the policy's tokenizer cuts it into. Tokens without characters (EOS and other specials) map to each other
by position at the end of the response.
"""

from __future__ import annotations

import numpy as np

from tokensift.data.tokenize import render_prompt, response_text


def continuation_offsets(tokenizer, messages: list[dict], response: str, add_eos: bool = True):
    """(ids, character spans relative to the response) of a response tokenised as its prompt's continuation.

    Mirrors data/tokenize.py: prompt through the chat template, response appended, EOS added with an empty
    span at the end of the text.
    """
    prompt = render_prompt(tokenizer, messages)
    text = response_text(tokenizer, response)
    special = not getattr(tokenizer, "chat_template", None)
    prompt_len = len(tokenizer(prompt, add_special_tokens=special)["input_ids"])
    full = tokenizer(prompt + text, add_special_tokens=special, return_offsets_mapping=True)
    ids = list(full["input_ids"][prompt_len:])
    start = len(prompt)
    spans = [(max(a - start, 0), max(b - start, 0)) for a, b in full["offset_mapping"][prompt_len:]]
    if add_eos:
        ids.append(tokenizer.eos_token_id)
        spans.append((len(text), len(text)))
    return np.asarray(ids, dtype=np.int32), spans


def project_scores(src_spans, src_scores, dst_spans) -> np.ndarray:
    """Scores of destination tokens from source tokens, through character spans (mass-preserving).

    src_spans / dst_spans: [(start, end)] character ranges per token (end exclusive); empty ranges are
    special tokens. src_scores: one float per source token.
    """
    src_scores = np.asarray(src_scores, dtype=np.float64)
    end = max([b for _, b in src_spans] + [b for _, b in dst_spans] + [0])
    per_char = np.zeros(end + 1)
    for (a, b), score in zip(src_spans, src_scores):
        if b > a:
            per_char[a:b] += score / (b - a)
    cumulative = np.concatenate([[0.0], np.cumsum(per_char)])
    out = np.array([cumulative[b] - cumulative[a] if b > a else 0.0 for a, b in dst_spans])
    # special tokens (empty spans), matched from the end: EOS to EOS
    src_special = [i for i, (a, b) in enumerate(src_spans) if b <= a]
    dst_special = [i for i, (a, b) in enumerate(dst_spans) if b <= a]
    for s, d in zip(reversed(src_special), reversed(dst_special)):
        out[d] = src_scores[s]
    return out.astype(np.float32)
