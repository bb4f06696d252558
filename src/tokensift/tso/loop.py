"""Mini-batch iterative DPO (spec §3.7): one round per prompt chunk, the reference refreshed every round.

    policy_0 = config.model
    for k in 1..K:                                  # folder round-XX/
        reference = policy_{k-1}                    # frozen: the Trainer caches its log-probs before step 1
        candidates = fixed cells + policy_{k-1}'s fresh answers + human responses   (candidates.jsonl)
        pairs = prior ordering -> judge -> review classes                           (judged.jsonl, review.jsonl)
        pairs = human decisions, then the defaults (prior order)                    (pairs.jsonl, decisions-applied.jsonl)
        policy_k = dual-clip DPO (loss=tso) from policy_{k-1} on the pairs           (train/, train/final)
        stability: KL to policy_0 and policy_{k-1}, win rate over policy_{k-1}      (stability.json)
        report; stop early when asked and the round did not improve                 (report.json, round.json)

Resume: a round with round.json is finished and skipped. Inside a round each sub-step's output file is
written atomically and last, so its existence means "done": a rerun skips it and continues with the next
(generation at its first missing block, training from its last checkpoint with resume=true). The run's
settings are saved in tso-config.json and a rerun with different settings is refused, except the human
review keys (decisions, unresolved, consistent_only), publishing (push_to_hub ...) and progress, which may
change between reruns.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from pathlib import Path

from tokensift.errors import UserError
from tokensift.fsutil import check_output_dir, check_writable, write_json_atomic
from tokensift.tso.config import MARGIN_COLUMN, RUN_RECORD, TSOConfig, prior_ranks
from tokensift.tso.evaluate import describe, evaluate_model, summary, win_rate
from tokensift.tso.files import (
    read_json,
    read_jsonl,
    write_jsonl,
    write_table,
)
from tokensift.tso.matrix import (
    CellStore,
    assemble_candidates,
    candidate_rows,
    candidates_from_rows,
    fill_column,
    fill_fixed_matrix,
    read_offline_cells,
)
from tokensift.train.hub import HUB_KEYS, check_hub
from tokensift.tso.pairs import (
    REVIEW_COLUMNS,
    Pair,
    build_pairs,
    correct_pairs,
    judge_pairs,
    read_decisions,
    review_rows,
    scaled_margin,
)
from tokensift.tso.prompts import prepare_prompts, save_prompts
from tokensift.tso.publish import publish_final
from tokensift.tso.report import TRAIN_METRICS, format_round
from tokensift.tso.review import ReviewSettings, review_reasons
from tokensift.tso.stability import measure_round, stop_reason

# may change between reruns: they decide nothing a finished round depends on
REVIEW_KEYS = ("decisions", "unresolved", "consistent_only", "progress", "vllm_tensor_parallel", *HUB_KEYS)


class ReviewNeeded(UserError):
    """unresolved=stop and some reviewed pairs have no human decision: the run stops so people can decide."""


def open_judge(config: TSOConfig):
    from tokensift.judges import build_judge

    spec = dict(config.judge)
    if not spec:
        raise UserError("judge: no judge configured; e.g. judge: {type: callable, function: "
                        "tokensift.judges:vader_sentiment} (see docs/tso.md)")
    if "cache" not in spec:
        spec["cache"] = str(Path(config.output_dir) / "judge-cache.sqlite")
    elif not spec["cache"]:
        spec.pop("cache")
    return build_judge(spec)


def check_run_config(config: TSOConfig) -> bool:
    """Refuse to continue a run folder with other settings: its finished rounds were made with the old ones.
    Returns whether the folder holds a started run."""
    path = Path(config.output_dir) / RUN_RECORD
    if not path.exists():
        return False
    saved = read_json(path)
    changed = [name for name, value in run_settings(config).items() if saved.get(name) != value]
    if changed:
        raise UserError(f"{config.output_dir} holds a TSO run made with other settings ({', '.join(changed)} "
                        "changed); restore them or choose another output_dir")
    return True


def run_settings(config: TSOConfig) -> dict:
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(TSOConfig) if f.name not in REVIEW_KEYS}


class TSORun:
    """Everything a run shares across rounds: settings, prompts, generators, prior ranks, judge, fixed cells."""

    def __init__(self, config: TSOConfig, judge=None, check_only: bool = False):
        """check_only: the preflight (`--check`): nothing is created or written."""
        self.config = config
        self.out = Path(config.output_dir)
        if check_only:
            check_writable(self.out)
        else:
            check_output_dir(self.out)
        self.started = check_run_config(config)
        self.specs = config.generator_specs()
        self.prompts = prepare_prompts(config, self.started)
        self.ranks = prior_ranks(self.specs, with_human=bool(config.human_column))
        self.policy_spec = next((s for s in self.specs if s.kind == "policy"), None)
        self._judge = judge

    def begin(self) -> None:
        """Mark the folder as this run's, right before the first real work: a run that failed on a bad
        setting before that (a missing file, a bad judge) leaves nothing that would refuse the fixed setting."""
        if not self.started:
            save_prompts(self.config, self.prompts)
            write_json_atomic(self.out / RUN_RECORD, run_settings(self.config))
            self.started = True

    @property
    def judge(self):
        if self._judge is None:
            self._judge = open_judge(self.config)
        return self._judge

    def describe(self) -> str:
        ladder = sorted(self.ranks.items(), key=lambda item: -item[1])
        sizes = "/".join(str(len(c)) for c in self.prompts.chunks)
        return (f"[tso] {len(self.prompts.train_ids)} training prompts in {len(self.prompts.chunks)} rounds "
                f"({sizes}), {len(self.prompts.eval)} held out"
                + (f", {self.prompts.duplicates} duplicate prompts merged" if self.prompts.duplicates else "")
                + "\n[tso] prior ladder (rank, higher is better): " + ", ".join(f"{n} {r}" for n, r in ladder))

    def fixed_cells(self) -> dict:
        train = [self.prompts.records[i] for i in self.prompts.train_ids]
        fill_fixed_matrix(self.config, self.specs, train)
        cells = CellStore(self.out / "matrix").cells()
        if self.config.matrix_file:
            cells.update(read_offline_cells(self.config.matrix_file, train, self.specs))
        return cells

    def policy_after(self, round_index: int) -> str:
        """The policy a round starts from: the model, or the previous round's output."""
        if round_index == 1:
            return self.config.model
        return read_json(self.out / f"round-{round_index - 1:02d}" / "round.json")["policy_out"]


