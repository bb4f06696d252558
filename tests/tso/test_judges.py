"""Model judges (reward model, local LLM), the callable judge, vader_sentiment and build_judge.

Expected values are computed by hand from the tiny models' own forwards, independently of the judge code.
"""

from __future__ import annotations

import math

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification, PreTrainedTokenizerFast

from tokensift.errors import UserError
from tokensift.judges.cache import CachedJudge
from tokensift.judges import CallableJudge, LocalLLMJudge, RewardModelJudge, Verdict, build_judge, vader_sentiment
from tokensift.judges.base import PAIRWISE_TEMPLATE, combine_orders, sigmoid
from tokensift.judges.questions import ALPACA_EVAL_SYSTEM, ALPACA_EVAL_USER

TEMPLATE = ("{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
CORPUS = [
    "Which response is better, A or B? Answer with a single letter. A B A B",
    "User: Assistant: A B Response A Response B Conversation",
    "I love this movie, it is wonderful and great! Tell me a story about a cat.",
    "This is terrible and sad. The capital of France is Paris. Write a haiku.",
]
PROMPT = [{"role": "user", "content": "Tell me a story about a cat."}]
ITEMS = [
    (PROMPT, "The cat sat.", "A long story about a wonderful cat who loved Paris and great movies."),
    ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Write a haiku."}],
     "Sad cat.", "I love this!"),
    (PROMPT, "terrible", "The cat sat."),
]


def make_tokenizer(chat_template: str | None = None) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained in-process; no pad token on purpose (judges must fall back to eos)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=420, special_tokens=["<eos>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 5, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")
    fast.chat_template = chat_template
    return fast


def tiny_config(vocab_size: int, **extra) -> LlamaConfig:
    return LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                       attn_implementation="sdpa", **extra)


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory, tokenizer):
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(tiny_config(len(tokenizer), num_labels=1))
    with torch.no_grad():  # random init gives scores within +-0.1 of each other; spread them out
        model.score.weight.mul_(100)
    path = tmp_path_factory.mktemp("tiny-rm")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def lm():
    torch.manual_seed(1)
    # The default init (std 0.02) attends almost uniformly, so P(A) barely depends on the order of the
    # responses; a wider init makes the two orders give clearly different answers.
    return LlamaForCausalLM(tiny_config(len(make_tokenizer()), initializer_range=0.2)).eval()


def hand_score(model, tokenizer, text: str) -> float:
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    with torch.no_grad():
        return model(input_ids=ids).logits[0, 0].item()


# -- reward model ------------------------------------------------------------------------------------------

def test_reward_model_p_first_is_sigmoid_of_score_difference(rm_dir, tokenizer):
    judge = RewardModelJudge(str(rm_dir))
    reference = LlamaForSequenceClassification.from_pretrained(rm_dir).eval()  # config has no pad id: reads last token
    first, second = "The cat sat.", "I love this movie!"
    s1 = hand_score(reference, tokenizer, f"User: {PROMPT[0]['content']}\n\nAssistant: {first}")
    s2 = hand_score(reference, tokenizer, f"User: {PROMPT[0]['content']}\n\nAssistant: {second}")
    verdict = judge.compare(PROMPT, first, second)
    assert verdict.detail == pytest.approx({"score_first": s1, "score_second": s2}, abs=1e-5)
    assert verdict.p_first == pytest.approx(1 / (1 + math.exp(-(s1 - s2))), abs=1e-6)
    assert judge.score(PROMPT, first) == pytest.approx(s1, abs=1e-5)
    # pad token was missing: eos is used and written into the config, where transformers' pooling reads it
    assert judge.model.config.pad_token_id == tokenizer.eos_token_id
    assert judge.name == f"reward_model:v1:model={rm_dir}:template=plain:max_length=1024:dtype=float32"


def test_reward_model_uses_chat_template(rm_dir):
    tokenizer = make_tokenizer(TEMPLATE)
    reference = LlamaForSequenceClassification.from_pretrained(rm_dir).eval()
    judge = RewardModelJudge(reference, tokenizer=tokenizer, name="rm-chat")
    text = "<|system|>\nBe brief.\n<|user|>\nWrite a haiku.\n<|assistant|>\nSad cat.\n"
    expected = hand_score(reference, tokenizer, text)
    assert judge.score(ITEMS[1][0], "Sad cat.") == pytest.approx(expected, abs=1e-5)
    assert judge.name == "rm-chat"


