"""Cross-tokenizer projection through the reply's bytes: exact spans, one coordinate system, mass preserved.

Two tokenizers with different pre-tokenisers (GPT-2 style byte-level BPE and sentencepiece-style Metaspace with
byte fallback), with and without a chat template, on text where characters are several bytes (CJK, emoji,
a combining accent). Expected values are worked out by hand in the comments.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import build_tokenizer
from families import FAMILIES, build_family_tokenizer

from tokensift.projection import project_scores, response_spans
from tokensift.selection import Selection, selected_count

MESSAGES = [{"role": "user", "content": "Hi"}]


def tokens(tok, spans):
    return [tok.convert_ids_to_tokens(int(i)) for i in spans.ids]


def test_bytes_of_a_cjk_character_split_among_its_pieces_by_hand():
    byte_level = build_family_tokenizer(FAMILIES["llama3"])  # chat template
    metaspace = build_family_tokenizer(FAMILIES["gemma2"])
    metaspace.chat_template = None  # the fallback: "Assistant:" then a space, then the reply, then EOS
    src = response_spans(byte_level, MESSAGES, "bad 典")
    dst = response_spans(metaspace, MESSAGES, "bad 典")
    # "bad 典" is 7 bytes: b a d ' ' E5 85 B8. The byte-level tokenizer cuts b | ad | ' ' | E5 | 85 | B8 | turn end;
    # its offsets give each of the three pieces of 典 the whole character, the spans give each one byte.
    assert tokens(byte_level, src) == ["b", "ad", "Ġ", "å", "ħ", "¸", "<|eot_id|>"]
    assert src.bytes == [(0, 1), (1, 3), (3, 4), (4, 5), (5, 6), (6, 7), (7, 7)]
    assert src.structural == [False] * 6 + [True]
    # The fallback adds a space before the reply: a token outside the reply, in the same coordinates as above.
    assert tokens(metaspace, dst) == ["▁bad", "▁", "<0xE5>", "<0x85>", "<0xB8>", "<eos>"]
    assert dst.bytes == [(0, 3), (3, 4), (4, 5), (5, 6), (6, 7), (7, 7)]
    out = project_scores(src.bytes, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.5], dst.bytes, src.structural, dst.structural)
    # bad = b + ad = 1 + 2; the space 3; 典's bytes 4, 5, 6 one to one; turn end to EOS
    assert out.tolist() == pytest.approx([3.0, 3.0, 4.0, 5.0, 6.0, 0.5])
    back = project_scores(dst.bytes, out, src.bytes, dst.structural, src.structural)
    # "bad" (3.0 over 3 bytes) splits 1 : 2 between b and ad; everything else maps back one to one
    assert back.tolist() == pytest.approx([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.5])


@pytest.mark.parametrize("text", ["café 漢字!", "Ωe\u0301 典! 🚀", "naïve résumé 🙂 かな"])
@pytest.mark.parametrize("templates", ["both", "oracle only", "policy only"])
def test_mass_is_preserved_between_different_pretokenisers(text, templates):
    oracle = build_tokenizer()  # conftest's byte-level BPE: every non-ASCII byte its own piece
    policy = build_family_tokenizer(FAMILIES["gemma2"])
    if templates == "oracle only":
        policy.chat_template = None
    elif templates == "policy only":
        oracle.chat_template = None
    src, dst = response_spans(oracle, MESSAGES, text), response_spans(policy, MESSAGES, text)
    # every byte of the reply is owned by exactly one token on each side
    for spans in (src, dst):
        owned = sorted(b for a, e in spans.bytes for b in range(a, e))
        assert owned == list(range(len(text.encode("utf-8"))))
    scores = np.linspace(-1.0, 2.0, len(src.ids))  # any scores; the structural ones map turn end to turn end
    out = project_scores(src.bytes, scores, dst.bytes, src.structural, dst.structural)
    kept = scores[~np.asarray(src.structural)].sum() + scores[np.asarray(src.structural)][-1]
    assert out.sum() == pytest.approx(kept, abs=1e-5)
    # each policy token collects exactly the per-byte mass of the oracle tokens under its bytes
    per_byte = np.zeros(len(text.encode("utf-8")))
    for (a, b), s in zip(src.bytes, scores):
        if b > a:
            per_byte[a:b] += s / (b - a)
    for (a, b), value, structural in zip(dst.bytes, out, dst.structural):
        if not structural:
            assert value == pytest.approx(per_byte[a:b].sum(), abs=1e-6)


def test_a_phantom_space_gives_its_score_to_the_next_token():
    # source: a sentencepiece "▁" that stands for no character (empty span, not structural), then "ab", turn end
    src = [(0, 0), (0, 2), (2, 2)]
    out = project_scores(src, [0.25, 1.0, 0.5], [(0, 1), (1, 2), (2, 2)], [False, False, True], [False, False, True])
    assert out.tolist() == pytest.approx([0.625, 0.625, 0.5])  # (0.25 + 1.0) spread over 2 bytes; turn end to turn end
    into = project_scores([(0, 2), (2, 2)], [1.0, 0.5], [(0, 0), (0, 2), (2, 2)], [False, True], [False, False, True])
    assert into.tolist() == pytest.approx([0.0, 1.0, 0.5])  # a phantom receives nothing


def test_selection_counts_are_exact():
    # floor(0.7 * 90) is 63; float arithmetic says 62.99999999999999
    assert 0.7 * 90 < 63 and selected_count(0.7, 90) == 63
    assert Selection("per_response", 0.7, 0.7).chosen(np.arange(90.0)).sum() == 63
    assert [selected_count(k, n) for k, n in ((0.3, 10), (0.29, 100), (2 / 3, 3), (0.1, 3), (1.0, 7))] == [3, 29, 2, 1, 7]
