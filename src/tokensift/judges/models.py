"""Judges that run a transformers model: a reward model that scores answers, and a local LLM asked the pairwise
question. torch and transformers are imported when one is built, so HTTP and callable judges start fast."""

from __future__ import annotations

import inspect
import logging
import math
import os
from typing import Any

from tokensift.errors import UserError
from tokensift.judges.base import (PAIRWISE_TEMPLATE, Item, Judge, ScoreJudge, Verdict, combine_orders,
                                   format_conversation, from_spec, register, sigmoid)
from tokensift.judges.questions import pairwise_question_for

logger = logging.getLogger(__name__)

class _ModelJudgeBase:
    """Loading, rendering, tokenising and padding shared by the reward-model and local-LLM judges.

    `model` is a path / hub id (loaded with `dtype` onto `device`, default "cpu") or a loaded transformers
    model (kept in its dtype, on its device unless `device` is given). `tokenizer` is an object, a path, or
    None (loaded from the model's path). `name` overrides the derived cache identity: give it for in-memory
    models whose weights differ from their path.
    """

    kind = ""

    def _setup(self, model, tokenizer, auto_class: str, device, dtype, max_length, batch_size,
               trust_remote_code, name):
        import transformers

        from tokensift.models import parse_dtype, resolve_model

        self.dtype = parse_dtype(dtype)
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.truncated = 0  # how many inputs lost tokens to max_length; reported, never silent
        if isinstance(model, (str, os.PathLike)):
            # Aliases and GGUF files resolve to a local folder; the resolved path (hub snapshot, or GGUF cache
            # folder named by the file's sha256) is what identifies the weights in the judge's name.
            model_id = resolve_model(str(model))
            try:
                model_obj = getattr(transformers, auto_class).from_pretrained(
                    model_id, dtype=self.dtype, trust_remote_code=trust_remote_code)
            except (OSError, ValueError) as exc:
                raise UserError(f"{self.kind} judge: could not load model '{model}' ({exc})") from exc
        else:  # an already loaded model keeps its dtype (and, unless `device` is given, its device)
            model_obj = model
            self.dtype = next(model.parameters()).dtype
            device = device or next(model.parameters()).device
            model_id = getattr(model, "name_or_path", "") or ""
        if tokenizer is None or isinstance(tokenizer, str):
            source = tokenizer or model_id
            if not source:
                raise UserError(f"{self.kind} judge: pass a tokenizer with an in-memory model that has no path")
            try:
                tokenizer = transformers.AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
            except (OSError, ValueError) as exc:
                raise UserError(f"{self.kind} judge: could not load tokenizer '{source}' ({exc})") from exc
        self.device = device or "cpu"
        self.model = model_obj.to(self.device).eval()
        self.tokenizer = tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if self.pad_id is None:
            raise UserError(f"{self.kind} judge: tokenizer of '{model_id}' has neither a pad nor an eos token")
        self.uses_chat_template = bool(getattr(tokenizer, "chat_template", None))
        if not model_id and name is None:
            # An unsaved in-memory model has no stable identity: its cache entries only hit in this process.
            model_id = f"unsaved-{id(model_obj):x}"
            logger.warning("%s judge: in-memory model without a path; pass name= to reuse cached verdicts", self.kind)
        self.model_id = model_id
        return name

    def _encode(self, text: str) -> list[int]:
        # A chat template already writes the special tokens (BOS etc.); the plain fallback relies on the
        # tokenizer adding them.
        return self.tokenizer(text, add_special_tokens=not self.uses_chat_template)["input_ids"]

    def _truncate_left(self, ids: list[int]) -> list[int]:
        """Keep the end: the reward is read at the last token and the judge's question sits at the end."""
        if len(ids) <= self.max_length:
            return ids
        self.truncated += 1
        logger.warning("%s judge: input of %d tokens cut to its last %d (max_length); %d inputs cut so far",
                       self.kind, len(ids), self.max_length, self.truncated)
        return ids[-self.max_length:]

    def _pad(self, seqs: list[list[int]], side: str, pad_id: int):
        """Pad to a rectangle. With left padding the position ids are rebuilt from the mask so every real
        token keeps the position it has in an unpadded run (models default to 0..T-1 otherwise)."""
        import torch

        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, seq in enumerate(seqs):
            span = slice(width - len(seq), width) if side == "left" else slice(0, len(seq))
            ids[row, span] = torch.tensor(seq, dtype=torch.long)
            mask[row, span] = 1
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0) if side == "left" else None
        return ids.to(self.device), mask.to(self.device), (None if position_ids is None else position_ids.to(self.device))

    def _batches(self, seqs: list[list[int]]):
        """Yield (indices, sequences) in length-sorted batches so short inputs are not padded to long ones."""
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            yield idx, [seqs[i] for i in idx]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


