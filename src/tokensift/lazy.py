"""Modules imported on first use: the command line parses its arguments (and answers `--help` or a bad key) before
PyTorch loads, which takes most of a second warm and several seconds from a cold disk.

    from tokensift.lazy import lazy_import
    torch = lazy_import("torch")           # nothing imported yet
    torch.zeros(1)                         # imports torch here, once; later accesses are plain attribute reads

Used by the modules that configs import (losses, selection, selectors, models ...), whose declarations the help
text and config checks read without running a tensor operation. `tests/test_cli_help.py` checks that building
the parser and parsing a stage's arguments import neither torch nor transformers.
"""

from __future__ import annotations

import importlib
import types


class LazyModule(types.ModuleType):
    """Stands in for module `name` until an attribute is read; then imports it and copies each attribute read."""

    def __init__(self, name: str):
        super().__init__(name)
        self.__dict__["_lazy_target"] = None

    def _load(self):
        module = self.__dict__["_lazy_target"]
        if module is None:
            module = importlib.import_module(self.__name__)
            self.__dict__["_lazy_target"] = module
        return module

    def __getattr__(self, attr: str):
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        value = getattr(self._load(), attr)
        self.__dict__[attr] = value  # the next read is a plain attribute lookup
        return value

    def __repr__(self) -> str:
        loaded = self.__dict__["_lazy_target"] is not None
        return f"<lazy module '{self.__name__}' ({'loaded' if loaded else 'not loaded yet'})>"


def lazy_import(name: str):
    """The module `name` if it is imported already, else a LazyModule that imports it on first attribute read."""
    import sys

    return sys.modules.get(name) or LazyModule(name)
