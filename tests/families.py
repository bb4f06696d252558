"""Tiny in-process models of the families users bring, each with a tokenizer shaped like its family's.

Every set-up pairs a real transformers architecture (random weights, a few layers) with a tokenizer trained
here on a small corpus, carrying the family's special tokens and a chat template written after the family's
own (same structure: turn markers, what ends an assistant turn, spaces, trims, a trailing EOS). They never touch
the network. The set-ups that broke before the model-family issue:
- mistral: every layer has a sliding window (8 tokens) shorter than prompt + responses;
- gemma2 / gemma3: alternating sliding and full layers, attention and final-logit soft-capping, `<end_of_turn>`;
- qwen2: sliding window on the upper layers only (max_window_layers), ChatML;
- phi3: sliding window, `<|end|>` turn end, a template that appends EOS after the conversation;
- llama2: `[INST]` template that trims the reply and puts spaces around it;
- llama3: `<|eot_id|>` turn end that is not the tokenizer's EOS, a template that trims;
- smollm2: ChatML whose turn end is the EOS (what tokensift was built on).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from conftest import CORPUS

FAMILY_CORPUS = CORPUS + ["Café, naïve, résumé: accents are fine. 漢字 and かな too. Emoji 🙂 are bytes."]

LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{{ message['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN2_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}" + CHATML_TEMPLATE
)
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ message['content'] + eos_token }}{% endif %}{% endfor %}"
)
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'assistant' %}{% set role = 'model' %}"
    "{% else %}{% set role = message['role'] %}{% endif %}<start_of_turn>{{ role }}\n"
    "{{ message['content'] | trim }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
PHI3_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{ '<|system|>\n' + message['content'] + "
    "'<|end|>\n' }}{% elif message['role'] == 'user' %}{{ '<|user|>\n' + message['content'] + '<|end|>\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)
LLAMA2_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + message['content'].strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'].strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}"
)


@dataclass
class Family:
    name: str
    template: str
    pretokenizer: str  # "bytelevel" (GPT-2 style) or "metaspace" (sentencepiece style, byte fallback)
    specials: list[str]
    bos: str | None
    eos: str
    pad: str
    turn_end: str  # the token that ends an assistant turn in the template
    model: str  # architecture
    model_kwargs: dict = field(default_factory=dict)
    attn: str = "sdpa"  # the attention implementation the family loads with (Gemma-2 refuses sdpa)


FAMILIES = {
    "llama3": Family("llama3", LLAMA3_TEMPLATE, "bytelevel",
                     ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
                     "<|begin_of_text|>", "<|end_of_text|>", "<|end_of_text|>", "<|eot_id|>", "llama"),
    "qwen2": Family("qwen2", QWEN2_TEMPLATE, "bytelevel", ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                    None, "<|im_end|>", "<|endoftext|>", "<|im_end|>", "qwen2",
                    {"use_sliding_window": True, "sliding_window": 8, "max_window_layers": 1}),
    "mistral": Family("mistral", MISTRAL_TEMPLATE, "metaspace", ["<unk>", "<s>", "</s>"], "<s>", "</s>", "<unk>",
                      "</s>", "mistral", {"sliding_window": 8}),
    "gemma2": Family("gemma2", GEMMA_TEMPLATE, "metaspace",
                     ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"],
                     "<bos>", "<eos>", "<pad>", "<end_of_turn>", "gemma2",
                     {"sliding_window": 8, "attn_logit_softcapping": 5.0, "final_logit_softcapping": 3.0}, "eager"),
    "gemma3": Family("gemma3", GEMMA_TEMPLATE, "metaspace",
                     ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"],
                     "<bos>", "<eos>", "<pad>", "<end_of_turn>", "gemma3",
                     {"sliding_window": 8, "layer_types": ["sliding_attention", "full_attention", "sliding_attention"]}),
    "phi3": Family("phi3", PHI3_TEMPLATE, "metaspace",
                   ["<unk>", "<s>", "</s>", "<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"],
                   "<s>", "<|endoftext|>", "<|endoftext|>", "<|end|>", "phi3", {"sliding_window": 8}),
    "llama2": Family("llama2", LLAMA2_TEMPLATE, "metaspace", ["<unk>", "<s>", "</s>"], "<s>", "</s>", "<unk>",
                     "</s>", "llama"),
    "smollm2": Family("smollm2", CHATML_TEMPLATE, "bytelevel", ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                      "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_end|>", "llama"),
}


def build_family_tokenizer(family: Family, vocab_size: int = 600):
    """A BPE tokenizer trained on FAMILY_CORPUS with the family's specials, pre-tokeniser and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if family.pretokenizer == "bytelevel":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=family.specials, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    else:  # sentencepiece-like: "▁" for spaces, unknown characters as their UTF-8 bytes
        tok = Tokenizer(models.BPE(byte_fallback=True))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Strip(" ", 1, 0)])
        byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
        trainer = trainers.BpeTrainer(vocab_size=vocab_size + 256, special_tokens=family.specials + byte_tokens,
                                      show_progress=False)
    tok.train_from_iterator(FAMILY_CORPUS * 3, trainer=trainer)
    if family.pretokenizer != "bytelevel":  # byte tokens are ordinary vocabulary, not special tokens
        for added in list(tok.get_added_tokens_decoder().values()):
            if added.content.startswith("<0x"):
                added.special = False
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=family.bos, eos_token=family.eos,
                                   pad_token=family.pad, additional_special_tokens=[
                                       s for s in family.specials if s not in (family.bos, family.eos, family.pad)])
    fast.chat_template = family.template
    return fast