@register
class RewardModelJudge(_ModelJudgeBase, ScoreJudge):
    """A sequence-classification reward model with one output logit (e.g. Skywork-Reward, or any
    `AutoModelForSequenceClassification` trained with a Bradley-Terry loss).

    score = the logit read at the last token of chat-template(prompt + [assistant: response]) (fallback
    "User: ...\\n\\nAssistant: ..." when the tokenizer has no template); p_first = sigmoid(s_first - s_second).
    Batches follow the tokenizer's padding side. transformers pools at the rightmost token that is not
    `config.pad_token_id`, so we pad with exactly that id (setting it to the tokenizer's pad, else eos, when
    the config has none); left padding also gets position ids from the mask. Batched and one-by-one scores
    therefore agree to float precision.
    """

    kind = "reward_model"
    pairwise = False
    summary = "a sequence-classification reward model scores each answer (Skywork-Reward, ArmoRM ...)"

    @classmethod
    def from_spec(cls, args: dict):
        if "model" in args:  # the config's name for model_name_or_path
            args = {**args, "model_name_or_path": args["model"]}
            del args["model"]
        return from_spec(cls, args)

    def __init__(self, model_name_or_path, device: str | None = None, dtype: Any = "float32", max_length: int = 1024,
                 batch_size: int = 8, trust_remote_code: bool = False, tokenizer=None, name: str | None = None):
        name = self._setup(model_name_or_path, tokenizer, "AutoModelForSequenceClassification", device, dtype,
                           max_length, batch_size, trust_remote_code, name)
        from tokensift.attention import text_config  # torch only once a model judge is built (module doc)

        config = text_config(self.model)
        if self.model.config.num_labels != 1:
            raise UserError(f"reward model '{self.model_id}' has {self.model.config.num_labels} output logits; "
                            "a reward model judge needs a single-logit head (num_labels=1)")
        if config.pad_token_id is None:
            config.pad_token_id = self.pad_id
            self.model.config.pad_token_id = self.pad_id
        self.pad_id = config.pad_token_id
        self.padding_side = getattr(self.tokenizer, "padding_side", "right") or "right"
        template = "chat" if self.uses_chat_template else "plain"
        self.name = name or (f"reward_model:v1:model={self.model_id}:template={template}:"
                             f"max_length={self.max_length}:dtype={str(self.dtype).removeprefix('torch.')}")

    def render(self, prompt: list[dict], response: str) -> str:
        if self.uses_chat_template:
            return self.tokenizer.apply_chat_template(
                list(prompt) + [{"role": "assistant", "content": response}], tokenize=False)
        return f"{format_conversation(prompt)}\n\nAssistant: {response}"

    def score_many(self, items: list[tuple[list[dict], str]]) -> list[float]:
        import torch

        seqs = [self._truncate_left(self._encode(self.render(prompt, response))) for prompt, response in items]
        scores: list[float] = [0.0] * len(seqs)
        with torch.inference_mode():
            for idx, batch in self._batches(seqs):
                ids, mask, pos = self._pad(batch, self.padding_side, self.pad_id)
                extra = {} if pos is None else {"position_ids": pos}
                logits = self.model(input_ids=ids, attention_mask=mask, **extra).logits
                for i, value in zip(idx, logits[:, 0].float().tolist()):
                    scores[i] = value
        return scores


