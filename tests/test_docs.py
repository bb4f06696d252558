"""The documentation's runnable examples run as written (the real default model, in a temporary folder)."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def python_blocks(path: Path) -> str:
    return "\n".join(re.findall(r"```python\n(.*?)```", path.read_text(), re.S))


def test_python_api_example_runs(tmp_path, monkeypatch, capsys):
    code = python_blocks(DOCS / "python-api.md")
    assert "tokensift.train_model(" in code and "tokensift.run_sepo(" in code
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/python-api.md", "exec"), {"__name__": "__main__"})
    out = capsys.readouterr().out
    assert "2 steps, eval accuracy" in out and "refused: loss=sepo does not read beta" in out
    assert (tmp_path / "api-demo" / "sepo" / "policy" / "final" / "model.safetensors").exists()
    assert "key tokens of the first pair: [" in out and "heatmap: runs/show-" in out
    lora_run = re.search(r"LoRA run in (runs/train-\d{8}-\d{6}-[0-9a-f]{4})\n", out)
    assert lora_run and (tmp_path / lora_run.group(1) / "final" / "adapter" / "adapter_config.json").exists()
    assert "after LoRA, held-out DPO reward accuracy" in out


def test_relative_links_in_the_docs_point_at_files_that_exist():
    """Every relative Markdown link of README.md, BENCHMARKS.md and docs/ names a file or folder of the repository
    (anchors are not checked)."""
    root = Path(__file__).resolve().parents[1]
    pages = [root / "README.md", root / "BENCHMARKS.md", *sorted((root / "docs").rglob("*.md"))]
    broken = []
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks hold no links
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            path = target.split("#", 1)[0]
            if not path or re.match(r"[a-z]+:", path):
                continue
            if not (page.parent / path).exists():
                broken.append(f"{page.relative_to(root)}: {target}")
    assert not broken, "links to missing files:\n" + "\n".join(broken)


PUBLIC_MODULES = ("tokensift", "tokensift.eval", "tokensift.viz")  # docs/python-api.md: what is public


def test_python_examples_in_the_docs_use_only_public_names():
    """docs/python-api.md says the names in `__all__` of tokensift (and of tokensift.eval and tokensift.viz) are
    the public API; every Python example in the README and docs/ keeps to them (issue 23: docs/tso.md and
    docs/eval.md imported about 20 internals). The names must exist, too."""
    import ast
    import importlib

    root = Path(__file__).resolve().parents[1]
    problems = []
    for page in [root / "README.md", *sorted(DOCS.rglob("*.md"))]:
        for code in re.findall(r"```python\n(.*?)```", page.read_text(), re.S):
            for node in ast.walk(ast.parse(code)):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tokensift"):
                    if node.module not in PUBLIC_MODULES:
                        problems.append(f"{page.name}: from {node.module} import ... (internal module)")
                        continue
                    public = importlib.import_module(node.module).__all__
                    problems += [f"{page.name}: {node.module}.{a.name} is not public" for a in node.names
                                 if a.name not in public]
                elif isinstance(node, ast.Import):
                    problems += [f"{page.name}: import {a.name} (internal module)" for a in node.names
                                 if a.name.startswith("tokensift") and a.name not in PUBLIC_MODULES]
                elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                        node.value.id == "tokensift":
                    import tokensift

                    if node.attr not in tokensift.__all__:
                        problems.append(f"{page.name}: tokensift.{node.attr} is not public")
    assert not problems, "\n".join(problems)
