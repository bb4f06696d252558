"""`tokensift sepo`: reference SFT (optional) -> oracle DPO -> token scores -> SePO policy, resumable.

Every stage writes into its own folder under `output_dir` and is skipped when its output exists and was made
from the same inputs (training stages compare their run card's config, scoring its fingerprint). A killed
pipeline rerun with the same config continues the stage it was in (training resumes from its last
checkpoint, scoring from its last shard). All stage settings are checked before the first stage starts.
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

log = logging.getLogger(__name__)


@dataclass
class SePOConfig:
    data: str = option("", "Preference data for every stage (file, dataset folder or hub id; in Python also a list of dicts or a datasets.Dataset).", in_memory=True)
    output_dir: str = option("runs/sepo", "Stage folders go here: sft/, oracle/, scores/, policy/, report/.")
    reference_model: str = option(DEFAULT_MODEL, "The oracle's starting point (SFT'd first when sft.enabled).")
    policy_model: str = option(DEFAULT_MODEL, "The model SePO trains; may be larger than the oracle (same tokenizer, or projection).")
    policy_from_reference: bool = option(False, "Start the policy from the reference instead of policy_model: the SFT stage's model when sft_enabled (the paper's same-size runs).")
    columns: str | None = option(None, "Column mapping for custom files, applied in every stage.")
    max_length: int | None = option(1024, "Max prompt+response tokens in every stage.")
    max_prompt_length: int | None = option(512, "Max prompt tokens in every stage.")
    seed: int = option(0, "Seed shared by the stages.")
    sft_enabled: bool = option(False, "Train the reference with SFT on the chosen responses first.")
    sft: dict = option({}, "Overrides of the SFT stage (TrainConfig keys, e.g. learning_rate, epochs).")
    oracle: dict = option({}, "Overrides of the oracle stage (TrainConfig keys plus fraction: all the data by default, as the released oracle).")
    score: dict = option({}, "Overrides of the scoring stage (ScoreConfig keys, e.g. batch_size, beta).")
    policy: dict = option({}, "Overrides of the policy stage (TrainConfig keys: k_chosen, k_rejected, sepo_gamma ...).")
    show_pairs: int = option(50, "Pairs in the report's HTML heatmap (0: none).")

    def validate(self) -> None:
        self.data = as_source(self.data, "data")
        if not self.data:
            raise UserError("the SePO pipeline needs data=PATH")
        self.stages()  # builds and checks every stage's settings now, before any work

    def folder(self, name: str) -> Path:
        return Path(self.output_dir) / name

    def _common(self) -> dict:
        return {"data": self.data, "columns": self.columns, "max_length": self.max_length,
                "max_prompt_length": self.max_prompt_length, "seed": self.seed}

    def stages(self) -> dict:
        common = self._common()
        reference = self.reference_model
        out = {}
        if self.sft_enabled:
            out["sft"] = build(TrainConfig, {**common, "model": reference, "loss": "sft", "resume": True,
                                             "output_dir": str(self.folder("sft")), **self.sft}, prefix="sft.")
            reference = str(self.folder("sft") / "final")
        out["oracle"] = build(OracleConfig, {**common, "model": reference, "loss": "dpo", "fraction": 1.0,
                                             "resume": True, "output_dir": str(self.folder("oracle")), **self.oracle},
                              prefix="oracle.")
        out["score"] = build(ScoreConfig, {**{k: v for k, v in common.items() if k != "seed"},
                                           "oracle": str(self.folder("oracle") / "final"), "reference": reference,
                                           "output_dir": str(self.folder("scores")), **self.score}, prefix="score.")
        policy = {k: v for k, v in common.items() if k not in ("data", "columns")}
        start = reference if self.policy_from_reference else self.policy_model
        out["policy"] = build(TrainConfig, {**policy, "model": start, "loss": "sepo", "resume": True,
                                            "scores": str(self.folder("scores")),
                                            "output_dir": str(self.folder("policy")), **self.policy},
                              prefix="policy.")
        return out


def run_pipeline(config: SePOConfig) -> dict:
    from tokensift.models import load_tokenizer
    from tokensift.sepo.mass import describe, mass_summary, save_summary
    from tokensift.sepo.oracle import train_oracle
    from tokensift.sepo.score import score_tokens, scores_complete
    from tokensift.selection import SelectionArgs
    from tokensift.sepo.show import ShowConfig, show_scores
    from tokensift.train.loop import train
    from tokensift.train.run import train_run, training_done

    stages = config.stages()
    for stage in stages.values():
        check_hub(stage)  # a stage that publishes fails now, not after the stages before it
    report: dict = {"stages": {}}
    for name in ("sft", "oracle"):
        if name not in stages:
            continue
        stage = stages[name]
        if training_done(stage):
            print(f"[sepo] {name}: done already ({stage.output_dir}/final), skipped")
        else:
            print(f"[sepo] {name}: training {stage.model} -> {stage.output_dir}")
            (train_oracle if name == "oracle" else train)(stage)
        report["stages"][name] = str(Path(stage.output_dir) / "final")
    score = stages["score"]
    tokenizer = load_tokenizer(score.oracle)
    if scores_complete(score.output_dir, score, tokenizer):
        print(f"[sepo] score: done already ({score.output_dir}), skipped")
    else:
        print(f"[sepo] score: oracle {score.oracle} vs reference {score.reference} -> {score.output_dir}")
        result = score_tokens(score)
        print(f"[sepo] score: {result.rows_total} pairs, {result.tokens / max(result.seconds, 1e-9):.0f} tokens/s")
    summary = mass_summary(score.output_dir)
    save_summary(summary, config.folder("report"), title="SePO oracle: reward concentration")
    print(f"[sepo] reward mass: {describe(summary)}")
    report["mass"] = summary
    policy = stages["policy"]
    if training_done(policy):
        print(f"[sepo] policy: done already ({policy.output_dir}/final), skipped")
    else:
        print(f"[sepo] policy: SePO on {policy.model}, k_chosen={policy.k_chosen}, k_rejected={policy.k_rejected}")
        train_run(policy)
    report["stages"]["policy"] = str(Path(policy.output_dir) / "final")
    if config.show_pairs:
        page = show_scores(build(ShowConfig, {
            "scores": score.output_dir, "output": str(config.folder("report") / "token-scores.html"),
            "pairs": config.show_pairs, "limit": policy.limit, "eval_fraction": policy.eval_fraction,
            "seed": policy.seed, **{f.name: getattr(policy, f.name) for f in dataclasses.fields(SelectionArgs)}}))
        report["heatmap"] = str(page)
        print(f"[sepo] heatmap: {page}")
    write_json_atomic(config.folder("report") / "pipeline.json", report)
    return report
