"""Security: no pickle or eval on inputs, remote code only when asked, safe YAML, API keys only from the
environment and never written anywhere, and no output path steered by a crafted name.

Every "it never ran" assertion has a marker file the payload would write, and where it costs little a positive
control shows that the same payload does run when it is allowed to (so the negative test is not vacuous).
"""

from __future__ import annotations

import ast
import builtins
import json
import logging
import math
import shutil
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from conftest import CORPUS, write_pairs
from reliability_helpers import report, run_cli, save_tiny_model, write_jsonl

SRC = Path(__file__).resolve().parents[2] / "src" / "tokensift"
KEY = "sk-reliability-DO-NOT-LEAK-5d1e9b7c3a"
KEY_ENV = "TOKENSIFT_RELIABILITY_KEY"
COUNTS = {"checks": 0}


@pytest.fixture(scope="module", autouse=True)
def summary(request):
    yield
    report(request.config, f"security checks passed: {COUNTS['checks']}")


def passed() -> None:
    COUNTS["checks"] += 1


# ------------------------------------------------------------------------------------------------ static scan
def dotted(node) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return ""


def keyword(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def is_true(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def unsafe_calls(tree: ast.AST) -> list[tuple[int, str]]:
    """Calls that load pickles, evaluate text as code, read YAML unsafely, or trust remote code outright."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
            if any(n and n.split(".")[0] in ("pickle", "cPickle", "dill", "joblib", "shelve", "marshal", "cloudpickle")
                   for n in names):
                found.append((node.lineno, "imports a pickle-family module"))
        if not isinstance(node, ast.Call):
            continue
        name = dotted(node.func)
        last = name.rsplit(".", 1)[-1]
        if name in ("eval", "exec", "compile", "__import__"):
            found.append((node.lineno, f"{name}() on text"))
        if name == "torch.load" or name.endswith(".torch.load"):
            if not is_true(keyword(node, "weights_only")):
                found.append((node.lineno, "torch.load without weights_only=True"))
        if name.startswith("yaml.") and last in ("load", "load_all", "unsafe_load", "full_load", "full_load_all",
                                                 "unsafe_load_all"):
            loader = dotted(keyword(node, "Loader")) if keyword(node, "Loader") is not None else ""
            if last.startswith(("unsafe", "full")) or "Safe" not in loader:
                found.append((node.lineno, f"{name} (use yaml.safe_load)"))
        if last in ("read_pickle", "from_pickle") or (last == "load" and is_true(keyword(node, "allow_pickle"))):
            found.append((node.lineno, f"{name} reads pickles"))
        if is_true(keyword(node, "trust_remote_code")):
            found.append((node.lineno, "trust_remote_code=True hard-coded"))
        if is_true(keyword(node, "shell")) or name in ("os.system", "os.popen"):
            found.append((node.lineno, f"{name} runs a shell"))
    return found


def test_the_source_has_no_pickle_loads_eval_unsafe_yaml_or_hard_coded_remote_code():
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 40
    problems = {str(f.relative_to(SRC)): unsafe_calls(ast.parse(f.read_text(), str(f))) for f in files}
    problems = {f: p for f, p in problems.items() if p}
    assert not problems, problems
    # the checkpoint reader is the one place torch.load appears, always with weights_only=True
    loads = [n for f in files for n in ast.walk(ast.parse(f.read_text())) if isinstance(n, ast.Call)
             and dotted(n.func) == "torch.load"]
    assert len(loads) >= 2 and all(is_true(keyword(n, "weights_only")) for n in loads)
    passed()


def test_the_scanner_catches_what_it_looks_for():
    bad = ast.parse("import pickle\nimport yaml\nimport torch\nyaml.load(t)\nyaml.load(t, Loader=yaml.Loader)\n"
                    "torch.load(p)\ntorch.load(p, weights_only=False)\neval(s)\nexec(s)\nnp.load(p, allow_pickle=True)\n"
                    "m(trust_remote_code=True)\nsubprocess.run(c, shell=True)\nyaml.full_load(t)\n")
    assert len(unsafe_calls(bad)) == 11
    good = ast.parse("yaml.safe_load(t)\ntorch.load(p, weights_only=True)\nmodel.eval()\nre.compile(x)\n"
                     "m(trust_remote_code=flag)\n")
    assert unsafe_calls(good) == []
    passed()


# ------------------------------------------------------------------------------------------------ remote code
def custom_code_model(folder: Path, marker: Path) -> Path:
    """A real model folder whose config asks for custom code (auto_map); the code writes `marker` on import."""
    save_tiny_model(folder)
    (folder / "custom_code.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).write_text('custom code ran')\n"
        "from transformers import LlamaConfig, LlamaForCausalLM\n\n\n"
        "class CustomConfig(LlamaConfig):\n    model_type = 'tokensift-custom'\n\n\n"
        "class CustomModel(LlamaForCausalLM):\n    config_class = CustomConfig\n")
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="tokensift-custom", architectures=["CustomModel"],
                  auto_map={"AutoConfig": "custom_code.CustomConfig", "AutoModelForCausalLM": "custom_code.CustomModel"})
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_remote_code_is_refused_unless_enabled(tmp_path, capsys, monkeypatch):
    marker = tmp_path / "MARKER-custom-code"
    model = custom_code_model(tmp_path / "custom", marker)
    data = write_pairs(tmp_path / "pairs.jsonl", n=4)
    message = f"model '{model}' needs custom code from its repository; pass trust_remote_code=true only if you trust it"
    for argv in (["train", "--data", data, "--model", model, "--output-dir", tmp_path / "run"],
                 ["score", "--data", data, "--oracle", model, "--reference", model, "--output-dir", tmp_path / "s"],
                 ["eval", "pairs", "--data", data, "--model", model, "--output", tmp_path / "e.json"]):
        code, out, err = run_cli(argv + ["progress=false"], capsys)
        assert code == 2 and "Traceback" not in out + err, err
        assert err.strip() == f"error: {message}"
        assert not marker.exists(), f"{argv[0]} ran the repository's code"
    from tokensift.errors import UserError
    from tokensift.judges import RewardModelJudge

    with pytest.raises(UserError, match="could not load model"):
        RewardModelJudge(str(model))
    assert not marker.exists()
    passed()

    # Positive control: with the flag the same folder's code runs (modules cached in tmp, not in ~/.cache).
    import transformers.dynamic_module_utils as dynamic

    monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", str(tmp_path / "hf-modules"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    from tokensift.models import load_model

    assert type(load_model(str(model), trust_remote_code=True)).__name__ == "CustomModel"
    assert marker.read_text() == "custom code ran"
    passed()


class Payload:
    """Unpickling this calls builtins.open(marker, "w"): a stand-in for any code a pickle can run."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


def test_pickled_weights_and_checkpoints_never_execute(tmp_path, capsys):
    marker = tmp_path / "MARKER-pickle"
    evil = tmp_path / "evil.pt"
    torch.save({"lm_head.weight": Payload(marker)}, evil)
    torch.load(evil, weights_only=False)  # control: the file really runs code when unpickled
    assert marker.exists()
    marker.unlink()

    # A model folder holding only pytorch_model.bin (no safetensors) with that payload.
    model = save_tiny_model(tmp_path / "model")
    (model / "model.safetensors").unlink()
    evil.rename(model / "pytorch_model.bin")
    data = write_pairs(tmp_path / "pairs.jsonl", n=4)
    code, out, err = run_cli(["train", "--data", data, "--model", model, "--output-dir", tmp_path / "run",
                              "progress=false"], capsys)
    assert code == 2 and "Traceback" not in out + err and f"could not load model '{model}'" in err
    assert not marker.exists()

    # A checkpoint whose optimizer state is that payload: the resume refuses to unpickle it.
    good = save_tiny_model(tmp_path / "good")
    common = ["train", "--data", data, "--model", good, "--output-dir", tmp_path / "run2", "loss=simpo",
              "batch_size=2", "save_every=1", "progress=false"]
    assert run_cli(common + ["max_steps=2"], capsys)[0] == 0
    torch.save({"state": Payload(marker)}, tmp_path / "run2" / "checkpoint-00000001" / "optimizer.pt")
    shutil.rmtree(tmp_path / "run2" / "final")  # as if killed after that checkpoint: the same settings resume
    code, out, err = run_cli(common + ["max_steps=2"], capsys)
    assert code == 2 and "Traceback" not in out + err
    assert f"checkpoint {tmp_path / 'run2' / 'checkpoint-00000001'} cannot be read (UnpicklingError" in err
    assert not marker.exists()
    passed()


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system", "!!python/object/new:os.system",
                                 "!!python/name:os.system"])
