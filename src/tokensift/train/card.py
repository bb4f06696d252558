"""The model card (README.md) every final/ folder carries, so the folder can be published as it is.

The card opens with the Hugging Face Hub's YAML metadata (base_model, library_name: tokensift, tags naming the
method, datasets when the data is a hub dataset, the base model's license when it is known) and then says how
the model was made: method and loss settings, data fingerprint and counts, the token selection (SePO), final
metrics, versions, and the exact command (a CLI run) or the settings (a run from Python).

Where the base model and its license come from (`model_origin`): an alias's table entry; a hub id itself (its
license from the card in the local hub cache, or fetched when online); a folder holding a tokensift card
(a TSO round, a SePO reference after SFT) passes on the base model and license it names, so a chain of
trainings still names the model it all started from. A plain local folder is named by its hub cache path when
it is one; otherwise the card says "a local model" and has no base_model.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

import yaml

from tokensift.provenance import command_line

log = logging.getLogger(__name__)

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
CACHE_SNAPSHOT = re.compile(r"models--([^/]+)--([^/]+)/snapshots/")
SHOWN_METRICS = ("loss", "rewards/accuracy", "rewards/margin", "rewards/chosen", "rewards/rejected",
                 "clip/chosen_fraction", "clip/rejected_fraction", "logps/chosen", "logps/rejected")


def read_card_metadata(path: Path) -> dict:
    """The YAML block at the top of a model card (README.md), or {} when there is none or it is not YAML."""
    path = Path(path)
    if not path.is_file():
        return {}
    text = path.read_text(encoding="utf-8", errors="replace")
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, re.S)
    if not match:
        return {}
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return {}
    return meta if isinstance(meta, dict) else {}


def is_hub_id(name: str) -> bool:
    """'owner/name' that is not a local path (what `resolve_model` passes through to the hub)."""
    return bool(HUB_ID.match(name)) and not Path(name).expanduser().exists() and not name.endswith(
        (".jsonl", ".json", ".csv", ".parquet", ".gz", ".gguf"))


def hub_card(repo_id: str) -> dict:
    """The metadata of a hub model's own card: from the local hub cache, else downloaded when online."""
    try:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache

        from tokensift.models import hub_offline

        cached = try_to_load_from_cache(repo_id, "README.md")
        if isinstance(cached, str):
            return read_card_metadata(Path(cached))
        if not hub_offline():
            return read_card_metadata(Path(hf_hub_download(repo_id, "README.md")))
    except Exception as exc:  # no card, no network: the license stays unknown
        log.info("no model card for %s (%s)", repo_id, type(exc).__name__)
    return {}


def model_origin(name: str) -> dict:
    """{"base_model": hub id or None, "license": str or None, "label": how the card names the start model}."""
    from tokensift.models import ALIASES

    name = str(name)
    if name in ALIASES:
        entry = ALIASES[name]
        return {"base_model": entry["hub"], "license": entry.get("license"), "label": entry["hub"]}
    path = Path(name).expanduser()
    if path.is_dir():
        meta = read_card_metadata(path / "README.md")
        base = meta.get("base_model") if meta.get("library_name") == "tokensift" else None
        if isinstance(base, list):
            base = base[0] if base else None
        snapshot = CACHE_SNAPSHOT.search(str(path.resolve()) + "/")
        if base is None and snapshot:
            base = f"{snapshot.group(1)}/{snapshot.group(2)}"
        if meta.get("library_name") == "tokensift":
            label = f"`{name}`, a tokensift model" + (f" fine-tuned from {base}" if base else "")
        else:
            label = base or f"a local model ({path.name})"
        return {"base_model": base, "license": meta.get("license"), "label": label}
    if is_hub_id(name):
        return {"base_model": name, "license": hub_card(name).get("license"), "label": name}
    return {"base_model": None, "license": None, "label": f"a local model ({path.name})"}


def metadata(origin: dict, tags: list[str], datasets: list[str]) -> dict:
    meta: dict = {}
    if origin.get("base_model"):
        meta["base_model"] = origin["base_model"]
    meta["library_name"] = "tokensift"
    if origin.get("license"):
        meta["license"] = origin["license"]
    meta["tags"] = list(dict.fromkeys(["tokensift", *tags]))
    if datasets:
        meta["datasets"] = datasets
    meta["pipeline_tag"] = "text-generation"
    return meta


def render(meta: dict, title: str, sections: list[tuple[str, str]]) -> str:
    """A card: the YAML block, a title, then (heading, markdown body) sections."""
    header = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).strip()
    body = "\n\n".join(f"## {heading}\n\n{text.strip()}" if heading else text.strip() for heading, text in sections)
    return f"---\n{header}\n---\n\n# {title}\n\n{body}\n"


def table(rows: list[tuple[str, object]]) -> str:
    lines = ["| setting | value |", "|---|---|"]
    lines += [f"| {name} | {format_value(value)} |" for name, value in rows]
    return "\n".join(lines)


