"""`tokensift tso review --serve`: the pairs that go to people, as a local web page (docs/tso.md, "Review in
the browser").

Python's standard library only (http.server's ThreadingHTTPServer): no third-party web stack, so no extra to
install, and nothing from the internet (the page's CSS and JS are inline, in tso/review_page.py).

Who gets in:
- it binds 127.0.0.1 by default; another interface needs `allow_remote=true` and prints a warning;
- every request needs the access token printed in the URL (random per start, as Jupyter does): as `?token=`,
  an `Authorization: token ...` header, or the HttpOnly, SameSite=Strict cookie the page sets on first visit
  (the page then drops the token from the address bar);
- on loopback the Host header must name the loopback (DNS rebinding), and every POST carries the page's CSRF
  token (header X-CSRF-Token); JSON bodies only, at most MAX_BODY bytes;
- routes are fixed strings: no request parameter reaches the file system (pair ids are looked up in the
  run's reviewed pairs); a Content-Security-Policy with a per-start nonce lets only the page's own script run.

What it shows: each reviewed pair (tso/review.py reasons, every judged round) with the prompt's messages, the two
answers as neutral A and B (sides shuffled per pair, seeded by the run's seed and the pair id), rendered by
tso/markdown.py (escape first), the review reason, and on demand the judge's verdict and the prior's order.
Decisions go through tso/review_journal.py (fsynced before the answer; the decisions file rewritten from it).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
import secrets
import socket
import sys
import traceback
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tokensift.errors import UserError
from tokensift.tso.review import REASONS
from tokensift.tso.review_journal import DecisionJournal, journal_path
from tokensift.tso.review_page import page_html, review_items

MAX_BODY = 64 * 1024  # a decision is a few hundred bytes
DRAIN_LIMIT = 16 << 20  # a larger body is read and discarded (so the client sees the 413) up to this much
MAX_NOTE = 2000
REVIEWER = re.compile(r"^[\w .@+-]{1,64}$")
REQUEST_ID = re.compile(r"^[\w-]{1,64}$")
CHOICES = ("a", "b", "drop")


def default_decisions_file(config) -> Path:
    return Path(config.decisions) if config.decisions else Path(config.output_dir) / "decisions.jsonl"


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class ReviewServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address, items: list[dict], sides: dict[str, bool], journal: DecisionJournal,
                 meta: dict, check_host: bool):
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        super().__init__(address, Handler)
        self.items, self.sides, self.journal, self.meta = items, sides, journal, meta
        self.by_id = {item["id"]: item for item in items}
        self.token, self.csrf, self.nonce = (secrets.token_urlsafe(32), secrets.token_urlsafe(32),
                                             secrets.token_urlsafe(16))
        self.check_host = check_host
        self.port = self.server_address[1]
        self.cookie = f"tokensift-review-{self.port}"

    @property
    def url(self) -> str:
        host = self.server_address[0]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/?token={self.token}"

    def decide(self, body: dict) -> dict:
        pair_id, choice = body.get("pair_id"), body.get("choice")
        if not isinstance(pair_id, str) or pair_id not in self.by_id:
            raise Refused(404, "unknown pair id")
        if choice not in CHOICES:
            raise Refused(400, f"choice must be one of {', '.join(CHOICES)}")
        reviewer, request_id = _reviewer(body), _request_id(body)
        note = body.get("note", "")
        if not isinstance(note, str) or len(note) > MAX_NOTE:
            raise Refused(400, f"note must be text of at most {MAX_NOTE} characters")
        chosen_is_a = self.sides[pair_id]
        decision = "drop" if choice == "drop" else ("keep" if (choice == "a") == chosen_is_a else "flip")
        entry = self.journal.decide(reviewer, pair_id, decision, choice, note.strip(), request_id)
        return {"seq": entry["seq"], "pair_id": pair_id, "state": self.journal.state(pair_id),
                "summary": self.journal.summary()}

    def undo(self, body: dict) -> dict:
        seq = body.get("seq")
        if isinstance(seq, bool) or not isinstance(seq, int):
            raise Refused(400, "seq must be the number of the decision to undo")
        try:
            entry = self.journal.undo(_reviewer(body), seq, _request_id(body))
        except LookupError as exc:
            raise Refused(409, str(exc)) from None
        return {"seq": entry["seq"], "pair_id": entry["pair_id"], "state": self.journal.state(entry["pair_id"]),
                "summary": self.journal.summary()}

    def snapshot(self) -> dict:
        return {"pairs": self.items, "states": {i["id"]: self.journal.state(i["id"]) for i in self.items},
                "summary": self.journal.summary(), "meta": self.meta, "reasons": list(REASONS)}


def _reviewer(body: dict) -> str:
    reviewer = body.get("reviewer", "reviewer")
    if not isinstance(reviewer, str) or not REVIEWER.match(reviewer.strip() or "?"):
        raise Refused(400, "reviewer: 1-64 letters, digits, spaces or . @ + - _")
    return reviewer.strip()


def _request_id(body: dict) -> str | None:
    value = body.get("request_id")
    if value is not None and (not isinstance(value, str) or not REQUEST_ID.match(value)):
        raise Refused(400, "request_id: 1-64 letters, digits, - or _")
    return value


class Handler(BaseHTTPRequestHandler):
    server: ReviewServer
    protocol_version = "HTTP/1.1"
    server_version = "tokensift-review"
    sys_version = ""
    timeout = 30  # a client that stops sending is dropped

    def log_message(self, format, *args):  # request lines carry the access token: never logged
        pass

    def do_GET(self):
        self._answer("GET")

    def do_POST(self):
        self._answer("POST")

    def do_PUT(self):
        self._answer("PUT")

    do_DELETE = do_PATCH = do_PUT

    def _answer(self, method: str) -> None:
        extra = {}
        try:
            status, kind, body, extra = self._route(method)
        except Refused as refused:
            status, kind, body = refused.status, "application/json", json.dumps({"error": str(refused)}).encode()
        except Exception:  # a bug must not stop the server; the reviewer sees a 500 and can retry
            traceback.print_exc(file=sys.stderr)
            status, kind, body = 500, "application/json", b'{"error": "internal error"}'
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Frame-Options", "DENY")
        nonce = self.server.nonce
        self.send_header("Content-Security-Policy", f"default-src 'none'; script-src 'nonce-{nonce}'; style-src "
                         f"'nonce-{nonce}'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action "
                         "'none'; frame-ancestors 'none'")
        for key, value in extra.items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _route(self, method: str):
        url = urlsplit(self.path)
        if self.server.check_host and not self._loopback_host():
            self._discard_body()
            self.close_connection = True
            raise Refused(403, "unexpected Host header (the page is served on the loopback only)")
        query_token = (parse_qs(url.query).get("token") or [None])[0]
        if not self._authorised(query_token):
            self._discard_body()
            self.close_connection = True
            raise Refused(403, "missing or wrong access token: open the URL the server printed")
        if method == "GET" and url.path == "/":
            extra = {}
            if query_token:
                extra["Set-Cookie"] = (f"{self.server.cookie}={self.server.token}; HttpOnly; SameSite=Strict; "
                                       "Path=/")
            page = page_html(self.server.csrf, self.server.nonce).encode("utf-8")
            return 200, "text/html; charset=utf-8", page, extra
        if method == "GET" and url.path == "/api/pairs":
            return 200, "application/json", _json(self.server.snapshot()), {}
        if method == "POST" and url.path in ("/api/decide", "/api/undo"):
            body = self._body()
            action = self.server.decide if url.path == "/api/decide" else self.server.undo
            return 200, "application/json", _json(action(body)), {}
        if url.path in ("/", "/api/pairs", "/api/decide", "/api/undo"):
            self._discard_body()
            raise Refused(405, f"{method} is not allowed here")
        self._discard_body()
        raise Refused(404, "not found")

    def _loopback_host(self) -> bool:
        host = (self.headers.get("Host") or "").strip().lower()
        name, _, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
        if port != str(self.server.port):
            return False
        return name in ("localhost", "127.0.0.1", "[::1]")

    def _authorised(self, query_token: str | None) -> bool:
        token = self.server.token
        given = [query_token]
        auth = self.headers.get("Authorization") or ""
        if auth.lower().startswith("token "):
            given.append(auth[6:].strip())
        cookie = SimpleCookie()
        try:
            cookie.load(self.headers.get("Cookie") or "")
        except Exception:
            pass
        if self.server.cookie in cookie:
            given.append(cookie[self.server.cookie].value)
        return any(isinstance(g, str) and hmac.compare_digest(g.encode(), token.encode()) for g in given)

    def _length(self) -> int | None:
        raw = self.headers.get("Content-Length")
        if raw is None:
            return None
        try:
            length = int(raw)
        except ValueError:
            self.close_connection = True
            raise Refused(400, "bad Content-Length") from None
        if length < 0:
            self.close_connection = True
            raise Refused(400, "bad Content-Length")
        return length

    def _discard_body(self) -> None:
        length = self._length() or 0
        if length > DRAIN_LIMIT:
            self.close_connection = True
            return
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 16))
            if not chunk:
                break
            length -= len(chunk)

    def _body(self) -> dict:
        csrf = self.headers.get("X-CSRF-Token") or ""
        length = self._length()
        if not hmac.compare_digest(csrf.encode(), self.server.csrf.encode()):
            self._discard_body()
            raise Refused(403, "missing or wrong CSRF token (reload the page)")
        if length is None:
            self.close_connection = True
            raise Refused(411, "a Content-Length is required")
        if length > MAX_BODY:
            self._discard_body()
            self.close_connection = True
            raise Refused(413, f"request body over {MAX_BODY} bytes")
        raw = self.rfile.read(length)
        if (self.headers.get("Content-Type") or "").split(";")[0].strip().lower() != "application/json":
            raise Refused(415, "send JSON (Content-Type: application/json)")
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise Refused(400, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise Refused(400, "the body must be a JSON object")
        return body


def _json(payload) -> bytes:
    return json.dumps(payload, ensure_ascii=False, allow_nan=False).encode("utf-8")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_server(config, host: str | None = None, port: int | None = None) -> ReviewServer:
    """The server for `config`'s run (not yet serving; call serve_forever). Refuses a non-loopback host
    without allow_remote."""
    host = config.host if host is None else host
    port = config.port if port is None else port
    remote = not is_loopback(host)
    if remote and not config.allow_remote:
        raise UserError(f"host={host} serves the review page beyond this machine; pass allow_remote=true as well "
                        "if that is meant (anyone who can reach it and has the URL can decide pairs)")
    items, sides, extra = review_items(config)
    decisions = default_decisions_file(config)
    journal = DecisionJournal(decisions, {i["id"]: {"review_reason": i["reason"], "round": i["round"]}
                                          for i in items})
    meta = {"run": str(config.output_dir), "decisions_file": str(decisions), "journal": str(journal_path(decisions)),
            "rounds": sorted({i["round"] for i in items}), **extra}
    try:
        return ReviewServer((host, port), items, sides, journal, meta, check_host=not remote)
    except OSError as exc:
        raise UserError(f"cannot serve on {host}:{port} ({exc.strerror or exc}); choose another port= "
                        "(port=0 picks a free one)") from None


def serve(config) -> int:
    """`tokensift tso review --serve`: print the URL and serve until Ctrl-C."""
    from collections import Counter

    server = open_server(config)
    items = server.items
    reasons = Counter(i["reason"] for i in items)
    summary = server.journal.summary()
    if not is_loopback(config.host):
        print(f"[tso] WARNING: serving the review page on {config.host}, not only this machine: anyone who can "
              "reach this port and has the URL (with its token) can read the pairs and decide them; plain HTTP, "
              "so the token crosses the network unencrypted", file=sys.stderr, flush=True)
    print(f"[tso] review page for {config.output_dir}: {len(items)} pairs ("
          + ", ".join(f"{r} {reasons[r]}" for r in REASONS if reasons[r]) + f"), {summary['decided']} decided, "
          f"{summary['conflicts']} in conflict", flush=True)
    print(f"[tso] decisions are written to {server.meta['decisions_file']} (every click is kept in "
          f"{server.meta['journal']}); to go on, rerun `tokensift tso run` as before with "
          f"decisions={server.meta['decisions_file']}", flush=True)
    print(f"[tso] open this URL in a browser on this machine (Ctrl-C stops the server):\n    {server.url}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    summary = server.journal.summary()
    print(f"[tso] review server stopped: {summary['decided']} of {len(items)} pairs decided "
          f"({summary['conflicts']} in conflict) in {server.meta['decisions_file']}", flush=True)
    return 0