def test_yaml_cannot_construct_python_objects(tag, tmp_path, capsys):
    marker = tmp_path / "MARKER-yaml"
    config = tmp_path / "evil.yaml"
    config.write_text(f"loss: dpo\nbeta: {tag} [\"touch {marker}\"]\n")
    code, out, err = run_cli(["train", "--config", config], capsys)
    assert code == 2 and "Traceback" not in out + err
    assert err.startswith(f"error: config file {config} is not valid YAML: could not determine a constructor for "
                          f"the tag 'tag:yaml.org,2002:python/")
    assert not marker.exists()
    passed()


# ------------------------------------------------------------------------------------------------ API keys
class JudgeServer:
    """An OpenAI-compatible endpoint on loopback. Its verdict prefers the longer response; `echo_key` makes it
    refuse every request with an error message that echoes the Authorization header (some providers do)."""

    def __init__(self, echo_key: bool = False):
        self.authorizations: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                auth = self.headers.get("Authorization") or ""
                server.authorizations.append(auth)
                if echo_key:
                    status, payload = 401, {"error": {"message": f"invalid credentials: {auth}"}}
                else:
                    text = body["messages"][0]["content"]
                    a = text.split("[Response A]\n", 1)[1].split("\n\n[Response B]", 1)[0]
                    b = text.split("[Response B]\n", 1)[1].split("\n\nWhich response", 1)[0]
                    letter = "A" if len(a) >= len(b) else "B"
                    top = [{"token": letter, "logprob": math.log(0.8)},
                           {"token": "B" if letter == "A" else "A", "logprob": math.log(0.2)}]
                    status, payload = 200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": letter},
                                                         "logprobs": {"content": [{"token": letter, "logprob": top[0]["logprob"],
                                                                                   "top_logprobs": top}]}}]}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def tso_config(tmp_path: Path, model: Path, judge: dict) -> Path:
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"{CORPUS[i][:30]} ({i})", "answer": CORPUS[i - 1]}
                                                        for i in range(6)])
    config = tmp_path / "tso.yaml"
    config.write_text(json.dumps({
        "model": str(model), "prompts": str(prompts), "human_column": "answer", "rounds": 1, "eval_prompts": 1,
        "eval_samples": 1, "max_new_tokens": 5, "block_prompts": 4, "backend": "transformers", "progress": False,
        "generators": [{"name": "base", "model": str(model), "size": 1, "stage": 0},
                       {"name": "policy", "policy": True, "size": 1, "stage": 1}],
        "judge": judge,
        "train": {"max_steps": 2, "batch_size": 2, "learning_rate": 1e-3, "max_length": 64, "max_prompt_length": 32},
    }))
    return config