def round_candidates(run: TSORun, k: int, folder: Path, policy: str, fixed: dict) -> list[dict]:
    path = folder / "candidates.jsonl"
    if path.exists():
        return read_jsonl(path)
    chunk = run.prompts.chunks[k - 1]
    cells = dict(fixed)
    if run.policy_spec is not None:
        store = CellStore(folder / "policy-cells")
        store.check_settings([run.policy_spec], {run.policy_spec.name: policy})
        # A new seed every round: the policy's column is fresh samples, not a replay of last round's draws.
        made = fill_column(store, run.policy_spec, policy, [run.prompts.records[i] for i in chunk], run.config,
                           seed=run.policy_spec.seed + 7919 * k)
        if made:
            print(f"[tso] round {k}: policy column ({policy}) answered {made} prompts")
        cells.update(store.cells())
    candidates, _ = assemble_candidates(chunk, run.prompts.records, run.specs, run.ranks, cells)
    rows = candidate_rows(candidates)
    write_jsonl(path, rows)
    return rows


def round_judgements(run: TSORun, folder: Path, candidates: list[dict]) -> tuple[list[Pair], dict]:
    path = folder / "judged.jsonl"
    if path.exists():
        return [Pair.from_row(r) for r in read_jsonl(path)], read_json(folder / "pairing.json")
    pairs, counts = build_pairs(candidates_from_rows(candidates), run.config.pairing, run.config.min_rank_gap)
    judge_pairs(pairs, run.prompts.records, run.judge)
    write_json_atomic(folder / "pairing.json", dict(counts))
    write_jsonl(path, [p.to_row() for p in pairs])
    return pairs, dict(counts)


