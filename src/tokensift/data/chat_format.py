"""How a tokenizer's chat template frames a conversation: the prompt the model sees, and the response it must
produce, through the end of its turn.

The rules (docs/data.md, "Tokenisation"):
- **Prompt** = the template's rendering of the prompt messages with the generation prompt: exactly what the model
  is given when it generates.
- **Response** = what the template renders after that prompt when the conversation is completed with the reply,
  up to and including the **turn-end marker**: the first special token the template writes after a reply
  (`<|im_end|>`, `<|eot_id|>`, `<end_of_turn>`, `<|end|>`, `</s>` ...). So labels end with the turn end, and
  generation stops there (`stop_ids`). Whatever the template renders for the reply is kept as it is: trims,
  spaces around the reply (Llama-2), an empty reasoning block (Qwen3).
- **Text after the turn end** (the newline of ChatML and Gemma, the EOS Phi-3 appends after the conversation)
  is not part of the response: it belongs to the next turn, which the model never has to generate.
- **Prompt not a prefix** of the full rendering (templates that render earlier turns differently once an
  answer follows, e.g. by stripping reasoning): the prompt stays the generation prompt, and the response is what
  the template renders after the last generation header (the text before a reply that the generation prompt
  also ends with, e.g. `<|im_end|>\n<|im_start|>assistant\n`), counted in
  `TokenizeReport.template_mismatches` and warned about. Without such a header it is an error naming the row.
- **No special token after the reply** (a template that ends turns with plain text): the reply is rendered by
  the template and the tokenizer's EOS is appended, as for tokenizers without a template.
- **No chat template**: each message as `"<Role>: <content>\\n\\n"`, then `"Assistant:"`; the reply follows
  after a space and ends with EOS.

The turn end is found once per tokenizer by rendering a conversation whose reply is a sentinel string.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

from tokensift.errors import UserError

SENTINEL = "tokensiftSentinelReply"
PROBE_TEXT = "tokensiftSentinelPrompt"
PROBE = [{"role": "user", "content": PROBE_TEXT}]


@dataclass(frozen=True)
class RenderedResponse:
    """The text of one response after its prompt, and where the reply's own characters sit in it.

    text:        what the tokenizer encodes after the prompt text (template text, the reply, the turn end).
    reply_span:  (start, end) of the reply's characters inside `text` (the template may have trimmed them).
    reply_start: index in the original reply of `text[reply_span[0]]` (> 0 when leading spaces were trimmed).
    append_eos:  True when no turn-end marker is in `text` and the EOS id must follow its tokens.
    matched:     False when the prompt was not a prefix of the full rendering (see module doc).
    """

    text: str
    reply_span: tuple[int, int]
    reply_start: int
    append_eos: bool
    matched: bool = True


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def _special_texts(tokenizer) -> list[str]:
    texts = set(getattr(tokenizer, "all_special_tokens", []) or [])
    for added in getattr(tokenizer, "added_tokens_decoder", {}).values():
        if getattr(added, "special", False):
            texts.add(added.content)
    return sorted((t for t in texts if t), key=len, reverse=True)


class ChatFormat:
    """The chat format of one tokenizer; build it with `ChatFormat.of(tokenizer)` (cached per tokenizer)."""

    _cache: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.templated = has_chat_template(tokenizer)
        self.turn_end = ""  # the marker's text, e.g. "<|im_end|>" ("" when there is none)
        self.turn_end_text = ""  # what the response keeps after the reply: the marker and text before it
        self.after_reply = ""  # everything the template renders after a reply
        self.header = ""  # the text right before a reply that the generation prompt ends with too
        if self.templated:
            self._probe()

    @classmethod
    def of(cls, tokenizer) -> "ChatFormat":
        try:
            return cls._cache[tokenizer]
        except (KeyError, TypeError):
            fmt = cls(tokenizer)
            try:
                cls._cache[tokenizer] = fmt
            except TypeError:  # not weak-referenceable: just don't cache
                pass
            return fmt

    def _render(self, messages: list[dict], generation_prompt: bool) -> str:
        try:
            return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                      add_generation_prompt=generation_prompt)
        except Exception as exc:  # jinja errors: raise_exception() in templates, bad roles, ...
            raise UserError(f"the tokenizer's chat template cannot render this conversation: "
                            f"{type(exc).__name__}: {exc}") from None

    def _probe(self) -> None:
        full = self._render(PROBE + [{"role": "assistant", "content": SENTINEL}], False)
        if SENTINEL not in full:
            raise UserError("the tokenizer's chat template does not render an assistant reply's content")
        self.after_reply = full[full.rindex(SENTINEL) + len(SENTINEL):]
        found = [(self.after_reply.find(s), s) for s in _special_texts(self.tokenizer) if s in self.after_reply]
        if found:
            position, marker = min(found, key=lambda f: (f[0], -len(f[1])))
            self.turn_end = marker
            self.turn_end_text = self.after_reply[: position + len(marker)]
        generation, before_reply = self._render(PROBE, True), full[: full.rindex(SENTINEL)]
        common = 0
        while common < min(len(generation), len(before_reply)) and (
                generation[-1 - common] == before_reply[-1 - common]):
            common += 1
        header = generation[len(generation) - common:]
        if PROBE_TEXT in header:  # both agree from the probe's message on: the header is what follows it
            self.header = header[header.rindex(PROBE_TEXT) + len(PROBE_TEXT):]

    # ------------------------------------------------------------------------------------------------ text
    def prompt(self, messages: list[dict]) -> str:
        """The prompt text the model sees, ending where the assistant reply starts."""
        if self.templated:
            return self._render(messages, True)
        return "".join(f"{m['role'].capitalize()}: {m['content']}\n\n" for m in messages) + "Assistant:"

    def response(self, messages: list[dict], reply: str, prompt: str | None = None) -> RenderedResponse:
        """The response text after `prompt` (the rendering of `messages`), through the turn end."""
        if not self.templated:
            text = reply if reply.startswith((" ", "\n")) else " " + reply
            offset = len(text) - len(reply)
            return RenderedResponse(text, (offset, len(text)), 0, append_eos=True)
        prompt = self.prompt(messages) if prompt is None else prompt
        full = self._render(messages + [{"role": "assistant", "content": reply}], False)
        matched = full.startswith(prompt)
        if matched:
            body = full[len(prompt):]
        elif self.header and self.header in full:
            body = full[full.rindex(self.header) + len(self.header):]
        else:
            raise UserError("the chat template renders the prompt differently once the reply follows, and has no "
                            "generation header to find the reply by (see docs/data.md, 'Tokenisation')")
        if not self.turn_end:
            end = len(body) - len(self.after_reply) if body.endswith(self.after_reply) else len(body)
            text, append_eos = body[:end], True
        else:
            if body.endswith(self.after_reply):
                end = len(body) - len(self.after_reply) + len(self.turn_end_text)
            else:  # the text after the reply depends on the content: cut at the last turn-end marker
                at = body.rfind(self.turn_end)
                if at < 0:
                    raise UserError(f"the chat template did not end the reply with its turn end {self.turn_end!r}")
                end = at + len(self.turn_end)
            text, append_eos = body[:end], False
        span, start = _locate_reply(text, reply)
        return RenderedResponse(text, span, start, append_eos, matched)

    # ------------------------------------------------------------------------------------------------ ids
    @property
    def add_special_tokens(self) -> bool:
        """A template writes its own special tokens (BOS ...); the fallback relies on the tokenizer's."""
        return not self.templated

    @property
    def stop_ids(self) -> list[int]:
        """Token ids that end a generated answer: the turn-end marker, then EOS."""
        ids = []
        if self.turn_end:
            ids.append(self.tokenizer.convert_tokens_to_ids(self.turn_end))
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in ids:
            ids.append(self.tokenizer.eos_token_id)
        return ids


def _locate_reply(text: str, reply: str) -> tuple[tuple[int, int], int]:
    """Where the reply's characters sit in the rendered response (trimmed by the template or not)."""
    for candidate, start in ((reply, 0), (reply.strip(), len(reply) - len(reply.lstrip()))):
        at = text.find(candidate) if candidate else -1
        if at >= 0:
            return (at, at + len(candidate)), start
    return (0, 0), 0  # the template transformed the reply beyond trimming: no character maps to it


def render_prompt(tokenizer, messages: list[dict]) -> str:
    """The prompt text the model sees (see ChatFormat.prompt)."""
    return ChatFormat.of(tokenizer).prompt(messages)


def encode_prompt(tokenizer, messages: list[dict]) -> list[int]:
    """Prompt token ids exactly as training and generation see them."""
    fmt = ChatFormat.of(tokenizer)
    return tokenizer(fmt.prompt(messages), add_special_tokens=fmt.add_special_tokens)["input_ids"]