def every_byte_under(root: Path) -> list[tuple[Path, bytes]]:
    return [(p, p.read_bytes()) for p in root.rglob("*") if p.is_file()]


def test_http_judge_key_is_used_but_written_nowhere(tmp_path, capsys, caplog, monkeypatch):
    """A whole `tokensift tso run -v` with an HTTP judge (and its on-disk verdict cache): the key goes out in the
    Authorization header and appears in no file of the run folder, no output and no log line."""
    monkeypatch.setenv(KEY_ENV, KEY)
    server = JudgeServer()
    try:
        model = save_tiny_model(tmp_path / "model")
        config = tso_config(tmp_path, model, {"type": "http", "base_url": server.url, "model": "judge",
                                              "api_key_env": KEY_ENV, "timeout_s": 10})
        with caplog.at_level(logging.DEBUG):
            code, out, err = run_cli(["-v", "tso", "run", "--config", config, "--output-dir", tmp_path / "run"], capsys)
        assert code == 0, err[-3000:]
    finally:
        server.close()
    assert server.authorizations and set(server.authorizations) == {f"Bearer {KEY}"}
    files = every_byte_under(tmp_path / "run")
    assert len(files) > 20 and any(p.name == "judge-cache.sqlite" for p, _ in files)
    assert any(p.name == "run_card.json" for p, _ in files) and any(p.name == "tso-config.json" for p, _ in files)
    leaks = [str(p) for p, data in files if KEY.encode() in data]
    leaks += [name for name, text in (("stdout", out), ("stderr", err), ("log", caplog.text)) if KEY in text]
    assert not leaks, leaks
    saved = json.loads((tmp_path / "run" / "tso-config.json").read_text())
    assert saved["judge"]["api_key_env"] == KEY_ENV  # the variable's name is what a run records
    passed()


