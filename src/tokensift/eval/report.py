"""Evaluation results on disk (one JSON file: numbers, config, versions) and as a short terminal table."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import tempfile
from pathlib import Path

from tokensift.errors import UserError
from tokensift.eval.preference import MARGIN_NAMES


def versions() -> dict:
    """Everything that can change the numbers besides the config: library versions and the machine."""
    import numpy
    import torch
    import transformers

    from tokensift import __version__

    return {"tokensift": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "numpy": numpy.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "cuda": torch.version.cuda if torch.cuda.is_available() else None}


def default_output(action: str) -> str:
    return f"eval-{action}.json"


# settings that do not change an evaluation's numbers: a results file made with other values of these is the same
NOT_COMPARED = frozenset({"progress", "output", "overwrite", "save_items", "batch_size", "device", "markdown", "plot"})


def check_results_file(config, path: str | Path) -> str:
    """Before any work: a results file written with other settings is refused, naming them (overwrite=true
    replaces it); one with the same settings is replaced by the new results. Returns what will happen."""
    from tokensift.fsutil import check_writable

    path = Path(path)
    check_writable(path, "output")
    if not path.is_file():
        return f"{path}: a new file"
    try:
        recorded = json.loads(path.read_text(encoding="utf-8")).get("config")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if not isinstance(recorded, dict):
        if getattr(config, "overwrite", False):
            return f"{path}: replaced (overwrite=true)"
        raise UserError(f"{path} exists and is not a tokensift results file; pass overwrite=true to replace it, or "
                        "choose another output=")
    from tokensift.train.run_folder import changed_settings

    changed = changed_settings(recorded, config, ignore=NOT_COMPARED)
    if changed and not getattr(config, "overwrite", False):
        raise UserError(f"{path} holds results made with other settings ({'; '.join(changed[:4])}"
                        f"{' ...' if len(changed) > 4 else ''}); pass overwrite=true to replace them, or choose "
                        "another output=")
    return f"{path}: " + ("replaced (overwrite=true)" if changed else "results of these settings, replaced")


def write_results(result: dict, config, path: str | Path) -> Path:
    """Write result + config + versions atomically (a killed run never leaves half a JSON file)."""
    path = Path(path)
    payload = {**result, "config": dataclasses.asdict(config), "versions": versions(),
               "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=1, ensure_ascii=False, allow_nan=True)
            f.write("\n")
        os.replace(tmp, path)
    except OSError as exc:
        raise UserError(f"cannot write the results file {path}: {exc.strerror}") from None
    return path


def number(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}"


def with_error(mean, stderr, digits: int = 3) -> str:
    return number(mean, digits) if stderr is None else f"{number(mean, digits)} ± {number(stderr, digits)}"


def percent(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = [header] + rows
    out = ["  ".join(str(cell).ljust(w) if i == 0 else str(cell).rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))
           for line in lines]
    return "\n".join(out)


def pairs_summary(result: dict, beta: float) -> str:
    metrics, data = result["metrics"], result["data"]
    kinds = list(metrics["margins"])
    names = {k: MARGIN_NAMES[k] + (f" (beta={beta:g})" if k == "dpo" else "") for k in kinds}
    held = " (held-out share)" if data["held_out"] else ""
    lines = [f"preference accuracy on {metrics['pairs']} pairs of {data['source']}{held}", ""]
    rows = [[names[k], with_error(m["accuracy"], m["accuracy_stderr"]), number(m["margin_mean"], 4),
             number(m["margin_median"], 4), str(m["ties"])] for k, m in metrics["margins"].items()]
    lines.append(table(["margin", "accuracy", "mean margin", "median margin", "ties"], rows))
    bias = metrics["length_bias"]
    prefers = ", ".join(f"{MARGIN_NAMES[k]} {percent(v)}" for k, v in bias["prefers_longer"].items())
    lines += ["", f"length: the chosen response is the longer one in {percent(bias['chosen_is_longer'])} of "
              f"{bias['pairs_with_unequal_length']} unequal-length pairs; the reward favours the longer one: {prefers}"]
    for title, key in (("chosen - rejected tokens", "by_length_difference"), ("chosen + rejected tokens", "by_total_length")):
        rows = [[b["bucket"], str(b["pairs"])] + [percent(b[k]["accuracy"]) for k in kinds]
                for b in metrics[key] if b["pairs"]]  # empty buckets stay in the JSON only
        lines += ["", table([title, "pairs"] + [f"{MARGIN_NAMES[k]} acc" for k in kinds], rows)]
    return "\n".join(lines + _notes(data["notes"]))


def generation_summary(result: dict) -> str:
    metrics, data = result["metrics"], result["data"]
    lines = [f"generation eval: {metrics['prompts']} prompts x {metrics['samples_per_prompt']} answers "
             f"({data['source']})", ""]
    sides = list(metrics["lengths"])
    judge = metrics.get("judge")
    rows = [["mean tokens"] + [with_error(metrics["lengths"][s]["tokens"]["mean"], metrics["lengths"][s]["tokens"]["stderr"], 1) for s in sides],
            ["mean characters"] + [number(metrics["lengths"][s]["characters"]["mean"], 1) for s in sides]]
    if judge and "mean_score" in judge:
        rows.append(["mean score"] + [with_error(judge["mean_score"][s]["mean"], judge["mean_score"][s]["stderr"])
                                      if s in judge["mean_score"] else "-" for s in sides])
    lines.append(table([""] + [s.replace("_", " ") for s in sides], rows))
    if judge:
        lines += ["", f"judge: {judge['judge']} ({judge['kind']})"]
        for key in ("vs_reference", "vs_opponent"):
            if key in judge:
                w = judge[key]
                lc = w["length_controlled"]
                lc_text = with_error(lc.get("win_rate"), lc.get("stderr")) + (f" ({lc['reason']})" if lc.get("reason")
                                                                               else f" (AlpacaEval GLM {lc['glm']})")
                lines.append(f"win rate {key.replace('_', ' ')} answers: {with_error(w['win_rate'], w['stderr'])} "
                             f"(wins/ties/losses {w['wins']}/{w['ties']}/{w['losses']}); length-controlled {lc_text}")
    if "kl" in metrics:
        kl = metrics["kl"]
        lines.append(f"KL(policy || reference): {with_error(kl['kl'], kl['stderr'], 4)} nats per answer "
                     f"({kl['n']} answers)")
    return "\n".join(lines + _notes(data["notes"]))


def _notes(notes: list[str]) -> list[str]:
    return ([""] + [f"note: {line}" for note in notes for line in note.splitlines()]) if notes else []
