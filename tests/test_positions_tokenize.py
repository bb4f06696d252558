"""Label-space alignment, the prefix check and truncation, checked by hand on short examples."""

import numpy as np
import pytest
import torch

from tokensift.data.example import PreferenceExample
from tokensift.data.positions import gather_indices, hidden_position, label_mask, token_position
from tokensift.data.chat_format import render_prompt
from tokensift.data.tokenize import PairTokenizer, TokenizeSettings, tokenize_examples
from tokensift.errors import UserError


def example(prompt="hi there", chosen="I love it", rejected="I hate it", row=0):
    return PreferenceExample(prompt=[{"role": "user", "content": prompt}], chosen=chosen, rejected=rejected, row=row)


def test_positions_by_hand():
    # prompt of 3 tokens [a b c], response [x y]: x is predicted by the hidden state at position 2 (c),
    # y at position 3 (x); x itself sits at position 3.
    assert hidden_position(3, 0) == 2 and token_position(3, 0) == 3
    assert hidden_position(3, 1) == 3 and token_position(3, 1) == 4
    with pytest.raises(ValueError):
        hidden_position(0, 0)
    lengths = torch.tensor([2, 0, 3])
    assert label_mask(lengths, 3).tolist() == [[True, True, False], [False, False, False], [True, True, True]]
    mask = torch.tensor([[True, False, True], [False, True, False]])
    rows, labels, hid, tok = gather_indices(torch.tensor([4, 1]), mask)
    assert rows.tolist() == [0, 0, 1] and labels.tolist() == [0, 2, 1]
    assert hid.tolist() == [3, 5, 1] and tok.tolist() == [4, 6, 2]


def test_tokenised_pair_by_hand(tokenizer):
    pair = PairTokenizer(tokenizer)(example())
    prompt_text = "<|im_start|>user\nhi there<|im_end|>\n<|im_start|>assistant\n"
    assert render_prompt(tokenizer, [{"role": "user", "content": "hi there"}]) == prompt_text
    assert pair.prompt_ids.tolist() == tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    expected_chosen = tokenizer("I love it", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert pair.chosen_ids.tolist() == expected_chosen
    # label i of the response is sequence position len(prompt)+i
    sequence = np.concatenate([pair.prompt_ids, pair.chosen_ids])
    for i, tok in enumerate(pair.chosen_ids):
        assert sequence[token_position(len(pair.prompt_ids), i)] == tok
    assert tokenizer.decode(pair.rejected_ids[:-1]) == "I hate it"


def test_prefix_mismatch_is_counted(tokenizer):
    # Simulate a tokenizer that merges the last prompt token with the first response token: the prefix check
    # must notice, count it, and fall back to tokenising the response on its own.
    tok = PairTokenizer(tokenizer)
    original = tok._encode
    prompt_len = len(original([render_prompt(tokenizer, example().prompt)])[0])

    def merged(texts):
        out = original(texts)
        return [ids[: prompt_len - 1] + [5] + ids[prompt_len + 1 :] if "love" in t else ids for ids, t in zip(out, texts)]

    tok._encode = merged
    pair = tok(example())
    assert tok.report.boundary_mismatches == 1
    assert pair.chosen_ids.tolist()[:-1] == tokenizer("I love it", add_special_tokens=False)["input_ids"]
    assert "tokenised on their own" in tok.report.summary()


def test_fallback_template_without_chat_template():
    from conftest import build_tokenizer

    tok = build_tokenizer(chat_template=None)
    pair = PairTokenizer(tok)(example(prompt="hello", chosen="Fine"))
    assert render_prompt(tok, [{"role": "user", "content": "hello"}]) == "User: hello\n\nAssistant:"
    text = tok.decode(np.concatenate([pair.prompt_ids, pair.chosen_ids]))
    assert text == "User: hello\n\nAssistant: Fine<|im_end|>"


def test_truncation_policies_and_counts(tokenizer):
    long_prompt = " ".join(["word"] * 80)
    long_reply = " ".join(["great"] * 80)
    settings = TokenizeSettings(max_length=40, max_prompt_length=16)
    pairs, report = tokenize_examples(tokenizer, [example(prompt=long_prompt, chosen=long_reply)], settings)
    full = PairTokenizer(tokenizer, TokenizeSettings(max_length=None, max_prompt_length=None))(
        example(prompt=long_prompt, chosen=long_reply)
    )
    p = pairs[0]
    assert len(p.prompt_ids) == 16
    assert p.prompt_ids.tolist() == full.prompt_ids.tolist()[-16:]  # keep-end
    assert len(p.chosen_ids) == 40 - 16
    assert p.chosen_ids.tolist() == full.chosen_ids.tolist()[:24]  # keep-start (EOS lost)
    assert p.rejected_ids.tolist() == full.rejected_ids.tolist()  # short reply untouched
    assert report.prompts_truncated == 1 and report.responses_truncated == 1
    assert report.prompt_tokens_dropped == len(full.prompt_ids) - 16
    assert report.response_tokens_dropped == len(full.chosen_ids) - 24
    assert "1 prompts truncated" in report.summary()


def test_bad_settings():
    with pytest.raises(UserError, match="must be smaller than max_length"):
        TokenizeSettings(max_length=10, max_prompt_length=10).validate()


def test_prompt_longer_than_max_length_without_prompt_limit(tokenizer):
    long_prompt = " ".join(["word"] * 40)
    settings = TokenizeSettings(max_length=25, max_prompt_length=None)
    pairs, report = tokenize_examples(tokenizer, [example(prompt=long_prompt)], settings)
    p = pairs[0]
    assert len(p.prompt_ids) == 24  # keep-end, leaving room for one response token
    assert len(p.chosen_ids) == 1 and len(p.rejected_ids) == 1
    assert len(p.prompt_ids) + len(p.chosen_ids) == 25
    full = PairTokenizer(tokenizer, TokenizeSettings(None, None))(example(prompt=long_prompt))
    assert report.response_tokens_dropped == len(full.chosen_ids) - 1 + len(full.rejected_ids) - 1