@register
class LocalLLMJudge(_ModelJudgeBase, Judge):
    """A local causal LM asked the pairwise question in both orders: `template` is "default" (our short question,
    `PAIRWISE_TEMPLATE`), "alpaca_eval" (AlpacaEval 2's weighted judge question, answered "m" or "M", see
    judges/questions.py) or a custom format string.

    P(A) is read from the next-token distribution after the question: softmax over the logits of the two answer
    tokens only ("A"/"B", or "m"/"M"), i.e. sigmoid(logit_A - logit_B), which is AlpacaEval's continuous
    preference from the verdict token's log-probability. Then p_first = (P(A | first, second) +
    1 - P(A | second, first)) / 2, which cancels position bias. `detail` keeps both orders, including
    `answer_mass` (how much of the full distribution the two letters get: low mass = the model is not
    really answering).

    The answer tokens are found per input by tokenising question+"A" and question+"B" and taking the first
    token where they differ; the model is fed exactly the tokens before it. That works for any tokenizer
    (leading-space letters, merges across the boundary). Inputs are left-padded (position ids rebuilt) so
    only the last position's logits are computed, not the full vocabulary over every position.
    """

    kind = "local_llm"
    pairwise = True
    summary = "a local causal LM asked which answer is better, in both orders (P(A) from the answer logits)"
    from_spec = classmethod(from_spec)

    def __init__(self, model, tokenizer=None, template: str = PAIRWISE_TEMPLATE, device: str | None = None,
                 dtype: Any = "float32", max_length: int = 2048, batch_size: int = 8,
                 trust_remote_code: bool = False, name: str | None = None):
        name = self._setup(model, tokenizer, "AutoModelForCausalLM", device, dtype, max_length, batch_size,
                           trust_remote_code, name)
        self.question = pairwise_question_for(template)
        forward_params = inspect.signature(self.model.forward).parameters
        self._last_only = {"logits_to_keep": 1} if "logits_to_keep" in forward_params else {}
        template_kind = "chat" if self.uses_chat_template else "plain"
        self.name = name or (f"local_llm:v1:model={self.model_id}:question={self.question.id}:"
                             f"template={template_kind}:max_length={self.max_length}:"
                             f"dtype={str(self.dtype).removeprefix('torch.')}")

    def render(self, prompt: list[dict], response_a: str, response_b: str) -> str:
        messages = self.question.messages(prompt, response_a, response_b)
        if self.uses_chat_template:
            from jinja2 import TemplateError

            try:
                return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            except TemplateError:  # a chat template without a system role (Gemma): one user message instead
                if len(messages) == 1:
                    raise
                merged = [{"role": "user", "content": f"{messages[0]['content']}\n\n{messages[1]['content']}"}]
                return self.tokenizer.apply_chat_template(merged, tokenize=False, add_generation_prompt=True)
        return "\n\n".join(([messages[0]["content"]] if len(messages) == 2 else []) +
                             [f"User: {messages[-1]['content']}", "Assistant:"])

    def encode_question(self, prompt: list[dict], response_a: str, response_b: str) -> tuple[list[int], int, int]:
        """(input ids, id of the "A" answer token, id of the "B" answer token)."""
        text = self.render(prompt, response_a, response_b)
        sep = "" if text[-1:].isspace() else " "
        letter_a, letter_b = self.question.letters
        with_a, with_b = self._encode(text + sep + letter_a), self._encode(text + sep + letter_b)
        k = 0
        while k < min(len(with_a), len(with_b)) and with_a[k] == with_b[k]:
            k += 1
        if k == 0 or k >= min(len(with_a), len(with_b)):
            raise UserError(f"local_llm judge: tokenizer of '{self.model_id}' cannot tell the answers "
                            f"'{letter_a}' and '{letter_b}' apart")
        return self._truncate_left(with_a[:k]), with_a[k], with_b[k]

    def _p_a(self, questions: list[tuple[list[int], int, int]]) -> list[dict]:
        import torch

        out: list[dict] = [{}] * len(questions)
        with torch.inference_mode():
            for idx, batch in self._batches([q[0] for q in questions]):
                ids, mask, pos = self._pad(batch, "left", self.pad_id)
                logits = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, **self._last_only).logits
                logprobs = torch.log_softmax(logits[:, -1, :].double(), dim=-1)
                for row, i in enumerate(idx):
                    _, tok_a, tok_b = questions[i]
                    la, lb = logprobs[row, tok_a].item(), logprobs[row, tok_b].item()
                    out[i] = {"p_a": sigmoid(la - lb), "logprob_a": la, "logprob_b": lb,
                              "answer_mass": math.exp(la) + math.exp(lb)}
        return out

    def compare(self, prompt: list[dict], first: str, second: str) -> Verdict:
        return self.compare_many([(prompt, first, second)])[0]

    def compare_many(self, items: list[Item]) -> list[Verdict]:
        questions = []
        for prompt, first, second in items:
            questions.append(self.encode_question(prompt, first, second))
            questions.append(self.encode_question(prompt, second, first))
        answers = self._p_a(questions)
        verdicts = []
        for i in range(len(items)):
            forward, swapped = answers[2 * i], answers[2 * i + 1]
            verdicts.append(Verdict(combine_orders(forward["p_a"], swapped["p_a"]),
                                    {"first_as_a": forward, "first_as_b": swapped}))
        return verdicts
