"""The source tree itself, read as text (nothing imported)."""

import ast
from collections import Counter
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "tokensift"


def test_no_module_defines_a_function_or_class_twice():
    """A second top-level `def` of a name silently replaces the first (selection.selected_count was written twice):
    one definition per name and module."""
    twice = []
    for path in sorted(SRC.rglob("*.py")):
        body = ast.parse(path.read_text()).body
        names = Counter(node.name for node in body
                        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))
        twice += [f"{path.relative_to(SRC.parent)}: {name}" for name, count in names.items() if count > 1]
    assert not twice, "defined twice:\n" + "\n".join(twice)