def round_corrections(run: TSORun, k: int, folder: Path, pairs: list[Pair]) -> dict:
    path = folder / "pairs.jsonl"
    if path.exists():
        return read_json(folder / "corrections.json")
    config = run.config
    decisions = read_decisions(config.decisions)
    reasons = review_reasons(pairs, ReviewSettings.of(config), k)
    reviewed = [p for p in pairs if p.pair_id in reasons]
    write_table(folder / "review.jsonl", review_rows(reviewed, run.prompts.records, k, decisions, reasons),
                REVIEW_COLUMNS)
    result = correct_pairs(pairs, run.prompts.records, reasons, decisions, config.unresolved, config.consistent_only)
    if result.unresolved:
        raise ReviewNeeded(
            f"round {k}: {len(result.unresolved)} reviewed pairs need a human decision (unresolved=stop). Decide "
            f"them in the browser: `tokensift tso review --serve output_dir={config.output_dir}` opens the review "
            "page and writes the decisions file it names; or write a sheet with `tokensift tso review "
            f"output_dir={config.output_dir} review_file=review.csv` and fill in 'decision' (keep, flip or drop). "
            "Pass the file as decisions=FILE and rerun: the run continues here.")
    if config.scaled_margin > 0:
        for row in result.train_rows:
            row[MARGIN_COLUMN] = scaled_margin(row, config.scaled_margin, config.margin_by)
    summary_ = {"counts": dict(result.counts), "decisions_file": config.decisions, "unresolved_policy": config.unresolved,
                "review": dataclasses.asdict(ReviewSettings.of(config)), "consistent_only": config.consistent_only}
    write_jsonl(folder / "decisions-applied.jsonl", result.applied)
    write_json_atomic(folder / "corrections.json", summary_)
    write_jsonl(path, result.train_rows)
    return summary_


def round_training(run: TSORun, k: int, folder: Path, policy: str, trained_pairs: int) -> tuple[str, dict, int]:
    """Dual-clip DPO from the round's policy, referenced to itself. Returns (policy_out, metrics, steps)."""
    from tokensift.train.loop import Trainer

    if trained_pairs == 0:
        print(f"[tso] round {k}: no pairs left to train on; the policy is unchanged")
        return policy, {}, 0
    out = folder / "train"
    card = out / "final" / "run_card.json"
    if not card.exists():
        config = run.config.train_config(str(folder / "pairs.jsonl"), policy, str(out), k)
        Trainer(config).run()
    recorded = read_json(card)
    return str(out / "final"), recorded.get("final_train_metrics") or {}, recorded.get("steps", 0)


def run_round(run: TSORun, k: int, fixed: dict) -> dict:
    folder = run.out / f"round-{k:02d}"
    done = folder / "round.json"
    if done.exists():
        report = read_json(done)
        print(f"[tso] round {k}: finished earlier, skipped")
        print(format_round(report))
        return report
    folder.mkdir(parents=True, exist_ok=True)
    policy = run.policy_after(k)
    candidates = round_candidates(run, k, folder, policy, fixed)
    pairs, pairing = round_judgements(run, folder, candidates)
    corrections = round_corrections(run, k, folder, pairs)
    policy_out, metrics, steps = round_training(run, k, folder, policy, corrections["counts"].get("trained", 0))
    present = Counter(c["generator"] for c in candidates)
    chunk = len(run.prompts.chunks[k - 1])
    report = {
        "round": k, "rounds": run.config.rounds, "prompts": chunk, "policy_in": policy, "policy_out": policy_out,
        "candidates": {"total": len(candidates), "per_generator": dict(present),
                       "missing_or_empty": {g: chunk - present[g] for g in run.ranks if chunk - present[g]}},
        "pairing": pairing, "corrections": corrections["counts"],
        "train": {"steps": steps, **{m: metrics[m] for m in TRAIN_METRICS if m in metrics}},
    }
    if run.config.stability and run.prompts.eval:
        report["stability"] = measure_round(run, k, folder, policy, policy_out)
        report["stop"] = stop_reason(report["stability"], run.config)
    write_json_atomic(folder / "report.json", report)
    write_json_atomic(done, report)
    print(format_round(report))
    return report


def eval_sampling(run: TSORun) -> dict:
    spec = run.policy_spec
    c = run.config
    if spec is None:
        return {"temperature": c.temperature, "top_p": c.top_p, "max_new_tokens": c.max_new_tokens}
    return {"temperature": spec.temperature, "top_p": spec.top_p, "max_new_tokens": spec.max_new_tokens}