@pytest.mark.parametrize("side", ["right", "left"])
def test_reward_model_batched_equals_one_by_one(rm_dir, side):
    tokenizer = make_tokenizer()
    tokenizer.padding_side = side
    flat = [(p, r) for p, a, b in ITEMS for r in (a, b)]
    lengths = {len(tokenizer(f"{p[-1]['content']} {r}")["input_ids"]) for p, r in flat}
    assert len(lengths) > 2  # the batch really needs padding
    batched = RewardModelJudge(str(rm_dir), tokenizer=tokenizer, batch_size=8).score_many(flat)
    single = RewardModelJudge(str(rm_dir), tokenizer=tokenizer, batch_size=1).score_many(flat)
    assert batched == pytest.approx(single, abs=1e-5)
    assert len({round(s, 6) for s in single}) == len({(p[-1]["content"], r) for p, r in flat})  # distinct inputs, distinct scores


def test_reward_model_is_symmetric(rm_dir):
    judge = RewardModelJudge(str(rm_dir))
    for prompt, a, b in ITEMS:
        assert judge.compare(prompt, a, b).p_first + judge.compare(prompt, b, a).p_first == pytest.approx(1, abs=1e-6)


def test_reward_model_truncates_left_and_counts(rm_dir, tokenizer):
    judge = RewardModelJudge(str(rm_dir), max_length=6)
    reference = LlamaForSequenceClassification.from_pretrained(rm_dir).eval()
    ids = tokenizer("User: Tell me a story about a cat.\n\nAssistant: The cat sat.")["input_ids"]
    with torch.no_grad():
        expected = reference(input_ids=torch.tensor([ids[-6:]])).logits[0, 0].item()
    assert judge.score(PROMPT, "The cat sat.") == pytest.approx(expected, abs=1e-5)
    assert judge.truncated == 1


def test_reward_model_rejects_multi_logit_head(tmp_path, tokenizer):
    LlamaForSequenceClassification(tiny_config(len(tokenizer), num_labels=2)).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(UserError, match="has 2 output logits; a reward model judge needs a single-logit head"):
        RewardModelJudge(str(tmp_path))


def test_reward_model_missing_model_is_user_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="is neither a local path, a GGUF file, a hub id"):
        RewardModelJudge(str(tmp_path / "nope"))
    with pytest.raises(UserError, match="reward_model judge: could not load model 'nobody-xyz/no-such-rm'"):
        RewardModelJudge("nobody-xyz/no-such-rm")


# -- local LLM ----------------------------------------------------------------------------------------------

def hand_p_a(lm, tokenizer, text: str, answer_a: str, answer_b: str) -> float:
    ids = tokenizer(text)["input_ids"]
    id_a, id_b = tokenizer(answer_a)["input_ids"], tokenizer(answer_b)["input_ids"]
    assert len(id_a) == len(id_b) == 1  # corpus has the merges: the answer is one token after the prompt
    assert tokenizer(text + answer_a)["input_ids"] == ids + id_a
    with torch.no_grad():
        logits = lm(input_ids=torch.tensor([ids])).logits[0, -1].double()
    pa, pb = torch.softmax(logits, -1)[id_a[0]].item(), torch.softmax(logits, -1)[id_b[0]].item()
    return pa / (pa + pb)


def plain_question(prompt, a, b):
    conversation = "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in prompt)
    body = PAIRWISE_TEMPLATE.format(conversation=conversation, response_a=a, response_b=b)
    return f"User: {body}\n\nAssistant:"


def test_local_llm_formula_from_model_logits(lm, tokenizer):
    judge = LocalLLMJudge(lm, tokenizer, name="tiny-llm")
    prompt, first, second = ITEMS[0]
    forward = hand_p_a(lm, tokenizer, plain_question(prompt, first, second), " A", " B")
    swapped = hand_p_a(lm, tokenizer, plain_question(prompt, second, first), " A", " B")
    verdict = judge.compare(prompt, first, second)
    assert abs(forward - 0.5) > 0.05 and abs(swapped - 0.5) > 0.05 and abs(forward - swapped) > 0.05
    # batched judge forwards vs unpadded hand forwards: equal up to float32 rounding
    assert verdict.p_first == pytest.approx((forward + (1 - swapped)) / 2, abs=1e-5)
    assert verdict.detail["first_as_a"]["p_a"] == pytest.approx(forward, abs=1e-5)
    assert verdict.detail["first_as_b"]["p_a"] == pytest.approx(swapped, abs=1e-5)
    mass = verdict.detail["first_as_a"]
    assert mass["answer_mass"] == pytest.approx(math.exp(mass["logprob_a"]) + math.exp(mass["logprob_b"]))
    assert 0 < mass["answer_mass"] < 1