def test_a_key_the_server_echoes_is_redacted_in_the_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    server = JudgeServer(echo_key=True)
    try:
        model = save_tiny_model(tmp_path / "model")
        config = tso_config(tmp_path, model, {"type": "http", "base_url": server.url, "model": "judge",
                                              "api_key_env": KEY_ENV, "timeout_s": 10, "max_retries": 0})
        code, out, err = run_cli(["tso", "run", "--config", config, "--output-dir", tmp_path / "run"], capsys)
    finally:
        server.close()
    assert code == 2 and "Traceback" not in out + err
    assert "was refused: HTTP 401: invalid credentials: Bearer ***" in err
    assert KEY not in out + err and not [p for p, data in every_byte_under(tmp_path / "run") if KEY.encode() in data]
    passed()


@pytest.mark.parametrize("judge, name", [
    ({"type": "http", "base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key": KEY}, "judge.api_key"),
    ({"type": "http", "base_url": f"http://user:{KEY}@127.0.0.1:9/v1", "model": "m"}, "judge.base_url"),
    ({"type": "http", "base_url": f"http://127.0.0.1:9/v1?key={KEY}", "model": "m"}, "judge.base_url"),
], ids=["api_key", "password in url", "key in query"])
def test_secrets_in_a_judge_config_are_refused_before_anything_is_saved(judge, name, tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("hi\n")
    config = tmp_path / "eval.yaml"
    config.write_text(json.dumps({"judge": judge, "reference_column": None, "prompts": str(prompts)}))
    code, out, err = run_cli(["eval", "generate", "--config", config, "--model", tmp_path / "none",
                              "--output", tmp_path / "results.json"], capsys)
    assert code == 2 and "Traceback" not in out + err
    assert err.startswith(f"error: {name}") and "api_key_env" in err and KEY not in out + err
    assert not (tmp_path / "results.json").exists()
    passed()


@pytest.mark.parametrize("action", ["run", "generate"])
def test_tso_refuses_a_secret_in_its_judge_config_before_writing_the_run_folder(action, tmp_path, capsys):
    model = save_tiny_model(tmp_path / "model")
    config = tso_config(tmp_path, model, {"type": "http", "base_url": "http://127.0.0.1:9/v1", "model": "m",
                                          "api_key": KEY})
    code, out, err = run_cli(["tso", action, "--config", config, "--output-dir", tmp_path / "run"], capsys)
    leaks = [p for p, data in every_byte_under(tmp_path) if KEY.encode() in data and p != tmp_path / "tso.yaml"]
    assert not leaks, leaks
    assert code == 2 and "judge.api_key" in err and KEY not in out + err
    passed()


# ------------------------------------------------------------------------------------------------ paths from names
CRAFTED = ["../../etc/passwd", "../../etc/passwd.jsonl", "/etc/shadow.csv", "owner/..", "..", ".", "...",
           ".hidden.jsonl", "a/../../b.jsonl", "..\\..\\windows\\system.ini", "C:\\Users\\x\\data.parquet",
           "name with spaces; rm -rf ~.jsonl", "$(touch x).jsonl", "owner/name", "owner/..name", "x" * 300,
           "ünïcödé/dätä.json", "data.jsonl\x00.txt", "~/data.jsonl", "-rf.jsonl"]


def test_names_derived_from_data_sources_stay_in_their_folder(tmp_path):
    """data.io.safe_name is the one place a file name is derived from a user's source (the rejects file
    `<cwd>/<safe_name>.rejects.jsonl`); caches are named by sha256 digests, run folders by fixed names."""
    from tokensift.data.io import safe_name

    for source in CRAFTED:
        name = safe_name(source)
        assert name and "/" not in name and "\\" not in name and ".." not in name and "\x00" not in name, source
        assert not name.startswith((".", "-")) and len(name) <= 80, (source, name)
        assert (tmp_path / f"{name}.rejects.jsonl").resolve().parent == tmp_path.resolve(), source
    assert safe_name("owner/name") == "owner__name"
    # A hub id with '..' is not a hub id at all: it never reaches the datasets library or its cache paths.
    from tokensift.data.io import is_hub_id

    assert is_hub_id("owner/name") and not any(is_hub_id(s) for s in ("owner/..", "../name", "owner/../x", "..", "a/b/c"))
    passed()


def test_a_crafted_data_path_writes_its_rejects_file_in_the_working_folder_only(tmp_path, capsys, monkeypatch):
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    data = write_jsonl(tmp_path / "passwd.jsonl", [{"prompt": "hi", "chosen": "a", "rejected": "b"},
                                                   {"prompt": "hi", "chosen": "", "rejected": "b"}])
    model = save_tiny_model(tmp_path / "model")
    monkeypatch.chdir(work)
    before = {p for p in tmp_path.rglob("*")}
    code, _, err = run_cli(["train", "--data", "../outside/../../" + tmp_path.name + "/passwd.jsonl", "--model", model,
                            "--output-dir", work / "run", "loss=simpo", "max_steps=1", "skip_invalid=true",
                            "progress=false"], capsys)
    assert code == 0, err
    new = {p for p in tmp_path.rglob("*")} - before
    assert {p for p in new if work / "run" not in p.parents and p != work / "run"} == {work / "passwd.rejects.jsonl"}
    assert data.exists()
    passed()


def test_generator_names_and_prompt_ids_never_become_paths(tmp_path, capsys):
    model = save_tiny_model(tmp_path / "model")
    (tmp_path / "g.yaml").write_text(json.dumps({"prompts": "builtin:quickstart", "generators": [
        {"name": "../../escape", "model": str(model), "size": 1}]}))
    code, out, err = run_cli(["tso", "generate", "--config", tmp_path / "g.yaml", "--output-dir", tmp_path / "a"],
                             capsys)
    assert code == 2 and "generators[0]: 'name' must be letters, digits, '_', '.', '-' (got '../../escape')" in err
    # Prompt ids come from the user's data; they are values in Parquet cells, never file names.
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"id": "../../../escape", "prompt": "Say hi."},
                                                        {"id": "/tmp/escape-abs", "prompt": "Say bye."}])
    (tmp_path / "g.yaml").write_text(json.dumps({
        "prompts": str(prompts), "id_column": "id", "rounds": 1, "max_new_tokens": 3, "backend": "transformers",
        "progress": False, "generators": [{"name": "base", "model": str(model), "size": 1}]}))
    before = {p for p in tmp_path.rglob("*")}
    code, out, err = run_cli(["tso", "generate", "--config", tmp_path / "g.yaml", "--output-dir", tmp_path / "b"],
                             capsys)
    assert code == 0, err
    new = {p for p in tmp_path.rglob("*")} - before
    assert all(tmp_path / "b" in p.parents or p == tmp_path / "b" for p in new), new
    assert not Path("/tmp/escape-abs").exists() and not any("escape" in p.name for p in new)
    passed()
