"""`tokensift sepo`: reference SFT (optional) -> oracle DPO -> token scores -> SePO policy, resumable.

Every stage writes into its own folder under `output_dir` and is skipped when its output exists and was made
from the same inputs (training stages compare their run card's config, scoring its fingerprint). A killed
pipeline rerun with the same config continues the stage it was in (training resumes from its last
checkpoint, scoring from its last shard). All stage settings are checked before the first stage starts.

Each stage is keyed by the settings it reads: when a stage's folder holds a run with other settings, that stage
runs in a folder beside it named by its settings (`policy-1a2b3c4d/`), and every stage before it is reused. So
`policy.k_chosen=0.2` after a run with 0.3 trains only a new policy, on the same oracle and scores; a changed
oracle setting trains a new oracle, then scores and a policy of its own. `--check` prints what would run and what
is reused (plan_pipeline).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

from tokensift.config import build, option
from tokensift.data.io import as_source
from tokensift.errors import UserError
from tokensift.fsutil import write_json_atomic
from tokensift.models import DEFAULT_MODEL
from tokensift.sepo.config import OracleConfig, ScoreConfig
from tokensift.train.config import TrainConfig
from tokensift.train.hub import check_hub
from tokensift.train.run_folder import recorded_differences, settings_key, training_done

log = logging.getLogger(__name__)


@dataclass
class SePOConfig:
    CLI_EXAMPLE = "limit=200 oracle.epochs=2 policy.k_chosen=0.2"

    data: str = option("", "Preference data for every stage (file, dataset folder or hub id; in Python also a list of dicts or a datasets.Dataset).", in_memory=True)
    output_dir: str = option("runs/sepo", "Stage folders go here: sft/, oracle/, scores/, policy/, report/. A stage whose folder holds a run with other settings goes beside it (e.g. policy-1a2b3c4d/, with report-1a2b3c4d/), and the stages before it are reused.")
    reference_model: str = option(DEFAULT_MODEL, "The oracle's starting point (SFT'd first when sft_enabled=true).")
    policy_model: str = option(DEFAULT_MODEL, "The model SePO trains; may be larger than the oracle (same tokenizer, or projection).")
    policy_from_reference: bool = option(False, "Start the policy from the reference instead of policy_model: the SFT stage's model when sft_enabled (the paper's same-size runs).")
    columns: str | None = option(None, "Column mapping for custom files, applied in every stage.")
    max_length: int | None = option(1024, "Max prompt+response tokens in every stage.")
    max_prompt_length: int | None = option(512, "Max prompt tokens in every stage.")
    seed: int = option(0, "Seed shared by the stages.")
    limit: int | None = option(None, "Use only the first N valid pairs in every stage (quick experiments).")
    progress: bool = option(True, "Show progress bars in every stage.")
    sft_enabled: bool = option(False, "Train the reference with SFT on the chosen responses first.")
    sft: dict = option({}, "Overrides of the SFT stage (TrainConfig keys, e.g. sft.learning_rate=1e-5 sft.epochs=2).", section=TrainConfig)
    oracle: dict = option({}, "Overrides of the oracle stage (TrainConfig keys plus fraction: all the data by default, as the released oracle), e.g. oracle.fraction=0.3.", section=OracleConfig)
    score: dict = option({}, "Overrides of the scoring stage (ScoreConfig keys), e.g. score.batch_size=32.", section=ScoreConfig)
    policy: dict = option({}, "Overrides of the policy stage (TrainConfig keys: k_chosen, k_rejected, sepo_gamma ...), e.g. policy.sepo_gamma=2.", section=TrainConfig)
    show_pairs: int = option(50, "Pairs in the report's HTML heatmap (0: none).")

    def validate(self) -> None:
        self.data = as_source(self.data, "data")
        if not self.data:
            raise UserError("the SePO pipeline needs data=PATH")
        if "enabled" in self.sft:
            raise UserError("unknown config key 'sft.enabled': the SFT stage is switched on by sft_enabled=true")
        self.stages()  # builds and checks every stage's settings now, before any work
        if self.sft and not self.sft_enabled:  # checked all the same (stages()), and said, not silently unused
            log.warning("sft.%s is set, but sft_enabled=false: the SFT stage does not run (sft_enabled=true runs it)",
                        ", sft.".join(self.sft))

    def folder(self, name: str) -> Path:
        return Path(self.output_dir) / name

    def _common(self) -> dict:
        return {"data": self.data, "columns": self.columns, "max_length": self.max_length,
                "max_prompt_length": self.max_prompt_length, "seed": self.seed, "limit": self.limit,
                "progress": self.progress}

    def stages(self, folders: dict[str, str] | None = None) -> dict:
        """Every stage's settings, checked. `folders`: stage -> its folder under output_dir (default: the stage's
        name; run_pipeline places each stage in turn, see place_training and place_scores). A stage's own
        `output_dir` override wins."""
        folders = {"sft": "sft", "oracle": "oracle", "score": "scores", "policy": "policy", **(folders or {})}
        common = self._common()
        reference = self.reference_model
        out = {}

        def stage(name: str, cls, values: dict, overrides: dict):
            return build(cls, {**values, "resume": True, "output_dir": str(self.folder(folders[name])), **overrides},
                         prefix=f"{name}.")

        sft = stage("sft", TrainConfig, {**common, "model": reference, "loss": "sft"}, self.sft)  # checked even when off
        if self.sft_enabled:
            out["sft"] = sft
            reference = str(Path(sft.output_dir) / "final")
        out["oracle"] = stage("oracle", OracleConfig, {**common, "model": reference, "loss": "dpo", "fraction": 1.0},
                              self.oracle)
        scoring = {k: v for k, v in common.items() if k != "seed"}
        out["score"] = build(ScoreConfig, {**scoring, "oracle": str(Path(out["oracle"].output_dir) / "final"),
                                           "reference": reference, "output_dir": str(self.folder(folders["score"])),
                                           **self.score}, prefix="score.")
        policy = {k: v for k, v in common.items() if k not in ("data", "columns")}
        start = reference if self.policy_from_reference else self.policy_model
        out["policy"] = stage("policy", TrainConfig, {**policy, "model": start, "loss": "sepo",
                                                      "scores": out["score"].output_dir}, self.policy)
        return out


def place_training(config: SePOConfig, name: str, folders: dict, quiet: bool = False) -> dict:
    """Where training stage `name` goes: its plain folder, unless that holds a run with other settings; then
    `<folder>-<key of its settings>`, so a changed stage setting trains beside the earlier run and every stage
    before it is reused (issue 23). Returns the stages with that folder."""
    stages = config.stages(folders)
    stage = stages[name]
    overridden = "output_dir" in (getattr(config, name, None) or {})
    differences = None if overridden else recorded_differences(stage)
    if differences:
        plain = Path(stage.output_dir).name
        folders[name] = f"{plain}-{settings_key(stage)}"
        if not quiet:
            print(f"[sepo] {name}: {stage.output_dir} holds a run with other settings ({'; '.join(differences[:3])}"
                  f"{' ...' if len(differences) > 3 else ''}); this one goes to {config.folder(folders[name])}")
        stages = config.stages(folders)
    return stages


def place_scores(config: SePOConfig, folders: dict, tokenizer, quiet: bool = False) -> dict:
    """Where the scores go: `scores/`, unless it holds scores of other inputs (another oracle, data or settings);
    then `scores-<key of the inputs>`."""
    from tokensift.data.io import fingerprint
    from tokensift.sepo.score import score_meta
    from tokensift.shards import ShardStore

    stages = config.stages(folders)
    score = stages["score"]
    existing = ShardStore(score.output_dir).read_meta()
    key = fingerprint(score_meta(score, tokenizer))
    if existing is not None and existing.get("fingerprint") != key and "output_dir" not in config.score:
        folders["score"] = f"{Path(score.output_dir).name}-{key[:8]}"
        if not quiet:
            print(f"[sepo] score: {score.output_dir} holds scores of other inputs; these go to "
                  f"{config.folder(folders['score'])}")
        stages = config.stages(folders)
    return stages


def report_folder(config: SePOConfig, policy: TrainConfig) -> Path:
    """The report of a policy run: report/ for the plain policy folder, report-<key> beside a keyed one."""
    suffix = Path(policy.output_dir).name[len("policy"):] if Path(policy.output_dir).name.startswith("policy") else ""
    return config.folder("report" + suffix)


def run_pipeline(config: SePOConfig) -> dict:
    from tokensift.models import load_tokenizer
    from tokensift.sepo.mass import describe, mass_summary, save_summary
    from tokensift.sepo.oracle import train_oracle
    from tokensift.sepo.score import score_tokens, scores_complete
    from tokensift.selection import SelectionArgs
    from tokensift.sepo.show import ShowConfig, show_scores
    from tokensift.train.loop import train
    from tokensift.train.run import train_run

    for stage in config.stages().values():
        check_hub(stage)  # a stage that publishes fails now, not after the stages before it
    report: dict = {"stages": {}}
    folders: dict[str, str] = {}
    for name in ("sft", "oracle"):
        if name == "sft" and not config.sft_enabled:
            continue
        stage = place_training(config, name, folders)[name]
        if training_done(stage):
            print(f"[sepo] {name}: done already ({stage.output_dir}/final), skipped")
        else:
            print(f"[sepo] {name}: training {stage.model} -> {stage.output_dir}")
            (train_oracle if name == "oracle" else train)(stage)
        report["stages"][name] = str(Path(stage.output_dir) / "final")
    tokenizer = load_tokenizer(config.stages(folders)["score"].oracle)
    score = place_scores(config, folders, tokenizer)["score"]
    if scores_complete(score.output_dir, score, tokenizer):
        print(f"[sepo] score: done already ({score.output_dir}), skipped")
    else:
        print(f"[sepo] score: oracle {score.oracle} vs reference {score.reference} -> {score.output_dir}")
        result = score_tokens(score)
        print(f"[sepo] score: {result.rows_total} pairs, {result.tokens / max(result.seconds, 1e-9):.0f} tokens/s")
    report["stages"]["score"] = score.output_dir
    policy = place_training(config, "policy", folders)["policy"]
    reports = report_folder(config, policy)
    summary = mass_summary(score.output_dir)
    save_summary(summary, reports, title="SePO oracle: reward concentration")
    print(f"[sepo] reward mass: {describe(summary)}")
    report["mass"] = summary
    if training_done(policy):
        print(f"[sepo] policy: done already ({policy.output_dir}/final), skipped")
    else:
        print(f"[sepo] policy: SePO on {policy.model}, k_chosen={policy.k_chosen}, k_rejected={policy.k_rejected}")
        train_run(policy)
    report["stages"]["policy"] = str(Path(policy.output_dir) / "final")
    if config.show_pairs:
        page = show_scores(build(ShowConfig, {
            "scores": score.output_dir, "output": str(reports / "token-scores.html"),
            "pairs": config.show_pairs, "limit": policy.limit, "eval_fraction": policy.eval_fraction,
            "seed": policy.seed, **{f.name: getattr(policy, f.name) for f in dataclasses.fields(SelectionArgs)}}))
        report["heatmap"] = str(page)
        print(f"[sepo] heatmap: {page}")
    write_json_atomic(reports / "pipeline.json", report)
    return report


def plan_pipeline(config: SePOConfig):
    """`tokensift sepo --check`: each stage's plan, where it goes and what is reused, without loading weights.
    Stages whose input a stage before them still has to make are described, not checked in full."""
    from tokensift.models import load_tokenizer
    from tokensift.preflight import Plan
    from tokensift.sepo.oracle import oracle_data
    from tokensift.train.run import selected_train_data
    from tokensift.sepo.score import scores_complete
    from tokensift.shards import ShardStore
    from tokensift.train.plan import describe_folder, plan_training
    from tokensift.train.run_folder import folder_state

    plan = Plan("sepo")
    folders: dict[str, str] = {}
    waiting = None  # the stage whose output the next one needs and that has not run yet
    for name in ("sft", "oracle"):
        if name == "sft" and not config.sft_enabled:
            continue
        stage = place_training(config, name, folders, quiet=True)[name]
        if waiting:
            plan.add(f"{name}", f"{describe_folder(stage)[1]}; trains after {waiting}")
        else:
            plan.extend(plan_training(stage, oracle_data if name == "oracle" else None, name), prefix=f"{name}: ")
        if folder_state(stage) != "done":
            waiting = waiting or name
    score = config.stages(folders)["score"]
    if waiting:
        plan.add("score", f"{score.output_dir}: scores every pair after {waiting}")
    else:
        tokenizer = load_tokenizer(score.oracle, score.trust_remote_code)
        score = place_scores(config, folders, tokenizer, quiet=True)["score"]
        if scores_complete(score.output_dir, score, tokenizer):
            plan.add("score", f"{score.output_dir}: scored already with these inputs; reused")
        else:
            done = len(ShardStore(score.output_dir).done_rows())
            plan.add("score", f"{score.output_dir}: " + (f"{done:,} pairs scored already; scoring continues"
                                                          if done else "scores every pair"))
            waiting = "score"
    policy = place_training(config, "policy", folders, quiet=True)["policy"]
    if waiting:
        plan.add("policy", f"{describe_folder(policy)[1]}; trains on the key tokens after {waiting}")
    else:
        plan.extend(plan_training(policy, selected_train_data, "policy"), prefix="policy: ")
    plan.add("report", str(report_folder(config, policy)))
    return plan