def test_local_llm_chat_template_answer_without_space(lm):
    tokenizer = make_tokenizer(TEMPLATE)
    judge = LocalLLMJudge(lm, tokenizer, name="tiny-llm-chat")
    prompt, first, second = ITEMS[1]

    def text(a, b):
        return "<|user|>\n" + plain_question(prompt, a, b)[len("User: "):-len("\n\nAssistant:")] + "\n<|assistant|>\n"

    forward = hand_p_a(lm, tokenizer, text(first, second), "A", "B")
    swapped = hand_p_a(lm, tokenizer, text(second, first), "A", "B")
    assert abs(forward - swapped) > 0.05
    assert judge.compare(prompt, first, second).p_first == pytest.approx(combine_orders(forward, swapped), abs=1e-5)


def test_local_llm_swap_gives_one_minus_p_and_batching_is_invariant(lm, tokenizer):
    batched = LocalLLMJudge(lm, tokenizer, batch_size=8, name="x").compare_many(ITEMS)
    single = LocalLLMJudge(lm, tokenizer, batch_size=1, name="x")
    for (prompt, a, b), verdict in zip(ITEMS, batched):
        one = single.compare(prompt, a, b)
        assert verdict.p_first == pytest.approx(one.p_first, abs=1e-6)
        assert single.compare(prompt, b, a).p_first == pytest.approx(1 - one.p_first, abs=1e-12)
    assert len({round(v.p_first, 9) for v in batched}) == 3


def test_local_llm_template_must_have_all_fields(lm, tokenizer):
    with pytest.raises(UserError, match=r"exactly the fields \['conversation', 'response_a', 'response_b'\]"):
        LocalLLMJudge(lm, tokenizer, template="Compare {response_a} and {response_b}.", name="x")
    custom = "{conversation}\nA: {response_a}\nB: {response_b}\nBetter? A or B:"
    default_name = LocalLLMJudge(lm, tokenizer, name=None).name
    assert LocalLLMJudge(lm, tokenizer, template=custom).name != default_name  # template version is in the name


def test_local_llm_alpaca_eval_question_reads_m_and_m_upper(lm):
    """AlpacaEval's weighted judge question: system + user messages, the bare instruction, answers "m" (first
    output) or "M"; P(first) = P(m) / (P(m) + P(M)) from the model's own next-token distribution."""
    tokenizer = make_tokenizer(TEMPLATE)
    judge = LocalLLMJudge(lm, tokenizer, template="alpaca_eval", max_length=8192, name="tiny-alpaca")
    prompt, first, second = ITEMS[0]

    def text(a, b):
        user = ALPACA_EVAL_USER.format(conversation=prompt[0]["content"], response_a=a, response_b=b)
        return f"<|system|>\n{ALPACA_EVAL_SYSTEM}\n<|user|>\n{user}\n<|assistant|>\n"

    assert '"instruction": """Tell me a story about a cat."""' in text(first, second)  # bare, braces literal
    assert '"model_identifier": "M",\n        "output": """' + second in text(first, second)
    forward = hand_p_a(lm, tokenizer, text(first, second), "m", "M")
    swapped = hand_p_a(lm, tokenizer, text(second, first), "m", "M")
    verdict = judge.compare(prompt, first, second)
    assert verdict.p_first == pytest.approx(combine_orders(forward, swapped), abs=1e-5)
    assert LocalLLMJudge(lm, tokenizer, template="alpaca_eval").name != LocalLLMJudge(lm, tokenizer).name
    # a chat template without a system role gets the system text at the top of the user message
    no_system = make_tokenizer("{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('no system') }}"
                               "{% endif %}<|{{ m.role }}|>\n{{ m.content }}\n{% endfor %}<|assistant|>\n")
    merged = LocalLLMJudge(lm, no_system, template="alpaca_eval", max_length=8192, name="x")
    assert merged.render(prompt, first, second).startswith(f"<|user|>\n{ALPACA_EVAL_SYSTEM}\n\nI require")


# -- callable -----------------------------------------------------------------------------------------------

def test_callable_judge_scores_and_temperature():
    calls = []

    def length(prompt, response):
        calls.append(response)
        return float(len(response))

    judge = CallableJudge(length, temperature=2.0)
    verdict = judge.compare(PROMPT, "abcdef", "ab")
    assert verdict == Verdict(sigmoid((6 - 2) / 2.0), {"score_first": 6.0, "score_second": 2.0})
    assert verdict.p_first == pytest.approx(1 / (1 + math.exp(-2)))
    assert judge.score_many([(PROMPT, "x"), (PROMPT, "xyz")]) == [1.0, 3.0]
    assert calls == ["abcdef", "ab", "x", "xyz"]
    assert judge.name == f"callable:{__name__}.test_callable_judge_scores_and_temperature.<locals>.length:temperature=2"