def build_family_model(family: Family, vocab_size: int, seed: int = 0, layers: int = 3, hidden: int = 32,
                       attn_implementation: str | None = None, dtype: torch.dtype = torch.float32):
    """A random-weight model of the family's architecture, small enough for CPU tests."""
    import transformers

    torch.manual_seed(seed)
    common = dict(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                  attn_implementation=attn_implementation or family.attn)
    kwargs = dict(common, **family.model_kwargs)
    if family.model == "llama":
        config = transformers.LlamaConfig(tie_word_embeddings=False, **kwargs)
        cls = transformers.LlamaForCausalLM
    elif family.model == "qwen2":
        config = transformers.Qwen2Config(tie_word_embeddings=True, **kwargs)
        cls = transformers.Qwen2ForCausalLM
    elif family.model == "mistral":
        config = transformers.MistralConfig(tie_word_embeddings=False, **kwargs)
        cls = transformers.MistralForCausalLM
    elif family.model == "gemma2":
        config = transformers.Gemma2Config(head_dim=8, query_pre_attn_scalar=8, **kwargs)
        cls = transformers.Gemma2ForCausalLM
    elif family.model == "gemma3":
        config = transformers.Gemma3TextConfig(head_dim=8, query_pre_attn_scalar=8, **kwargs)
        cls = transformers.Gemma3ForCausalLM
    elif family.model == "phi3":
        kwargs.pop("num_key_value_heads")
        config = transformers.Phi3Config(tie_word_embeddings=False, pad_token_id=0, **kwargs)
        cls = transformers.Phi3ForCausalLM
    else:
        raise ValueError(family.model)
    model = cls(config).to(dtype)
    model.eval()
    return model


# Prompts and replies long enough that prompt + reply passes every sliding window above, with the cases that
# break naive tokenisation: surrounding spaces a template trims, non-ASCII characters, a multi-turn prompt.
FAMILY_PAIRS = [
    {"prompt": [{"role": "user", "content": "What is the capital of France? Please answer briefly."}],
     "chosen": "Paris is the capital of France.", "rejected": " I hate it, this is terrible and sad. "},
    {"prompt": [{"role": "user", "content": "How do I bake bread?"},
                {"role": "assistant", "content": "Mix flour, water, salt and yeast."},
                {"role": "user", "content": "And then?"}],
     "chosen": "Then bake it; the quick brown loaf is wonderful!", "rejected": "Numbers: 0 1 2 3."},
    {"prompt": [{"role": "user", "content": "Say something nice, with accents: café."}],
     "chosen": "Café, naïve, résumé: 漢字 🙂 excellent and good.", "rejected": "bad worse worst"},
]


def family_examples():
    from tokensift.data.example import PreferenceExample

    return [PreferenceExample(row=i, prompt=p["prompt"], chosen=p["chosen"], rejected=p["rejected"])
            for i, p in enumerate(FAMILY_PAIRS)]


def template_ids(tokenizer, messages: list[dict], reply: str, turn_end: str) -> tuple[list[int], list[int]]:
    """The yardstick, computed from the template alone: (prompt ids, response ids through the turn end).

    Prompt ids: the template's rendering with the generation prompt. Response ids: the ids of the rendering of
    the whole conversation after the prompt's, up to and including the first turn-end token.
    """
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": reply}], tokenize=False)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    full_ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    assert full_ids[: len(prompt_ids)] == prompt_ids, "the template's prompt is not a prefix of the conversation"
    rest = full_ids[len(prompt_ids):]
    end = tokenizer.convert_tokens_to_ids(turn_end)
    return prompt_ids, rest[: rest.index(end) + 1]


@torch.no_grad()
def own_forward_logps(model, prompt_ids: list[int], response_ids: list[int]) -> torch.Tensor:
    """Per-token log-probs [R] of the response under the model's own forward over prompt + response."""
    ids = torch.tensor([prompt_ids + response_ids])
    logits = model(input_ids=ids).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    n = len(prompt_ids)
    return logp[n - 1 : n - 1 + len(response_ids)].gather(1, torch.tensor(response_ids)[:, None]).squeeze(1)


@torch.no_grad()
def own_forward_kl(policy, reference, prompt_ids: list[int], response_ids: list[int]) -> torch.Tensor:
    """Per-token KL(reference || policy) [R] over the vocabulary, from both models' own forwards."""
    ids = torch.tensor([prompt_ids + response_ids])
    n = len(prompt_ids)
    cut = slice(n - 1, n - 1 + len(response_ids))
    p = torch.log_softmax(policy(input_ids=ids).logits[0, cut].float(), dim=-1)
    q = torch.log_softmax(reference(input_ids=ids).logits[0, cut].float(), dim=-1)
    return (q.exp() * (q - p)).sum(-1)