def run_tso(config: TSOConfig, judge=None) -> dict:
    """The whole pipeline; returns (and saves as report.json) the per-round reports and the evaluation."""
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    if processes > 1:
        raise UserError(
            f"tokensift tso run runs in one process, but it was launched as {processes} (accelerate launch or "
            "torchrun): every process would generate, judge and write the same round files. Run it without a "
            "launcher; generation scales with backend=vllm (tensor parallel over the GPUs of one machine)"
        )
    run = TSORun(config, judge)
    check_hub(config)  # push_to_hub: token, network, id and write access before any work
    print(run.describe())
    judge = run.judge  # built now: a bad judge spec fails before an hour of generation, not after it
    run.begin()
    fixed = run.fixed_cells()
    held = [run.prompts.records[i] for i in run.prompts.eval]
    before = None
    if held:
        before = evaluate_model(run.out / "eval" / "before.json", config.model, held, judge, config,
                                eval_sampling(run))
        print(f"[tso] before training: {describe(summary(before, None, None))}")
    reports, stopped = [], None
    for k in range(1, config.rounds + 1):
        reports.append(run_round(run, k, fixed))
        if reports[-1].get("stop"):
            stopped = {"round": k, "reason": reports[-1]["stop"], "rounds_skipped": config.rounds - k}
            print(f"[tso] stopped after round {k}: {stopped['reason']}; {stopped['rounds_skipped']} rounds skipped")
            break
    # An early stop means the stopping round did not help: the final model is the one it started from.
    final = reports[-1]["policy_in"] if stopped else reports[-1]["policy_out"]
    result = {"final_model": final, "rounds": reports, **({"stopped_early": stopped} if stopped else {})}
    if held:
        after = evaluate_model(run.out / "eval" / "after.json", final, held, judge, config, eval_sampling(run))
        result["eval"] = summary(before, after, win_rate(before, after, held, judge))
        print(f"[tso] evaluation: {describe(result['eval'])}")
    decided = read_decisions(config.decisions)
    if decided:
        known = {r["pair_id"] for k in range(1, len(reports) + 1)
                 for r in read_jsonl(run.out / f"round-{k:02d}" / "judged.jsonl")}
        result["decisions_unmatched"] = sorted(set(decided) - known)
        if result["decisions_unmatched"]:
            print(f"[tso] warning: {len(result['decisions_unmatched'])} of {len(decided)} decisions in "
                  f"{config.decisions} match no pair of this run (first: {result['decisions_unmatched'][0]})")
    write_json_atomic(run.out / "report.json", result)
    publish_final(run, result)
    print(f"[tso] final model: {final}; report: {run.out / 'report.json'}")
    return result


def export_review(config, output: str | None, include_decided: bool) -> tuple[Path, int]:
    """`tokensift tso review`: every reviewed pair of the run's judged rounds (each with its reason: confident
    disagreement, inconsistent or ambiguous verdict, audit sample), in the decisions-file format."""
    run_dir = Path(config.output_dir)
    if not check_run_config(config):
        raise UserError(f"{run_dir} holds no TSO run yet; start one with `tokensift tso run` first")
    records = prepare_prompts(config, started=True).records
    decisions = read_decisions(config.decisions)
    target = Path(output) if output else run_dir / "review.jsonl"
    if config.decisions and target.resolve() == Path(config.decisions).resolve():
        include_decided = True  # rewriting the decisions file itself: keep every decision already in it
    rows = []
    for k, pairs, reasons in judged_rounds(run_dir, config):
        reviewed = [p for p in pairs if p.pair_id in reasons and (include_decided or p.pair_id not in decisions)]
        rows += review_rows(reviewed, records, k, decisions, reasons)
    write_table(target, rows, REVIEW_COLUMNS)
    return target, len(rows)


def judged_rounds(run_dir: Path, config):
    """(round, its judged pairs, the review reasons among them) for every round of the run judged so far."""
    for k in range(1, config.rounds + 1):
        path = run_dir / f"round-{k:02d}" / "judged.jsonl"
        if not path.exists():
            continue
        pairs = [Pair.from_row(r) for r in read_jsonl(path)]
        yield k, pairs, review_reasons(pairs, ReviewSettings.of(config), k)
