"""The chat format's rules on templates that are not simple: checked by hand on short renderings."""

from __future__ import annotations

import pytest
from conftest import build_tokenizer
from families import FAMILIES, build_family_tokenizer

from tokensift.data.chat_format import ChatFormat
from tokensift.data.example import PreferenceExample
from tokensift.data.tokenize import PairTokenizer, TokenizeSettings
from tokensift.errors import UserError

PROMPT = [{"role": "user", "content": "hi there"}]


def example(chosen="I love it", rejected="I hate it"):
    return PreferenceExample(prompt=PROMPT, chosen=chosen, rejected=rejected, row=7)


def test_turn_end_and_what_follows_it():
    phi3 = ChatFormat.of(build_family_tokenizer(FAMILIES["phi3"]))
    # Phi-3's template ends a turn with "<|end|>\n" and appends EOS after a finished conversation
    assert phi3.after_reply == "<|end|>\n<|endoftext|>" and phi3.turn_end == "<|end|>"
    response = phi3.response(PROMPT, "Fine.")
    assert response.text == "Fine.<|end|>" and not response.append_eos
    llama2 = ChatFormat.of(build_family_tokenizer(FAMILIES["llama2"]))
    # Llama-2 strips the reply and puts a space on each side of it; the space before </s> belongs to the response
    response = llama2.response(PROMPT, "  Fine.  ")
    assert response.text == " Fine. </s>" and response.reply_span == (1, 6) and response.reply_start == 2
    tokenizer = build_family_tokenizer(FAMILIES["llama3"])
    assert ChatFormat.of(tokenizer).stop_ids == [tokenizer.convert_tokens_to_ids("<|eot_id|>"),
                                                  tokenizer.eos_token_id]


def test_a_template_that_renders_the_prompt_differently_once_a_reply_follows():
    tokenizer = build_tokenizer()
    # a finished conversation gets a first line that the generation prompt does not have
    tokenizer.chat_template = (
        "{% if not add_generation_prompt %}<|im_start|>system\ndone<|im_end|>\n{% endif %}"
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    tok = PairTokenizer(tokenizer, TokenizeSettings(None, None))
    pair = tok(example())
    # the prompt stays the generation prompt; the response is what follows the last generation header
    assert pair.prompt_ids.tolist() == tokenizer(ChatFormat.of(tokenizer).prompt(PROMPT),
                                                 add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(pair.chosen_ids) == "I love it<|im_end|>"
    assert tok.report.template_mismatches == 2 and "generation header" in tok.report.summary()


def test_a_mismatch_without_a_generation_header_is_an_error_naming_the_row():
    tokenizer = build_tokenizer()
    tokenizer.chat_template = (
        "{% if not add_generation_prompt %}[done]{% endif %}"
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}")
    with pytest.raises(UserError, match="row 7: the chat template renders the prompt differently"):
        PairTokenizer(tokenizer)(example())


def test_a_template_without_a_turn_end_marker_appends_eos():
    tokenizer = build_tokenizer()
    tokenizer.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}assistant: {% endif %}")
    fmt = ChatFormat.of(tokenizer)
    assert fmt.turn_end == "" and fmt.after_reply == "\n"
    pair = PairTokenizer(tokenizer)(example())
    assert pair.chosen_ids.tolist() == tokenizer("I love it", add_special_tokens=False)["input_ids"] + [
        tokenizer.eos_token_id]
    assert fmt.stop_ids == [tokenizer.eos_token_id]