def test_callable_judge_rejects_non_finite_scores():
    judge = CallableJudge(lambda p, r: float("nan"), name="nan")
    with pytest.raises(UserError, match="judge 'nan' returned nan for a response; scores must be finite"):
        judge.compare(PROMPT, "a", "b")


def test_vader_sentiment_matches_the_library():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    text = "I love this, it is wonderful!"
    expected = SentimentIntensityAnalyzer().polarity_scores(text)["compound"]
    assert vader_sentiment(PROMPT, text) == expected > 0.5
    assert vader_sentiment(PROMPT, "This is terrible and sad.") < 0


def test_sigmoid_is_stable():
    assert sigmoid(1000.0) == 1.0 and sigmoid(-1000.0) == 0.0
    assert sigmoid(0.3) == pytest.approx(1 / (1 + math.exp(-0.3)))


# -- build_judge ---------------------------------------------------------------------------------------------

def test_build_callable_from_dotted_path_with_cache(tmp_path):
    judge = build_judge({"type": "callable", "function": "tokensift.judges:vader_sentiment",
                         "temperature": 0.5, "cache": str(tmp_path / "c.sqlite")})
    assert isinstance(judge, CachedJudge)
    assert judge.name == "callable:tokensift.judges.functions.vader_sentiment:temperature=0.5"
    good, bad = "I love it, wonderful!", "I hate it, awful."
    verdict = judge.compare(PROMPT, good, bad)
    assert verdict.p_first == pytest.approx(sigmoid((vader_sentiment(PROMPT, good) - vader_sentiment(PROMPT, bad)) / 0.5))
    assert judge.score(PROMPT, good) == vader_sentiment(PROMPT, good)


def test_build_reward_model_and_http(rm_dir):
    rm = build_judge({"type": "reward_model", "model": str(rm_dir), "batch_size": 2})
    assert isinstance(rm, RewardModelJudge) and rm.batch_size == 2
    http = build_judge({"type": "http", "base_url": "http://127.0.0.1:9/v1", "model": "m", "timeout_s": 3})
    assert http.endpoint == "http://127.0.0.1:9/v1/chat/completions" and http.timeout_s == 3


@pytest.mark.parametrize("spec, message", [
    ({"type": "callable"}, "callable judge config needs 'function: package.module:function'"),
    ({"type": "callable", "function": "os.path.join"}, "function must be written 'package.module:function'"),
    ({"type": "callable", "function": "tokensift.judges:nope"}, "'nope' not found"),
    ({"type": "callable", "function": "tokensift_missing_mod:f"}, "cannot import module 'tokensift_missing_mod'"),
    ({"type": "callable", "function": "tokensift.judges.base:PAIRWISE_TEMPLATE"}, "is not callable"),
    ({"type": "callable", "function": "tokensift.judges.base:sigmoid", "temprature": 1},
     "unknown key(s) ['temprature'] for a callable judge; allowed: ['name', 'temperature']"),
])
def test_build_judge_errors(spec, message):
    with pytest.raises(UserError) as info:
        build_judge(spec)
    assert message in str(info.value)


def test_an_unknown_judge_type_lists_every_type():
    """The built-in types and any a contributor registers (docs/contributing.md), sorted."""
    from tokensift.judges import JUDGES

    with pytest.raises(UserError) as info:
        build_judge({"type": "oracle"})
    assert str(info.value) == f"judge type must be one of {sorted(JUDGES)}, got 'oracle'"
    assert {"callable", "http", "local_llm", "reward_model"} <= set(JUDGES)


@pytest.mark.slow
def test_local_llm_on_the_default_model():
    """The real chat template and tokenizer of SmolLM2: the answer tokens are the bare letters after the
    generation prompt, the letters get real probability mass, and the two orders cancel position bias."""
    judge = LocalLLMJudge("smollm2-135m-instruct", batch_size=4)
    prompt = [{"role": "user", "content": "What is the capital of France?"}]
    good, bad = "The capital of France is Paris.", "I like turtles."
    ids, token_a, token_b = judge.encode_question(prompt, good, bad)
    assert judge.tokenizer.decode(ids).endswith("<|im_start|>assistant\n")
    assert (judge.tokenizer.decode([token_a]), judge.tokenizer.decode([token_b])) == ("A", "B")
    forward, swapped = judge.compare_many([(prompt, good, bad), (prompt, bad, good)])
    assert forward.p_first + swapped.p_first == pytest.approx(1, abs=1e-6)
    assert forward.detail["first_as_a"]["answer_mass"] > 0.1
