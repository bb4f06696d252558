"""Cross-tokenizer projection of token scores (beyond the paper, which needs one shared vocabulary).

A token reward is additive over a response, so we move it through the reply's bytes: each oracle token spreads
its score evenly over the bytes of the reply it covers, and each policy token collects the score of the bytes it
covers. Every byte belongs to exactly one token of each tokenizer, so the total reward of a response is preserved,
and a word the oracle liked stays liked whatever the policy's tokenizer cuts it into.

One coordinate system: the UTF-8 bytes of the reply as written in the data, whatever the two chat templates put
around it (headers, a space before the reply, trims) and whichever pre-tokeniser cuts it. Tokens that cover no
character of the reply (the turn end, an appended EOS, template text inside the response) are structural: they
map to each other by position from the end of the response (turn end to turn end). Mass on bytes only one side
covers (spaces one template trims and the other keeps) or on structural tokens without a counterpart is not
carried.

Byte-exact spans: tokenizers report character offsets, and every byte-level piece of a multi-byte character
("漢" is three bytes, often three tokens) gets the whole character. Each token's span is narrowed to the bytes it
stands for (byte-level BPE symbols, `<0xNN>` byte-fallback pieces, "▁" for a space), walking the tokens in order,
so each byte is owned once. A phantom "▁" that a sentencepiece tokenizer puts before the first word owns no byte:
as a source its score goes to the next token, as a destination it receives nothing.
"""

from __future__ import annotations

import json
import re
import weakref
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from tokensift.data.tokenize import encode_response

BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@lru_cache(maxsize=1)
def _byte_level_alphabet() -> dict[str, int]:
    """GPT-2's printable stand-ins for the 256 byte values (what byte-level BPE vocabularies are written in)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


_byte_level: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _is_byte_level(tokenizer) -> bool:
    try:
        return _byte_level[tokenizer]
    except (KeyError, TypeError):
        backend = getattr(tokenizer, "backend_tokenizer", None)
        found = backend is not None and "ByteLevel" in json.dumps(json.loads(backend.to_str()).get("decoder"))
        try:
            _byte_level[tokenizer] = found
        except TypeError:
            pass
        return found


def token_bytes(tokenizer, token: str) -> bytes | None:
    """The bytes of text a vocabulary entry stands for (None when unknown)."""
    match = BYTE_TOKEN.fullmatch(token)
    if match:
        return bytes([int(match.group(1), 16)])
    if _is_byte_level(tokenizer):
        alphabet = _byte_level_alphabet()
        if all(c in alphabet for c in token):
            return bytes(alphabet[c] for c in token)
        return None
    return token.replace("▁", " ").encode("utf-8")


@dataclass
class ResponseSpans:
    """A response's token ids, and the part of the reply each token covers: `chars` in characters of the reply,
    `bytes` in its UTF-8 bytes (each byte owned by one token; empty for structural and phantom tokens), and
    `structural`: True for tokens outside the reply's characters (turn end, EOS, template text)."""

    ids: np.ndarray
    chars: list[tuple[int, int]]
    bytes: list[tuple[int, int]]
    structural: list[bool]


def response_spans(tokenizer, messages: list[dict], reply: str) -> ResponseSpans:
    """Ids of `reply` tokenised as training does (data/tokenize.py), with spans in the reply's coordinates."""
    encoded = encode_response(tokenizer, messages, reply)
    rendered = encoded.rendered
    (first, last), shift = rendered.reply_span, rendered.reply_start - rendered.reply_span[0]
    chars, structural = [], []
    for a, b in encoded.offsets:  # clip to the reply's characters, then move to the reply's own coordinates
        a, b = max(a, first), min(b, last)
        chars.append((a + shift, b + shift) if b > a else (0, 0))
        structural.append(b <= a)
    byte_at = np.concatenate([[0], np.cumsum([len(c.encode("utf-8")) for c in reply])]).astype(int)
    data = reply.encode("utf-8")
    spans, cursor = [], 0
    for token_id, (a, b) in zip(encoded.ids, chars):
        start, end = max(int(byte_at[a]), cursor), int(byte_at[b])
        if b <= a or start >= end:
            spans.append((start, start))
            continue
        piece = token_bytes(tokenizer, tokenizer.convert_ids_to_tokens(int(token_id)))
        if piece is not None and piece.startswith(b" ") and data[start:start + 1] != b" ":
            piece = piece.lstrip(b" ")  # a sentencepiece "▁" that stands for no character of the text
        if piece is not None and data.startswith(piece, start) and start + len(piece) <= end:
            end = start + len(piece)
        elif piece == b"":
            end = start
        spans.append((start, end))
        cursor = end
    return ResponseSpans(np.asarray(encoded.ids, dtype=np.int32), chars, spans, structural)


def project_scores(src_spans, src_scores, dst_spans, src_structural=None, dst_structural=None) -> np.ndarray:
    """Scores of destination tokens from source tokens, through spans (mass-preserving).

    src_spans / dst_spans: [(start, end)] ranges per token in one coordinate system (end exclusive; the bytes of
    the reply for `response_spans`). src_scores: one float per source token. *_structural: which tokens are
    structural (default: those with empty ranges); an empty range that is not structural is a phantom.
    """
    src_scores = np.asarray(src_scores, dtype=np.float64).copy()
    src_structural = [b <= a for a, b in src_spans] if src_structural is None else list(src_structural)
    dst_structural = [b <= a for a, b in dst_spans] if dst_structural is None else list(dst_structural)
    owners = [i for i, (a, b) in enumerate(src_spans) if b > a]
    for i, (a, b) in enumerate(src_spans):  # a phantom's score goes to the next token that owns bytes
        if b <= a and not src_structural[i] and owners:
            target = next((j for j in owners if j > i), owners[-1])
            src_scores[target] += src_scores[i]
            src_scores[i] = 0.0
    end = max([b for _, b in src_spans] + [b for _, b in dst_spans] + [0])
    per_unit = np.zeros(end + 1)
    for (a, b), score in zip(src_spans, src_scores):
        if b > a:
            per_unit[a:b] += score / (b - a)
    cumulative = np.concatenate([[0.0], np.cumsum(per_unit)])
    out = np.array([cumulative[b] - cumulative[a] if b > a else 0.0 for a, b in dst_spans])
    # structural tokens (empty spans), matched from the end: turn end to turn end
    src_special = [i for i, flag in enumerate(src_structural) if flag]
    dst_special = [i for i, flag in enumerate(dst_structural) if flag]
    for s, d in zip(reversed(src_special), reversed(dst_special)):
        out[d] = src_scores[s]
    return out.astype(np.float32)
