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
    assert "key tokens of the first pair:" in out
