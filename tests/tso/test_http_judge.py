"""HTTPJudge against a real OpenAI-compatible HTTP server on loopback (a thread in this process).

The fake server's judge prefers the response containing "GOOD"; every request is recorded so the tests can
count retries and check what was sent.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tokensift.errors import UserError
from tokensift.judges.http import HTTPJudge, JudgeRequestError, parse_answer
from tokensift.judges.cache import CachedJudge

KEY = "sk-test-SECRET-7f3a9c0e1d2b4a68"
PROMPT = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Say something nice."}]
GOOD, BAD = "GOOD: you are wonderful.", "BAD: go away."


def completion(text: str, top: list[tuple[str, float]] | None = None) -> dict:
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    if top is not None:
        choice["logprobs"] = {"content": [{"token": text, "logprob": top[0][1],
                                           "top_logprobs": [{"token": t, "logprob": lp} for t, lp in top]}]}
    return {"id": "cmpl-1", "object": "chat.completion", "choices": [choice]}


def good_is_a(body: dict) -> bool:
    content = body["messages"][0]["content"]
    return content.index("GOOD") < content.index("BAD")


def logprob_answer(body: dict) -> tuple[int, dict, dict]:
    """P(A)=0.6, P(B)=0.3 when GOOD is A; P(A)=0.2, P(B)=0.7 when GOOD is B (plus noise tokens)."""
    if good_is_a(body):
        top = [("A", math.log(0.6)), (" B", math.log(0.3)), ("C", math.log(0.05))]
    else:
        top = [("B", math.log(0.7)), ("A", math.log(0.2)), ("\n", math.log(0.05))]
    return 200, {}, completion(top[0][0], top)


def text_answer(body: dict) -> tuple[int, dict, dict]:
    return 200, {}, completion("Response A is better." if good_is_a(body) else "B")


class FakeServer:
    """ThreadingHTTPServer on 127.0.0.1, port 0. `behave(n, body)` -> (status, headers, json or text, [delay])."""

    def __init__(self, behave):
        self.behave = behave
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "body": body, "time": time.monotonic(),
                                        "authorization": self.headers.get("Authorization")})
                status, headers, payload, *delay = server.behave(len(server.requests), body)
                if delay:
                    time.sleep(delay[0])
                data = (json.dumps(payload) if not isinstance(payload, str) else payload).encode()
                try:
                    self.send_response(status)
                    for name, value in {"Content-Type": "application/json", **headers}.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.endpoint = self.url + "/v1/chat/completions"
        threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve(monkeypatch):
    monkeypatch.setenv("TOKENSIFT_TEST_KEY", KEY)
    servers = []

    def start(behave):
        servers.append(FakeServer(behave))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def judge_for(server, **kw) -> HTTPJudge:
    kw = {"model": "judge-model", "api_key_env": "TOKENSIFT_TEST_KEY", "timeout_s": 2, "backoff_s": 0.01, **kw}
    return HTTPJudge(server.url, **kw)


def test_logprobs_verdict_and_request_contents(serve):
    server = serve(lambda n, body: logprob_answer(body))
    judge = judge_for(server)
    verdict = judge.compare(PROMPT, GOOD, BAD)
    p_forward, p_swapped = 0.6 / 0.9, 0.2 / 0.9  # P(A) renormalised over A and B in each order
    assert verdict.p_first == pytest.approx((p_forward + 1 - p_swapped) / 2) == pytest.approx(13 / 18)
    assert verdict.detail["first_as_a"]["source"] == "logprobs"
    assert verdict.detail["first_as_b"]["p_a"] == pytest.approx(2 / 9)
    assert judge.compare(PROMPT, BAD, GOOD).p_first == pytest.approx(5 / 18)
    assert len(server.requests) == 4
    sent = server.requests[0]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["authorization"] == f"Bearer {KEY}"
    body = sent["body"]
    assert {k: body[k] for k in ("model", "temperature", "max_tokens", "logprobs", "top_logprobs")} == {
        "model": "judge-model", "temperature": 0.0, "max_tokens": 5, "logprobs": True, "top_logprobs": 5}
    question = body["messages"][0]["content"]
    assert body["messages"][0]["role"] == "user"
    assert "[Conversation]\nSystem: Be kind.\n\nUser: Say something nice." in question
    assert f"[Response A]\n{GOOD}\n\n[Response B]\n{BAD}" in question
    assert question.endswith("Which response is better, A or B? Answer with a single letter.")


def test_text_verdict_and_position_bias_cancels(serve):
    server = serve(lambda n, body: text_answer(body))
    judge = judge_for(server, logprobs=False)
    verdict = judge.compare(PROMPT, GOOD, BAD)
    assert verdict.p_first == 1.0
    assert verdict.detail["first_as_a"] == {"p_a": 1.0, "source": "text", "text": "Response A is better."}
    assert verdict.detail["first_as_b"] == {"p_a": 0.0, "source": "text", "text": "B"}
    assert "logprobs" not in server.requests[0]["body"]
    always_a = serve(lambda n, body: (200, {}, completion("A")))  # pure position bias
    assert judge_for(always_a).compare(PROMPT, GOOD, BAD).p_first == 0.5


def test_unparseable_answer_is_asked_again_once(serve):
    server = serve(lambda n, body: (200, {}, completion("Hmm." if n == 1 else "A")))
    assert judge_for(server).compare(PROMPT, GOOD, BAD).p_first == 0.5
    assert len(server.requests) == 3  # 1 unparseable + 1 repeat for the first order, 1 for the second

    stubborn = serve(lambda n, body: (200, {}, completion("I cannot decide.")))
    with pytest.raises(JudgeRequestError) as info:
        judge_for(stubborn).compare(PROMPT, GOOD, BAD)
    assert str(info.value) == (f"HTTP judge at {stubborn.endpoint} (model judge-model) answered twice without an "
                               "A/B verdict; last answer: 'I cannot decide.'")
    assert len(stubborn.requests) == 2


def test_timeout_is_retried(serve):
    server = serve(lambda n, body: (*logprob_answer(body), 0.6 if n == 1 else 0))
    start = time.monotonic()
    verdict = judge_for(server, timeout_s=0.2).compare(PROMPT, GOOD, BAD)
    assert verdict.p_first == pytest.approx(13 / 18)
    assert len(server.requests) == 3
    assert time.monotonic() - start < 1.5

    slow = serve(lambda n, body: (*logprob_answer(body), 0.6))
    with pytest.raises(JudgeRequestError) as info:
        judge_for(slow, timeout_s=0.2, max_retries=1).compare(PROMPT, GOOD, BAD)
    assert str(info.value) == (f"HTTP judge at {slow.endpoint} (model judge-model) failed after 2 attempt(s); "
                               "last error: timed out after 0.2 s")
    assert info.value.status is None and len(slow.requests) == 2


def test_server_error_then_success(serve):
    server = serve(lambda n, body: (500, {}, {"error": {"message": "boom"}}) if n == 1 else logprob_answer(body))
    assert judge_for(server).compare(PROMPT, GOOD, BAD).p_first == pytest.approx(13 / 18)
    assert len(server.requests) == 3


def test_server_error_forever(serve, caplog):
    server = serve(lambda n, body: (503, {}, {"error": {"message": "model overloaded"}}))
    with caplog.at_level(logging.WARNING), pytest.raises(JudgeRequestError) as info:
        judge_for(server, max_retries=2).compare(PROMPT, GOOD, BAD)
    assert str(info.value) == (f"HTTP judge at {server.endpoint} (model judge-model) failed after 3 attempt(s); "
                               "last error: HTTP 503: model overloaded")
    assert info.value.status == 503 and len(server.requests) == 3
    assert [r.getMessage() for r in caplog.records] == [
        f"HTTP judge {server.endpoint}: attempt 1/3 failed (HTTP 503: model overloaded); retrying in 0.01 s",
        f"HTTP judge {server.endpoint}: attempt 2/3 failed (HTTP 503: model overloaded); retrying in 0.02 s"]


def test_client_error_is_not_retried_and_key_is_redacted(serve):
    # Like some real providers, this server echoes the rejected key in its message.
    server = serve(lambda n, body: (401, {}, {"error": {"message": f"Incorrect API key provided: {KEY}"}}))
    with pytest.raises(JudgeRequestError) as info:
        judge_for(server, max_retries=4).compare(PROMPT, GOOD, BAD)
    assert str(info.value) == (f"HTTP judge at {server.endpoint} (model judge-model) was refused: HTTP 401: "
                               "Incorrect API key provided: ***")
    assert info.value.status == 401 and len(server.requests) == 1
    assert isinstance(info.value, UserError)


def test_rate_limited_request_honours_retry_after(serve):
    server = serve(lambda n, body: (429, {"Retry-After": "0.3"}, "slow down") if n == 1 else logprob_answer(body))
    assert judge_for(server, backoff_s=0.001).compare(PROMPT, GOOD, BAD).p_first == pytest.approx(13 / 18)
    assert len(server.requests) == 3
    assert server.requests[1]["time"] - server.requests[0]["time"] >= 0.3


def test_missing_key_names_the_variable_and_sends_nothing(serve, monkeypatch):
    server = serve(lambda n, body: logprob_answer(body))
    monkeypatch.delenv("TOKENSIFT_TEST_KEY")
    with pytest.raises(UserError) as info:
        judge_for(server).compare(PROMPT, GOOD, BAD)
    assert str(info.value) == (f"HTTP judge at {server.endpoint}: environment variable TOKENSIFT_TEST_KEY is not "
                               "set; export the API key there (or set api_key_env: null for a server without auth)")
    assert server.requests == []
    no_auth = judge_for(server, api_key_env=None)  # e.g. a local vLLM server
    assert no_auth.compare(PROMPT, GOOD, BAD).p_first == pytest.approx(13 / 18)
    assert server.requests[0]["authorization"] is None


def test_client_side_rate_limit_spaces_requests(serve):
    server = serve(lambda n, body: logprob_answer(body))
    judge = judge_for(server, requests_per_minute=600)
    started = time.monotonic()
    judge.compare_many([(PROMPT, GOOD, BAD), (PROMPT, BAD, GOOD)])
    elapsed = time.monotonic() - started
    assert len(server.requests) == 4
    # 60 s / 600 = 0.1 s between sends: 4 requests take at least 3 intervals. Measured on the client, where the
    # limiter acts (arrival times at the server can bunch up on a loaded machine).
    assert elapsed >= 0.3 - 0.01


def test_connection_refused_is_retried_then_reported(monkeypatch):
    monkeypatch.setenv("TOKENSIFT_TEST_KEY", KEY)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    judge = HTTPJudge(f"http://127.0.0.1:{port}/v1", "m", api_key_env="TOKENSIFT_TEST_KEY", max_retries=2,
                      backoff_s=0.01)
    with pytest.raises(JudgeRequestError, match=r"failed after 3 attempt\(s\); last error: connection error: "):
        judge.compare(PROMPT, GOOD, BAD)


def test_concurrent_requests_give_the_same_verdicts(serve):
    server = serve(lambda n, body: logprob_answer(body))
    items = [(PROMPT, GOOD, BAD), (PROMPT, BAD, GOOD), ([{"role": "user", "content": "hi"}], GOOD, BAD)]
    parallel = judge_for(server, max_concurrent_requests=4).compare_many(items)
    assert [v.p_first for v in parallel] == pytest.approx([13 / 18, 5 / 18, 13 / 18])
    assert len(server.requests) == 6


def test_cached_http_judge_second_run_sends_nothing(serve, tmp_path):
    server = serve(lambda n, body: logprob_answer(body))
    items = [(PROMPT, GOOD, BAD), (PROMPT, BAD, GOOD)]
    with CachedJudge(judge_for(server), tmp_path / "judge.sqlite") as cached:
        first_run = cached.compare_many(items)
    assert len(server.requests) == 4
    with CachedJudge(judge_for(server), tmp_path / "judge.sqlite") as cached:
        second_run = cached.compare_many(items)
        assert cached.hits == 2 and cached.misses == 0
    assert len(server.requests) == 4
    assert second_run == first_run


def test_alpaca_eval_question_with_m_and_m_upper(serve):
    """AlpacaEval's weighted judge: a system and a user message, max_tokens 1, the verdict from the log-probs of
    "m" (first output better) and "M"."""
    def answer(n, body):
        user = body["messages"][-1]["content"]
        if user.index("GOOD") < user.index("BAD"):
            top = [("m", math.log(0.7)), ("M", math.log(0.2)), ("The", math.log(0.05))]
        else:
            top = [("M", math.log(0.6)), ("m", math.log(0.3))]
        return 200, {}, completion(top[0][0], top)

    server = serve(answer)
    judge = judge_for(server, template="alpaca_eval", max_tokens=1)
    verdict = judge.compare([{"role": "user", "content": "Say something nice."}], GOOD, BAD)
    assert verdict.p_first == pytest.approx((0.7 / 0.9 + 1 - 0.3 / 0.9) / 2)
    body = server.requests[0]["body"]
    assert [m["role"] for m in body["messages"]] == ["system", "user"] and body["max_tokens"] == 1
    assert '"instruction": """Say something nice."""' in body["messages"][1]["content"]
    assert parse_answer(completion("M"), ("m", "M"))["p_a"] == 0.0  # text fallback with the question's letters
    assert parse_answer(completion("A"), ("m", "M")) is None


def test_parse_answer_variants():
    both = completion("A", [(" A", math.log(0.3)), ("A", math.log(0.3)), ("B", math.log(0.2))])
    assert parse_answer(both)["p_a"] == pytest.approx(0.6 / 0.8)  # whitespace variants are summed
    only_a = completion("A", [("A", math.log(0.9)), ("C", math.log(0.1))])
    assert parse_answer(only_a)["p_a"] == 1.0
    late = completion("**A**", [("**", -0.1), ("The", -3.0)])
    late["choices"][0]["logprobs"]["content"].append({"token": "B", "logprob": -0.2,
                                                      "top_logprobs": [{"token": "B", "logprob": -0.2}]})
    assert parse_answer(late)["p_a"] == 0.0  # first position that mentions a letter decides
    assert parse_answer(completion("Both are fine; neither.")) is None  # "B" inside a word does not count
    assert parse_answer({"error": "nope"}) is None


def test_endpoint_and_name_hide_credentials_in_urls():
    judge = HTTPJudge("https://user:pw@api.example.com/v1?key=abc", "gpt-x", api_key_env=None)
    assert judge.display_url == "https://api.example.com/v1/chat/completions"
    assert "pw" not in judge.name and "abc" not in judge.name and "pw" not in repr(judge)
    assert HTTPJudge("http://h:1", "m").endpoint == "http://h:1/v1/chat/completions"
    assert HTTPJudge("http://h:1/v1/chat/completions/", "m").endpoint == "http://h:1/v1/chat/completions"
    with pytest.raises(UserError, match="must start with http:// or https://"):
        HTTPJudge("ftp://h", "m")


def test_key_never_leaks(serve, tmp_path, caplog):
    """Run the judge through success, retries and failures; the key must show up nowhere we can see."""
    seen: list[str] = []
    behaviours = [
        lambda n, body: logprob_answer(body),
        lambda n, body: (500, {}, {"error": {"message": f"upstream rejected {KEY}"}}),
        lambda n, body: (403, {}, {"error": {"message": f"key {KEY} is not allowed"}}),
        lambda n, body: (200, {}, completion(f"no idea, {KEY}")),
        lambda n, body: (*logprob_answer(body), 0.5),
    ]
    with caplog.at_level(logging.DEBUG):
        for behave in behaviours:
            server = serve(behave)
            judge = judge_for(server, max_retries=1, timeout_s=0.2)
            cached = CachedJudge(judge, tmp_path / "judge.sqlite")
            seen += [repr(judge), str(judge), judge.name, repr(cached), json.dumps(vars(judge), default=repr)]
            try:
                seen.append(json.dumps(cached.compare(PROMPT, GOOD, BAD).detail))
            except UserError as exc:
                seen += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
            cached.close()
            assert server.requests and all(r["authorization"] == f"Bearer {KEY}" for r in server.requests)
    seen.append(caplog.text)
    seen.append((tmp_path / "judge.sqlite").read_bytes().decode("latin-1"))
    assert len(seen) > 20 and any("***" in s for s in seen)  # the echoing servers were redacted
    assert not [s for s in seen if KEY in s]
