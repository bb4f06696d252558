"""A judge behind an OpenAI-compatible `/v1/chat/completions` endpoint (OpenAI, vLLM, llama.cpp server, TGI,
LiteLLM proxies, ...), using only the standard library so the judge adds no dependency.

It asks the same pairwise question as `LocalLLMJudge` in both orders (position bias cancels; `template` as
there: "default", "alpaca_eval" for AlpacaEval 2's weighted GPT-4-Turbo judge question, or a custom one) and
reads the verdict from `top_logprobs` of the answer when the server returns them (a probability, not just a
letter: AlpacaEval's continuous preference), else from the first standalone answer letter in the text.

Failure handling, because a TSO run makes thousands of calls: timeouts, connection errors, HTTP 429 and 5xx
are retried with exponential backoff (Retry-After honoured); other 4xx mean the request itself is wrong
(bad key, unknown model) and fail at once with the status and the server's message. An optional client-side
limiter spaces requests so a run stays under a provider's requests-per-minute quota.

Secrets: the API key is read from the environment variable `api_key_env` at request time, sent only in the
Authorization header, and never stored on the object, logged, or put in an exception message (server
messages that echo it are redacted).
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import math
import os
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from tokensift.errors import UserError
from tokensift.judges.base import PAIRWISE_TEMPLATE, Item, Judge, Verdict, combine_orders, from_spec, register
from tokensift.judges.questions import pairwise_question_for

logger = logging.getLogger(__name__)

_MAX_RETRY_AFTER_S = 120.0  # a server asking for longer than this is treated like any other backoff step


class JudgeRequestError(UserError):
    """The endpoint could not give a verdict. `status` is the last HTTP status (None for network errors)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class _RateLimiter:
    """Minimum interval between request starts, shared by all threads of one judge."""

    def __init__(self, requests_per_minute: float | None):
        self.interval = 60.0 / requests_per_minute if requests_per_minute else 0.0
        self._lock = threading.Lock()
        self._next_at = 0.0

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_at)
            self._next_at = start + self.interval
        time.sleep(start - now)


