"""`tokensift sweep`: train every combination of a grid of settings from one base config and write one table.

The usual use is SePO's own knobs on stored scores: the oracle and its scores are made once (`tokensift sepo` or
`tokensift score`) and every run of the sweep reads them (`base.scores`), so a sweep over k, gamma and the
selector costs only the policy runs. Any TrainConfig key can be swept; `k` is shorthand for k_chosen and
k_rejected together. Every run is checked before the first one starts, runs that finished with the same settings
are skipped and a killed one resumes, and the table (sweep.md, sweep.csv, sweep.json) is rewritten after each
run. With `seed` in the grid the table adds a summary over seeds: mean and standard error per setting.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from tokensift.config import build, option, suggest
from tokensift.errors import UserError
from tokensift.fsutil import write_json_atomic, write_text_atomic
from tokensift.train.config import TrainConfig

ALIASES = {"k": ("k_chosen", "k_rejected")}
COLUMNS = ("steps", "train_loss", "eval_loss", "eval_accuracy", "eval_margin", "minutes")


@dataclass
class SweepConfig:
    CLI_EXAMPLE = "base.scores=runs/sepo/scores grid.k=0.1,0.3 grid.seed=0,1"

    base: dict = option({}, "TrainConfig keys every run shares (model, loss, scores or data, learning_rate ...), e.g. base.loss=sepo.", section=TrainConfig)
    grid: dict = option({}, "Settings to sweep: key -> list of values (on the command line grid.k=0.1,0.3); every "
                            "combination is one run. k sets k_chosen and k_rejected together.", section=TrainConfig)
    output_dir: str = option("runs/sweep", "One folder per run, and the table: sweep.md, sweep.csv, sweep.json.")
    dry_run: bool = option(False, "Check every run's settings and print the runs, without training.")

    def validate(self) -> None:
        if not self.grid:
            raise UserError("a sweep needs grid: a mapping of setting -> list of values, e.g. grid.k=0.1,0.3")
        self.grid = {key: _values(key, values) for key, values in self.grid.items()}
        scores = [self.base.get("scores")] + list(self.grid.get("scores", []))
        missing = [s for s in scores if s and not Path(str(s)).exists()]
        if missing and not self.dry_run:
            raise UserError(f"scores folder {missing[0]} does not exist: make it first (tokensift score or "
                            "tokensift sepo), then sweep on it")
        self.runs()  # every run's settings are checked now, before any training

    def runs(self) -> list[tuple[str, dict, TrainConfig]]:
        """(name, swept values, config) of every combination, in grid order."""
        fields = set(TrainConfig.__dataclass_fields__)
        for key in self.grid:
            if key not in fields and key not in ALIASES:
                raise UserError(f"unknown grid key '{key}'{suggest(key, [*fields, *ALIASES], 'grid.')}")
            if key in ("output_dir", "resume"):
                raise UserError(f"grid.{key} cannot be swept: the sweep sets it per run")
        out = []
        keys = list(self.grid)
        for combo in itertools.product(*(self.grid[k] for k in keys)):
            swept = dict(zip(keys, combo))
            name = "-".join(f"{key}{_short(value)}" for key, value in swept.items())
            values = {**self.base, "resume": True, "output_dir": str(Path(self.output_dir) / name)}
            for key, value in swept.items():
                for field in ALIASES.get(key, (key,)):
                    values[field] = value
            try:
                out.append((name, swept, build(TrainConfig, values)))
            except UserError as exc:
                raise UserError(f"sweep run {name}: {exc}") from None
        if len({name for name, _, _ in out}) != len(out):
            raise UserError("two grid values give the same run name; make the values distinct")
        return out


def _values(key: str, values) -> list:
    """A grid entry as a list: YAML lists as they are; a comma string (command line) split, each value YAML-read."""
    if isinstance(values, str):
        values = [yaml.safe_load(v.strip()) for v in values.split(",") if v.strip()]
    if not isinstance(values, list):
        values = [values]
    if not values:
        raise UserError(f"grid.{key} has no values")
    if len(set(map(repr, values))) != len(values):
        raise UserError(f"grid.{key} repeats a value: {values}")
    return values


def _short(value) -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return "".join(c if c.isalnum() or c in ".+-_" else "_" for c in text)


def run_summary(folder: Path) -> dict:
    """Steps, the mean training loss of the last tenth of the steps, the final held-out metrics and minutes."""
    from tokensift.train.metrics import read_metrics

    rows = read_metrics(folder / "metrics.jsonl")
    steps = [r for r in rows if "loss" in r and "step" in r]
    tail = steps[-max(1, len(steps) // 10):] if steps else []
    final = next((r for r in reversed(rows) if "eval/loss" in r), {})
    card_path = folder / "final" / "run_card.json"
    card = json.loads(card_path.read_text()) if card_path.exists() else {}
    return {"steps": card.get("steps"),
            "train_loss": sum(r["loss"] for r in tail) / len(tail) if tail else None,
            "eval_loss": final.get("eval/loss"), "eval_accuracy": final.get("eval/rewards/accuracy"),
            "eval_margin": final.get("eval/rewards/margin"),
            "minutes": card["seconds"] / 60 if "seconds" in card else None}


def seed_summary(rows: list[dict], keys: list[str]) -> list[dict]:
    """Mean and standard error over seeds of every other setting's runs."""
    groups: dict[tuple, list[dict]] = {}
    others = [k for k in keys if k != "seed"]
    for row in rows:
        groups.setdefault(tuple(repr(row[k]) for k in others), []).append(row)
    out = []
    for group in groups.values():
        summary = {k: group[0][k] for k in others}
        summary["seeds"] = len(group)
        for column in COLUMNS[1:5]:
            values = [r[column] for r in group if r.get(column) is not None]
            if values:
                mean = sum(values) / len(values)
                sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
                summary[column], summary[column + "_se"] = mean, sd / math.sqrt(len(values))
        out.append(summary)
    return out


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def markdown(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_table(config: SweepConfig, rows: list[dict]) -> Path:
    keys = list(config.grid)
    out = Path(config.output_dir)
    columns = ["run", *keys, *COLUMNS]
    text = "# Sweep\n\n" + markdown(rows, columns)
    payload: dict = {"grid": config.grid, "base": config.base, "runs": rows}
    if "seed" in keys and len(config.grid["seed"]) > 1:
        summary = seed_summary(rows, keys)
        payload["over_seeds"] = summary
        sum_cols = [k for k in keys if k != "seed"] + ["seeds"] + [
            c + s for c in COLUMNS[1:5] for s in ("", "_se")]
        text += "\n## Over seeds (mean, standard error)\n\n" + markdown(summary, sum_cols)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(out / "sweep.csv", buffer.getvalue())
    write_json_atomic(out / "sweep.json", payload)
    write_text_atomic(out / "sweep.md", text)
    return out / "sweep.md"


def run_sweep(config: SweepConfig) -> list[dict]:
    """Train every run of the grid (skipping finished ones) and write the table after each."""
    from tokensift.train.run import train_run
    from tokensift.train.run_folder import training_done

    runs = config.runs()
    rows = []
    for i, (name, swept, run) in enumerate(runs, 1):
        if config.dry_run:
            print(f"[sweep] {i}/{len(runs)} {name}: {swept}")
            continue
        if training_done(run):
            print(f"[sweep] {i}/{len(runs)} {name}: done already, skipped")
        else:
            print(f"[sweep] {i}/{len(runs)} {name}: training")
            train_run(run)
        rows.append({"run": name, **swept, **run_summary(Path(run.output_dir))})
        table = write_table(config, rows)
    if not config.dry_run:
        print(f"[sweep] {len(rows)} runs; table in {table}")
    return rows


def plan_sweep(config: SweepConfig):
    """`tokensift sweep --check`: every run's settings (checked when the config was built), where it goes and
    whether it is new, continued or finished already; the first run's data and model in full."""
    from tokensift.preflight import Plan
    from tokensift.train.plan import describe_folder, plan_training

    plan = Plan("sweep")
    runs = config.runs()
    for i, (name, swept, run) in enumerate(runs):
        if i == 0:
            from tokensift.train.run import data_of

            plan.extend(plan_training(run, data_of(run), name), prefix=f"{name}: ")
        else:
            plan.add(name, describe_folder(run)[1])
    plan.add("table", f"{Path(config.output_dir) / 'sweep.md'} (and .csv, .json), rewritten after each run")
    return plan
