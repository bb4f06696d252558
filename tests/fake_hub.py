"""A local stand-in for the Hugging Face Hub's HTTP API: just the endpoints an upload uses.

huggingface_hub talks to it through HF_ENDPOINT exactly as to the real hub (whoami, create the repository, validate
the card's YAML, ask the upload mode, commit), so tests exercise the real client code end to end; only the network
peer is local. Every file is answered "regular" (sent inline in the commit), so no LFS or Xet storage is needed.
Tokens map to users; a commit's files are kept in memory for the test to read back.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeHub:
    def __init__(self, tokens: dict[str, dict]):
        """tokens: token -> {"name": user, "orgs": [names], "role": "write" | "read"}."""
        self.tokens = tokens
        self.repos: dict[str, dict] = {}  # repo id -> {"private": bool, "files": {path: bytes}, "commits": [...]}
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                hub.handle(self, "GET")

            def do_POST(self):
                hub.handle(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -------------------------------------------------------------------------------------------- requests
    def handle(self, request, method: str) -> None:
        self.requests.append(f"{method} {request.path}")
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        user = self.tokens.get(request.headers.get("Authorization", "").removeprefix("Bearer "))
        if user is None:
            return self.reply(request, 401, {"error": "Invalid credentials in Authorization header"})
        path = request.path.split("?")[0]
        if method == "GET" and path == "/api/whoami-v2":
            return self.reply(request, 200, {"type": "user", "name": user["name"],
                                             "orgs": [{"name": o} for o in user.get("orgs", [])],
                                             "auth": {"accessToken": {"role": user.get("role", "write")}}})
        if user.get("role") == "read":
            return self.reply(request, 403, {"error": "read-only token"})
        if method == "POST" and path == "/api/repos/create":
            payload = json.loads(body)
            repo = f"{payload.get('organization') or user['name']}/{payload['name']}"
            self.repos.setdefault(repo, {"private": payload.get("visibility") == "private", "files": {},
                                         "commits": []})
            return self.reply(request, 200, {"url": f"{self.endpoint}/{repo}"})
        if method == "POST" and path == "/api/validate-yaml":
            return self.reply(request, 200, {})
        match = re.fullmatch(r"/api/models/([^/]+/[^/]+)/(preupload|commit)/([^/]+)", path)
        if method == "POST" and match and match.group(1) in self.repos:
            repo = self.repos[match.group(1)]
            if match.group(2) == "preupload":
                files = json.loads(body)["files"]
                return self.reply(request, 200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                            "shouldIgnore": False} for f in files]})
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            added = {item["value"]["path"]: base64.b64decode(item["value"]["content"])
                     for item in lines if item["key"] == "file"}
            repo["files"].update(added)
            repo["commits"].append({"summary": lines[0]["value"]["summary"], "files": sorted(added)})
            return self.reply(request, 200, {"commitUrl": f"{self.endpoint}/{match.group(1)}/commit/{'0' * 40}",
                                             "commitOid": "0" * 40})
        return self.reply(request, 404, {"error": f"not found: {method} {path}"})

    @staticmethod
    def reply(request, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)


def use_hub(monkeypatch, hub: FakeHub | None, token: str | None, tmp_path) -> None:
    """Point huggingface_hub at `hub` (None: an address nobody listens on) with `token` (None: no token at all,
    neither in the environment nor stored), online."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint if hub else "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-stored-token"))
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    if token is None:
        monkeypatch.delenv("HF_TOKEN", raising=False)
    else:
        monkeypatch.setenv("HF_TOKEN", token)
