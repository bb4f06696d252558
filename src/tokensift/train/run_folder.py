"""What a training run's output folder already holds, and whether this run may use it: the one place that decides.

A training run records its settings in `run_config.json` when it starts its first step and in the final model's
`run_card.json` when it ends. Before any work (and in `--check`), `folder_state(config)` compares them with the
run's settings:

- nothing of a run there: "new";
- a run with the same settings: "resume" (from its last checkpoint) or "done" (its final model stands; nothing is
  trained again), unless resume=false, which refuses;
- a run with other settings: refused, naming each difference, unless overwrite=true, which removes that run's
  files (checkpoints, final model, metrics; nothing else in the folder) and starts anew.

Settings that do not change what is trained (progress bars, logging and checkpoint cadence, publishing, where the
reference cache lives) are not compared. A setting a run's record does not hold (added by a later tokensift)
counts as its default, so upgrading keeps finished runs.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from tokensift.errors import UserError
from tokensift.fsutil import remove_dir, write_json_atomic
from tokensift.train.hub import HUB_KEYS

RECORD = "run_config.json"
# may differ between the run that made a folder and one that continues it: they change nothing that is trained
# (nan_policy only decides what happens at a non-finite step: a run stopped there continues with nan_policy=skip;
# output_dir is the folder itself, which may have been moved or copied)
NOT_COMPARED = frozenset({
    "output_dir", "resume", "overwrite", "progress", "trackers", "log_every", "save_every", "eval_every", "keep_checkpoints",
    "ref_cache_dir", "ref_batch_size", "eval_batch_size", "keep_freed_memory", "nan_policy", *HUB_KEYS,
})


def as_json(values: dict) -> dict:
    return json.loads(json.dumps(values, default=str))


def recorded_settings(folder: Path) -> dict | None:
    """The settings of the run in `folder`: its final model's card, else the record it wrote when it started."""
    for path in (folder / "final" / "run_card.json", folder / RECORD):
        if path.is_file():
            try:
                return json.loads(path.read_text(encoding="utf-8")).get("config", {})
            except (OSError, ValueError) as exc:
                raise UserError(f"{path} cannot be read ({exc}); delete it or pass overwrite=true") from None
    return None


def changed_settings(recorded: dict, config, ignore=NOT_COMPARED) -> list[str]:
    """'key: recorded -> now' for every compared setting that differs (unrecorded ones count as their default).
    `ignore`: the settings that may differ (the run folders' NOT_COMPARED; evaluation results have their own)."""
    current = as_json(dataclasses.asdict(config))
    defaults = as_json({f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                        for f in dataclasses.fields(config)
                        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING})
    return [f"{k}: {recorded.get(k, defaults.get(k))!r} -> {current.get(k)!r}"
            for k in sorted((set(recorded) | set(current)) - set(ignore))
            if recorded.get(k, defaults.get(k)) != current.get(k)]


def settings_key(config) -> str:
    """8 hex digits naming the compared settings of a run (output_dir left out): a stage folder's suffix when the
    plain folder holds a run with other settings (sepo/pipeline.py)."""
    import hashlib

    values = {k: v for k, v in as_json(dataclasses.asdict(config)).items() if k not in NOT_COMPARED}
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:8]


def recorded_differences(config) -> list[str] | None:
    """None when output_dir holds no run's record; else the compared settings that differ ([] for the same)."""
    folder = Path(config.output_dir)
    recorded = recorded_settings(folder) if folder.is_dir() else None
    return None if recorded is None else changed_settings(recorded, config)


def has_run(folder: Path) -> bool:
    """Whether `folder` holds a training run's files (a record, checkpoints or a final model)."""
    from tokensift.train.checkpoint import latest_checkpoint

    return any((folder / name).exists() for name in ("final", RECORD)) or latest_checkpoint(folder) is not None


def folder_state(config) -> str:
    """"new", "resume" or "done" for a run of `config` in its output_dir, or a UserError saying why not. Nothing is
    changed: with overwrite=true the run there is "new", and the trainer removes the old one when it starts."""
    folder = Path(config.output_dir)
    if not folder.is_dir() or not has_run(folder):
        return "new"
    if getattr(config, "overwrite", False):
        return "new"
    recorded = recorded_settings(folder)
    done = (folder / "final" / "run_card.json").is_file()
    what = "a finished run" if done else "an unfinished run"
    if recorded is not None:
        changed = changed_settings(recorded, config)
        if changed:
            raise UserError(f"{folder} holds {what} made with other settings ({'; '.join(changed[:5])}"
                            f"{' ...' if len(changed) > 5 else ''}); pass overwrite=true to replace it, or choose "
                            "another output_dir")
    elif done:
        raise UserError(f"{folder} holds a final model without a run card; pass overwrite=true to replace it, or "
                        "choose another output_dir")
    if not config.resume:
        raise UserError(f"{folder} holds {what} with these settings and resume=false; resume=true (the default) "
                        f"{'keeps it' if done else 'continues it'}, overwrite=true replaces it")
    return "done" if done else "resume"


def training_done(config) -> bool:
    """The stage's final model exists and was trained with exactly this config (a stage to skip); a run with other
    settings is refused (see folder_state)."""
    return folder_state(config) == "done"


def record_start(config, model_objects: dict | None = None) -> None:
    """Mark output_dir as this run's, right before its first step: a run that failed on a bad setting before that
    leaves nothing that would refuse the corrected setting. model_objects: the model objects it started from
    (given.py), as the run card records them."""
    record = {"config": as_json(dataclasses.asdict(config))}
    if model_objects:
        record["model_objects"] = model_objects
    write_json_atomic(Path(config.output_dir) / RECORD, record)


def check_model_objects(config, current: dict) -> None:
    """A model object handed over in Python (given.py) is named by its name_or_path in the settings, which two
    different objects can share: a run in output_dir is this run only if it started from the same weights.
    current: role ("model", "reference") -> sha256 of the objects' starting weights ({} when names are loaded).
    A run there that started from other weights (or from names where this one has objects, or the reverse) is
    refused, unless overwrite=true."""
    folder = Path(config.output_dir)
    if getattr(config, "overwrite", False) or not folder.is_dir():
        return
    for path in (folder / "final" / "run_card.json", folder / RECORD):
        if path.is_file():
            try:
                recorded = json.loads(path.read_text(encoding="utf-8")).get("model_objects") or {}
            except (OSError, ValueError):
                return  # folder_state names the unreadable record
            break
    else:
        return
    before = {role: info.get("weights_sha256") for role, info in recorded.items() if not info.get("copy_of_model")}
    if before != current:
        def shown(fingerprints: dict) -> str:
            return ", ".join(f"{role} {sha[:12]}" for role, sha in sorted(fingerprints.items())) or "names, no objects"

        raise UserError(f"{folder} holds a run that started from other model objects ({shown(before)}; this run: "
                        f"{shown(current)}); a model object is trained in place, so pass it as it was at that run's "
                        "start to continue it, or pass overwrite=true, or choose another output_dir")


def remove_run(folder: Path) -> None:
    """Delete what a training run wrote into `folder` (and nothing else a user keeps there)."""
    from tokensift.train.checkpoint import list_checkpoints

    for checkpoint in list_checkpoints(folder):
        remove_dir(checkpoint)
    remove_dir(folder / "final")
    for name in (RECORD, "metrics.jsonl"):
        (folder / name).unlink(missing_ok=True)
    for tmp in folder.glob(".tmp-*"):
        remove_dir(tmp) if tmp.is_dir() else tmp.unlink(missing_ok=True)
