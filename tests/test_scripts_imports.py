"""The experiment and benchmark scripts are run by hand, not by CI: at least every name they import from
tokensift must exist, so an API move cannot break them silently (one did: sample_answers moved to generate)."""

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted([*ROOT.glob("experiments/*/*.py"), *ROOT.glob("benchmarks/*.py"), ROOT / "src/tokensift/demo.py"])


def tokensift_imports(path: Path) -> list[tuple[str, str | None]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tokensift":
            found += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names if alias.name.split(".")[0] == "tokensift"]
    return found


def test_there_are_scripts_to_check():
    names = {p.relative_to(ROOT).as_posix() for p in SCRIPTS}
    assert {"experiments/sentiment/run.py", "experiments/realdata/run.py", "benchmarks/sepo_step.py"} <= names


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_script_imports_resolve(path):
    imports = tokensift_imports(path)
    missing = []
    for module, name in imports:
        loaded = importlib.import_module(module)
        if name is not None and not hasattr(loaded, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ImportError:
                missing.append(f"{module}.{name}")
    assert not missing, f"{path.name} imports names that do not exist: {missing}"
