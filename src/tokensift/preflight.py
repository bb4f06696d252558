"""`--check` on every stage: the checks a run makes before its first real work, without loading any weights.

A stage's plan (train/plan.py, sepo/pipeline.py, tso/plan.py, eval/plan.py) reads the settings (already checked
when the config was built), the data files (counts and problems, with the run's own loader and tokeniser), finds
the models and their tokenizers, looks at the output folder (new, resumed, finished, or refused with the
differences), and prints what the run would do: stages, steps, tokens, what it reuses. A problem is the UserError
the run itself would raise, so `--check` exits with status 2 and the same message; an 8-GPU job fails in seconds.

This module holds what every plan shares: the printed plan, finding a model without loading or converting it, its
tokenizer (fsutil.check_writable says whether an output path could be written).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from tokensift.errors import UserError


@dataclass
class Plan:
    """What a run would do, line by line (`tokensift STAGE --check` prints it)."""

    stage: str
    lines: list[tuple[str, str]] = field(default_factory=list)

    def add(self, what: str, text: str) -> None:
        """One entry; a text of several lines (a loader's summary) continues on lines of its own."""
        for i, line in enumerate(str(text).splitlines() or [""]):
            self.lines.append((what if i == 0 else "", line.strip()))

    def extend(self, other: "Plan", prefix: str = "") -> None:
        self.lines += [(f"{prefix}{what}", text) for what, text in other.lines]

    def text(self) -> str:
        width = max((len(what) for what, _ in self.lines), default=0)
        body = "\n".join(f"  {what.ljust(width)}  {text}" for what, text in self.lines)
        return (f"[check] tokensift {self.stage}: the plan\n{body}\n"
                "[check] ok: settings, data, models and output folder checked; no weights were loaded")


@dataclass
class ModelLocation:
    """Where a model's files are. `folder`: what from_pretrained reads (None: a hub id, or a GGUF file that is
    dequantised on first use); `config`: its config.json when readable without a download."""

    name: str
    folder: str | None
    description: str
    config: dict | None = None
    gguf: str | None = None  # the GGUF file of a model not dequantised yet

    def shape(self) -> str:
        c = self.config or {}
        c = c.get("text_config", c) if isinstance(c.get("text_config"), dict) else c
        parts = [c.get("model_type"), c.get("num_hidden_layers") and f"{c['num_hidden_layers']} layers",
                 c.get("hidden_size") and f"hidden {c['hidden_size']}",
                 c.get("vocab_size") and f"vocabulary {c['vocab_size']:,}"]
        return ", ".join(str(p) for p in parts if p)


def _read_config(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _hub_cached(repo_id: str) -> Path | None:
    """The local hub cache's snapshot folder of `repo_id`, when it holds its config.json."""
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, "config.json")
    return Path(cached).parent if isinstance(cached, str) else None


def locate_model(name_or_path: str) -> ModelLocation:
    """Find a model as `models.resolve_model` would, without downloading, dequantising or loading it; the same
    UserError as the run for a path that is not a model."""
    from tokensift.models import ALIASES, _alias_gguf, cache_root, file_sha256, hub_offline

    def gguf(path: Path) -> ModelLocation:
        converted = cache_root() / "gguf" / file_sha256(path)[:32]
        if (converted / "config.json").exists() and (converted / "model.safetensors").exists():
            return ModelLocation(name_or_path, str(converted), f"{path}, dequantised in {converted}",
                                 _read_config(converted))
        return ModelLocation(name_or_path, None, f"{path} (GGUF: dequantised once, on first use)", gguf=str(path))

    if name_or_path in ALIASES:
        hub = ALIASES[name_or_path]["hub"]
        if not hub_offline():
            cached = _hub_cached(hub)
            if cached is not None:
                return ModelLocation(name_or_path, str(cached), f"the hub's {hub}, cached in {cached}",
                                     _read_config(cached))
        local = gguf(_alias_gguf(name_or_path))
        if not hub_offline():
            local.description = f"the hub's {hub} when it is reachable, else {local.description}"
        return local
    path = Path(name_or_path).expanduser()
    if path.suffix == ".gguf":
        if not path.exists():
            raise UserError(f"GGUF file {path} does not exist")
        return gguf(path)
    if path.exists():
        if path.is_dir() and not (path / "config.json").exists():
            raise UserError(f"model folder {path} has no config.json; is it a saved model?")
        weights = [p.name for p in path.iterdir() if p.name.endswith((".safetensors", ".bin"))] if path.is_dir() else []
        if path.is_dir() and not weights:
            raise UserError(f"model folder {path} has no weight files (*.safetensors or *.bin)")
        return ModelLocation(name_or_path, str(path), f"folder {path}", _read_config(path))
    if name_or_path.count("/") == 1 and not name_or_path.startswith((".", "/")):
        folder = _hub_cached(name_or_path)
        if folder is not None:
            return ModelLocation(name_or_path, str(folder), f"hub id, in the local hub cache ({folder})",
                                 _read_config(folder))
        if hub_offline():
            raise UserError(f"model '{name_or_path}' is not in the local hub cache and HF_HUB_OFFLINE is set; "
                            "download it first or point model= at a local folder")
        return ModelLocation(name_or_path, None, "hub id (downloaded on first use)")
    from tokensift.models import resolve_model

    resolve_model(name_or_path)  # raises the run's own error for anything else
    raise AssertionError("unreachable")


def check_tokenizer(location: ModelLocation, trust_remote_code: bool = False):
    """The model's tokenizer, loaded as the run loads it (tokenizer files only, no weights); from the GGUF file
    itself when the model has not been dequantised yet."""
    from tokensift.models import load_tokenizer

    if location.folder is not None:
        return load_tokenizer(location.folder, trust_remote_code)
    if location.gguf is not None:
        from transformers import AutoTokenizer

        path = Path(location.gguf)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        except Exception as exc:  # a damaged GGUF file surfaces as many exception types
            raise UserError(f"could not read the tokenizer of the GGUF file {path}: {exc}") from None
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer
    return load_tokenizer(location.name, trust_remote_code)  # a hub id online: its tokenizer files only


def print_plan(plan: Plan) -> int:
    """Print the plan (on the first process only, under a launcher) and return the exit status, 0."""
    if os.environ.get("RANK", "0") == "0":
        print(plan.text())
    return 0