def _endpoint(base_url: str) -> str:
    """Append the chat-completions path unless it is there; keep a query string (Azure's api-version)."""
    parts = urllib.parse.urlsplit(str(base_url))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UserError(f"HTTP judge base_url must start with http:// or https://, got {base_url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith("/chat/completions"):
        path += "/chat/completions" if path.endswith("/v1") else "/v1/chat/completions"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def _display_url(url: str) -> str:
    """The endpoint without user:password@, query or fragment: some providers take keys there, and this
    string goes into judge names, cache files and messages."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def _retry_after(headers) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER_S)


def parse_answer(reply: dict, letters: tuple[str, str] = ("A", "B")) -> dict | None:
    """P(A) from one chat-completions reply, or None when it holds no verdict; `letters` are the answer tokens
    for A and B ("m" and "M" for AlpacaEval's question).

    From logprobs: at the first generated position whose top_logprobs include either letter (surrounding
    whitespace ignored, variants summed), p_a = P(A) / (P(A) + P(B)); a letter missing from the top list
    counts as probability 0. From text: the first standalone letter decides, p_a = 1 or 0.
    """
    try:
        choice = reply["choices"][0]
        text = choice["message"].get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError):
        return None
    positions = ((choice.get("logprobs") or {}).get("content") or []) if isinstance(choice, dict) else []
    for position in positions:
        tops = position.get("top_logprobs") or []
        prob_a, prob_b = (sum(math.exp(t["logprob"]) for t in tops if str(t.get("token", "")).strip() == letter)
                          for letter in letters)
        if prob_a + prob_b > 0:
            return {"p_a": prob_a / (prob_a + prob_b), "source": "logprobs", "prob_a": prob_a, "prob_b": prob_b,
                    "text": text}
    match = re.search(r"\b(" + "|".join(map(re.escape, letters)) + r")\b", text)
    if match:
        return {"p_a": 1.0 if match.group(1) == letters[0] else 0.0, "source": "text", "text": text}
    return None


@register
class HTTPJudge(Judge):
    """Pairwise judge behind an OpenAI-compatible chat-completions endpoint.

    base_url: "https://api.openai.com/v1", "http://localhost:8000" (".../v1/chat/completions" is appended as
    needed). api_key_env: name of the environment variable holding the key; None for servers without auth.
    timeout_s: per request. max_retries: extra attempts after the first for retryable failures; the wait is
    backoff_s * 2**attempt, or the server's Retry-After. requests_per_minute: client-side spacing (None =
    unlimited). logprobs: ask for top_logprobs (some servers reject it: set False to use text only).
    max_concurrent_requests: parallel requests in compare_many.
    """

    kind = "http"
    pairwise = True
    summary = "a GPT-4-class model behind an OpenAI-compatible API, asked in both orders (key from api_key_env)"
    from_spec = classmethod(from_spec)

    def __init__(self, base_url: str, model: str, api_key_env: str | None = "OPENAI_API_KEY", timeout_s: float = 30,
                 max_retries: int = 4, backoff_s: float = 1.0, requests_per_minute: float | None = None,
                 temperature: float = 0, logprobs: bool = True, max_tokens: int = 5,
                 template: str = PAIRWISE_TEMPLATE, max_concurrent_requests: int = 1, name: str | None = None):
        self.endpoint = _endpoint(base_url)
        self.display_url = _display_url(self.endpoint)
        self.model = str(model)
        self.api_key_env = api_key_env
        self.timeout_s = float(timeout_s)
        self.max_retries = max(0, int(max_retries))
        self.backoff_s = float(backoff_s)
        self.temperature = float(temperature)
        self.logprobs = bool(logprobs)
        self.max_tokens = int(max_tokens)
        self.question = pairwise_question_for(template)
        self.max_concurrent_requests = max(1, int(max_concurrent_requests))
        self._limiter = _RateLimiter(requests_per_minute)
        self.name = name or (f"http:v1:model={self.model}:endpoint={self.display_url}:"
                             f"question={self.question.id}:temperature={self.temperature:g}:"
                             f"logprobs={self.logprobs}:max_tokens={self.max_tokens}")

    def __repr__(self) -> str:
        return f"HTTPJudge(endpoint={self.display_url!r}, model={self.model!r}, api_key_env={self.api_key_env!r})"

    __str__ = __repr__

    # -- public --------------------------------------------------------------------------------------------
    def compare(self, prompt: list[dict], first: str, second: str) -> Verdict:
        return self.compare_many([(prompt, first, second)])[0]

    def compare_many(self, items: list[Item]) -> list[Verdict]:
        questions = [q for prompt, first, second in items for q in ((prompt, first, second), (prompt, second, first))]
        if self.max_concurrent_requests == 1:
            answers = [self._ask(*q) for q in questions]
        else:
            pool = ThreadPoolExecutor(self.max_concurrent_requests)
            try:
                answers = list(pool.map(lambda q: self._ask(*q), questions))
            finally:  # after a failure, do not keep sending the queued requests
                pool.shutdown(wait=True, cancel_futures=True)
        return [Verdict(combine_orders(answers[2 * i]["p_a"], answers[2 * i + 1]["p_a"]),
                        {"first_as_a": answers[2 * i], "first_as_b": answers[2 * i + 1]})
                for i in range(len(items))]

    # -- one question --------------------------------------------------------------------------------------
    def _ask(self, prompt: list[dict], response_a: str, response_b: str) -> dict:
        payload = {"model": self.model, "temperature": self.temperature, "max_tokens": self.max_tokens,
                   "messages": self.question.messages(prompt, response_a, response_b)}
        if self.logprobs:
            payload.update(logprobs=True, top_logprobs=5)
        text = ""
        for _ in range(2):  # an unparseable answer gets one more try
            reply = self._post(payload)
            answer = parse_answer(reply, self.question.letters)
            if answer is not None:
                return answer
            try:
                text = reply["choices"][0]["message"]["content"] or ""
            except (KeyError, IndexError, TypeError):
                text = json.dumps(reply)[:200]
            logger.warning("HTTP judge %s: answer without a verdict (%r); asking again",
                           self.display_url, self._redact(text[:200]))
        raise JudgeRequestError(f"HTTP judge at {self.display_url} (model {self.model}) answered twice without "
                                f"an {'/'.join(self.question.letters)} verdict; last answer: "
                                f"{self._redact(text[:200])!r}")

    # -- transport -----------------------------------------------------------------------------------------
    def _api_key(self) -> str | None:
        if self.api_key_env is None:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise UserError(f"HTTP judge at {self.display_url}: environment variable {self.api_key_env} is not "
                            f"set; export the API key there (or set api_key_env: null for a server without auth)")
        return key

    def _redact(self, text: str) -> str:
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        return text.replace(key, "***") if key else text

    def _post(self, payload: dict) -> dict:
        body = json.dumps(payload).encode("utf-8")
        attempts = self.max_retries + 1
        problem, status = "", None
        for attempt in range(attempts):
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            key = self._api_key()  # read per request: a rotated key is picked up, nothing is kept on self
            if key:
                headers["Authorization"] = f"Bearer {key}"
            request = urllib.request.Request(self.endpoint, data=body, headers=headers, method="POST")
            del key, headers
            wait = None
            self._limiter.wait()
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    raw = response.read()
                try:
                    return json.loads(raw)
                except ValueError:
                    problem, status = f"reply is not JSON: {self._redact(raw[:200].decode('utf-8', 'replace'))!r}", 200
            except urllib.error.HTTPError as exc:
                status, message = exc.code, self._server_message(exc)
                if exc.code != 429 and exc.code < 500:
                    raise JudgeRequestError(f"HTTP judge at {self.display_url} (model {self.model}) was refused: "
                                            f"HTTP {exc.code}: {message}", status=exc.code) from None
                problem, wait = f"HTTP {exc.code}: {message}", _retry_after(exc.headers)
            except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException, OSError) as exc:
                problem, status = self._describe(exc), None
            if attempt + 1 == attempts:
                break
            if wait is None:
                wait = self.backoff_s * 2 ** attempt
            logger.warning("HTTP judge %s: attempt %d/%d failed (%s); retrying in %.2f s",
                           self.display_url, attempt + 1, attempts, problem, wait)
            time.sleep(wait)
        raise JudgeRequestError(f"HTTP judge at {self.display_url} (model {self.model}) failed after {attempts} "
                                f"attempt(s); last error: {problem}", status=status)

    def _describe(self, exc: BaseException) -> str:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(reason, TimeoutError):
            return f"timed out after {self.timeout_s:g} s"
        return self._redact(f"connection error: {reason}")

    def _server_message(self, exc: urllib.error.HTTPError) -> str:
        """The server's own explanation (OpenAI-style {"error": {"message": ...}} or the raw body), shortened
        and with the key redacted: some providers echo (part of) the key they rejected."""
        try:
            raw = exc.read(4096).decode("utf-8", "replace")
        except (OSError, http.client.HTTPException):
            raw = ""
        message = raw.strip()
        try:
            data = json.loads(raw)
            error = data.get("error", data) if isinstance(data, dict) else data
            message = str(error.get("message", error) if isinstance(error, dict) else error)
        except ValueError:
            pass
        return self._redact(message[:300] or exc.reason or "no message")