def format_value(value) -> str:
    """A table cell: floats to 4 significant digits, one line, '|' escaped so the table holds."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return ("" if value is None else str(value)).replace("\n", "; ").replace("|", "\\|")


def reproduce(config, versions: dict) -> str:
    """The exact command of a CLI run, else the settings as YAML; and the versions it ran with."""
    command = command_line()
    if command:
        text = f"Command:\n\n```bash\n{command}\n```"
    else:
        settings = json_safe(dataclasses.asdict(config)) if dataclasses.is_dataclass(config) else config
        text = ("Started from Python (tokensift's API) with these settings:\n\n```yaml\n"
                + yaml.safe_dump(settings, sort_keys=False, allow_unicode=True).strip() + "\n```")
    shown = ", ".join(f"{k} {v}" for k, v in versions.items() if k != "platform")
    return f"{text}\n\nVersions: {shown}."


def json_safe(value):
    """Plain YAML types only (in-memory data and paths become their text)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def metrics_text(train_metrics: dict, eval_metrics: dict | None) -> str:
    rows = [(f"train {name} (last step)", train_metrics[name]) for name in SHOWN_METRICS
            if isinstance(train_metrics.get(name), (int, float))]
    rows += [(name, value) for name, value in sorted((eval_metrics or {}).items()) if isinstance(value, (int, float))]
    return table(rows).replace("| setting | value |", "| metric | value |") if rows else "No metrics were recorded."


def training_settings(config) -> list[tuple[str, object]]:
    spec = config.loss_spec
    rows: list[tuple[str, object]] = [("loss", f"{config.loss} ({spec.summary})")]
    rows += [(name, getattr(config, name)) for name in spec.params if getattr(config, name) is not None]
    if getattr(config, "loss_weights", None):
        rows.append(("loss_weights", config.loss_weights))
    if getattr(config, "rpo_alpha", 0.0):
        rows.append(("rpo_alpha (NLL term on the chosen response)", config.rpo_alpha))
    if getattr(config, "margin_column", None):
        rows.append(("per-pair target margin", f"column {config.margin_column}"))
    rows += [("learning_rate", config.learning_rate), ("scheduler", f"{config.scheduler}, warmup {config.warmup_ratio}"),
             ("epochs" if not config.max_steps else "max_steps", config.max_steps or config.epochs),
             ("batch", f"{config.batch_size} pairs x {config.grad_accum} accumulation"),
             ("max_length / max_prompt_length", f"{config.max_length} / {config.max_prompt_length}"),
             ("dtype", config.dtype), ("seed", config.seed)]
    if config.lora:
        kind = "QLoRA (4-bit NF4 base)" if getattr(config, "qlora", False) else "LoRA"
        rows.append(("adapters", f"{kind} r={config.lora_r}, alpha={config.lora_alpha}, targets {config.lora_targets}"))
    else:
        rows.append(("adapters", "none (all weights trained)"))
    return rows


def data_source(config, data) -> str:
    return str(data.extra_meta.get("data_source") or config.data or data.train.source)


def training_card(config, data, steps: int, train_metrics: dict, eval_metrics: dict | None, versions: dict,
                  stop_ids: list[int]) -> str:
    """The card of a Trainer's final/ folder."""
    objects = data.extra_meta.get("model_objects") or {}
    origin = object_origin(objects["model"]) if "model" in objects else model_origin(config.model)
    source = data_source(config, data)
    datasets = [source] if is_hub_id(source) else []
    tags = [config.loss, "preference-optimization"] + (["lora"] if config.lora else [])
    spec = config.loss_spec
    intro = (f"Trained from {origin['label']} with tokensift {versions.get('tokensift')}: loss `{config.loss}` "
             f"({spec.summary}), {steps} optimizer steps.")
    data_rows = [("source", source), ("fingerprint", data.train.fingerprint), ("training pairs", len(data.train.pairs)),
                 ("held-out pairs", len(data.eval.pairs) if data.eval else 0)]
    sections = [("", intro), ("Training", table(training_settings(config))),
                ("Data", table(data_rows) + "".join(f"\n- {format_value(note)}" for note in data.train.notes))]
    selection = data.extra_meta.get("selection")
    if selection:
        rows = [(k, v) for k, v in selection.items() if not k.startswith("_")]
        rows.append(("scores", data.extra_meta.get("scores")))
        sections.append(("Token selection (SePO)", table(rows)))
    sections += [("Results", metrics_text(train_metrics, eval_metrics)),
                 ("Use", usage(stop_ids, bool(config.lora))),
                 ("Reproduce", reproduce(config, versions))]
    title = config.hub_model_id or Path(config.output_dir).name or "model"
    return render(metadata(origin, tags, datasets), title, sections)


def object_origin(info: dict) -> dict:
    """model_origin of a model handed over as a Python object (given.describe): its name_or_path's base model and
    license when it names one, and the object's class and weights fingerprint (its weights may differ from what
    the name holds)."""
    name = info.get("name_or_path") or ""
    origin = model_origin(name) if name else {"base_model": None, "license": None}
    shown = f", name_or_path `{name}`" if name else ""
    label = (f"a model object handed over in Python ({info.get('class')}{shown}, weights sha256 "
             f"{str(info.get('weights_sha256'))[:16]})")
    return {**origin, "label": label}


def usage(stop_ids: list[int], lora: bool) -> str:
    text = ("The weights are the merged model (safetensors); `generation_config.json` stops generation at the chat "
            f"template's turn end (token ids {stop_ids}), where every training response ended.")
    if lora:
        text += " The LoRA adapter alone is in `adapter/`."
    return text + ("\n\n```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n"
                   "model = AutoModelForCausalLM.from_pretrained(PATH)\ntokenizer = AutoTokenizer.from_pretrained(PATH)\n```")
