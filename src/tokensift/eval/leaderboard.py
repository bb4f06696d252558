"""`tokensift eval winrate`: raw and length-controlled win rates of every model in judged annotation files,
AlpacaEval 2 style (eval/winrate.py), as a table and JSON.

Which instruction difficulties the GLM uses, per baseline: the published ones (`difficulties=FILE`) when given;
otherwise AlpacaEval's own, shipped with the package (eval/alpacaeval_lc.py) with its gamed-baseline rows, when
every row answers one of AlpacaEval's instructions against gpt4_1106_preview's answer: one model's file then gives
the leaderboard's LC; otherwise (or with `difficulties=fit`) fitted across the models compared against that
baseline in these files, gamed baselines included (eval/difficulty.py); with a single model and nothing else, the
GLM runs without the difficulty term (AlpacaEval's length_controlled_minimal). Gamed-baseline rows (`gamed=`, or
the shipped ones) regularise the fit towards the baseline (length_controlled_v1); without them the fit is
AlpacaEval's length_controlled_noreg. The results say which, and whether the LC can be compared with AlpacaEval's
leaderboard (the table marks it beside the number when not). Numbers are percentages, as on the leaderboard.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokensift.errors import UserError
from tokensift.eval import alpacaeval_lc
from tokensift.eval.annotations import read_difficulties, read_gamed, read_judged
from tokensift.eval.difficulty import fit_difficulties
from tokensift.eval.winrate import GamedRows, Judged, gamed_rows, length_controlled, raw_win_rate


@dataclass
class GLMInputs:
    """What the GLM of the models against one baseline uses, and a sentence for the results saying so."""

    difficulty: dict[str, float] | None
    gamed: GamedRows | None
    difficulties_source: str
    notes: list[str]
    not_comparable: str | None = None  # why this LC cannot be compared with AlpacaEval's leaderboard; None: it can


def _missing_difficulties(judged: list[Judged], difficulty: dict[str, float], source: str) -> None:
    for j in judged:
        missing = [p for p in j.prompts if p not in difficulty]
        if missing:
            raise UserError(f"{j.sources[0]}: instruction {missing[0][:80]!r} (model {j.model}) has no difficulty in "
                            f"{source}; {len(set(missing))} such instruction(s). Leave difficulties unset to fit "
                            "them across the models instead")


def glm_inputs(judged: list[Judged], config, published: dict[str, float] | None,
               gamed: tuple[GamedRows | None, list[Judged]]) -> GLMInputs:
    """Difficulties and gamed rows for the models `judged` (all against one baseline)."""
    published_rows, gamed_judged = gamed
    gamed_judged = [g for g in gamed_judged if g.baseline == judged[0].baseline]
    notes, why = [], None
    if published is not None:
        origin = config.difficulties or ",".join(config.gamed)
        _missing_difficulties(judged, published, origin)
        difficulty, source = published, f"published ({origin})"
    else:
        if published_rows is not None:
            raise UserError("AlpacaEval's df_gamed.csv holds published difficulties by position: set "
                            "instructions= (AlpacaEval's instructions in order) to use them, or difficulties=")
        shipped, why = (False, "difficulties=fit") if config.difficulties == "fit" else alpacaeval_lc.applies(judged)
        if shipped:
            inputs = alpacaeval_lc.load()
            difficulty, source = inputs.difficulty, inputs.describe()
            gamed_judged = gamed_judged or inputs.gamed
            answered = len({p for j in judged for p in j.prompts})
            if answered < len(inputs.instructions):
                why = f"the LC is over {answered} of AlpacaEval's {len(inputs.instructions)} instructions"
        else:
            models = [j for j in judged if j.model != j.baseline] + gamed_judged
            if len(models) >= 2:
                difficulty = fit_difficulties(models)
                source = f"fitted across {len(models)} models against {judged[0].baseline} (eval/difficulty.py)"
            else:
                difficulty, source = None, "none (one model and no published difficulties: no difficulty term)"
            why = f"{why}; difficulties {source.split(' (')[0]}, not AlpacaEval's"
    rows = published_rows
    if gamed_judged and difficulty is not None:
        rows, left_out = gamed_rows(gamed_judged, difficulty, config.regularize_lambda)
        if left_out:
            notes.append(f"{left_out} gamed-baseline rows left out: their instructions have no difficulty")
    if rows is None and why is None:
        why = "no gamed-baseline rows (AlpacaEval's length_controlled_noreg, not the leaderboard's GLM)"
    return GLMInputs(difficulty, rows, source, notes, why)


def model_row(j: Judged, inputs: GLMInputs) -> dict:
    """One leaderboard row in AlpacaEval's column names (percentages), with the GLM's details."""
    raw = raw_win_rate(j)
    lc = length_controlled(j, inputs.difficulty, inputs.gamed)

    def percent(value):
        return None if value is None else 100 * value

    row = {"model": j.model, "baseline": j.baseline, "length_controlled_winrate": percent(lc["win_rate"]),
           "lc_standard_error": percent(lc["standard_error"]),
           "lc_standard_error_kind": lc.get("standard_error_kind"), "win_rate": percent(raw["win_rate"]),
           "standard_error": percent(raw["standard_error"]),
           "discrete_win_rate": percent(raw["discrete_win_rate"]),
           "avg_length": float(j.model_length.mean()), "baseline_avg_length": float(j.baseline_length.mean()),
           **{k: raw[k] for k in ("n_wins", "n_draws", "n_wins_base", "n_total", "n_prompts")},
           "glm": {k: v for k, v in lc.items() if k not in ("win_rate", "standard_error", "standard_error_kind")},
           "sources": j.sources}
    if j.score is not None:
        row["mean_score"] = float(j.score.mean())
    return row


def read_models(config, files: list[str]) -> tuple[list[Judged], dict]:
    """Judged models in `files` (only those against config.baseline when set) and per-file info."""
    judged, info = read_judged(files, config.skip_missing)
    if config.baseline is not None:
        judged = [j for j in judged if j.baseline == config.baseline]
        if not judged:
            raise UserError(f"no comparison against baseline {config.baseline!r} in {', '.join(files)}")
    return judged, info


def read_glm_extras(config) -> tuple[dict | None, tuple]:
    """Published difficulties (or None), and (published gamed rows or None, gamed annotations) of the config."""
    given = config.difficulties not in (None, "fit")
    published = read_difficulties(config.difficulties, config.instructions) if given else None
    ready, from_file, annotations = None, None, []
    if config.gamed:
        ready, from_file, annotations = read_gamed(config.gamed, config.regularize_lambda, config.instructions)
    if published is None and from_file is not None:  # AlpacaEval's LC reads them from df_gamed.csv
        published = from_file
    return published, (ready, annotations)


def by_baseline(judged: list[Judged]) -> dict[str, list[Judged]]:
    groups: dict[str, list[Judged]] = {}
    for j in judged:
        groups.setdefault(j.baseline, []).append(j)
    return groups


def evaluate_winrates(config) -> dict:
    """The `eval winrate` result: one row per (model, baseline), best LC first, and how the GLM was set up."""
    judged, files = read_models(config, config.files)
    published, gamed = read_glm_extras(config)
    rows, setups = [], {}
    for baseline, group in by_baseline(judged).items():
        inputs = glm_inputs(group, config, published, gamed)
        setups[baseline] = {"difficulties": inputs.difficulties_source,
                            "gamed_generators": inputs.gamed.generators if inputs.gamed else [],
                            "regularize_lambda": config.regularize_lambda if inputs.gamed else None,
                            "comparable_to_leaderboard": inputs.not_comparable is None,
                            "not_comparable_because": inputs.not_comparable, "notes": inputs.notes}
        rows += [model_row(j, inputs) for j in group]
    rows.sort(key=lambda r: (r["baseline"], -(r["length_controlled_winrate"] if r["length_controlled_winrate"]
                                               is not None else -1.0)))
    return {"action": "winrate", "unit": "percent", "files": files, "glm_setup": setups, "models": rows}


def _cell(value, error=None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if error is None else f"{value:.{digits}f} ± {error:.{digits}f}"


def winrate_table(result: dict) -> str:
    """The printed table: one block per baseline."""
    from tokensift.eval.report import table

    lines = []
    for baseline, setup in result["glm_setup"].items():
        rows = [r for r in result["models"] if r["baseline"] == baseline]
        mark = " †" if setup.get("not_comparable_because") else ""
        lines += [f"against {baseline} (percent; difficulties: {setup['difficulties']}; "
                  f"gamed rows: {', '.join(setup['gamed_generators']) or 'none'})", ""]
        body = [[r["model"], _cell(r["length_controlled_winrate"], r["lc_standard_error"])
                 + (mark if r["length_controlled_winrate"] is not None else ""),
                 _cell(r["win_rate"], r["standard_error"]), f"{r['avg_length']:.0f}",
                 f"{r['n_wins']}/{r['n_draws']}/{r['n_wins_base']}", str(r["n_prompts"]),
                 r["glm"].get("glm") or r["glm"].get("reason", "-")] for r in rows]
        lines.append(table(["model", "LC win rate", "win rate", "avg length", "wins/draws/losses", "prompts",
                            "GLM"], body))
        if mark:
            lines.append(f"† not comparable with AlpacaEval's leaderboard LC: {setup['not_comparable_because']}")
        else:
            lines.append("LC comparable with AlpacaEval 2's leaderboard when the judge was its GPT-4-Turbo "
                         f"({alpacaeval_lc.JUDGE})")
        kinds = sorted({r["lc_standard_error_kind"] for r in rows if r.get("lc_standard_error_kind")})
        if kinds:
            lines.append(f"LC ± is {' / '.join(kinds)}")
        lines += [f"note: {n}" for n in setup["notes"]] + [""]
    return "\n".join(lines).rstrip()
