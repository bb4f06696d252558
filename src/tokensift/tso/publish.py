"""The final model of a TSO run as something to publish: its model card says TSO, not "the last round's DPO".

The last round's Trainer wrote a card for its own training (loss tso on that round's pairs). At the end of the run
that card is replaced by one for the whole run: the model matrix and prior ladder, the judge and the review
settings, the scaled margin, a table of every round (review classes, outcomes, training, stability) and the
before/after evaluation, with the Hub metadata of the start model. Then, with push_to_hub, the folder is uploaded.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokensift.fsutil import write_text_atomic
from tokensift.train.card import is_hub_id, metadata, model_origin, render, reproduce, table, usage
from tokensift.train.hub import push_final
from tokensift.tso.evaluate import describe
from tokensift.tso.report import rounds_table


def settings_rows(run) -> list[tuple[str, object]]:
    c = run.config
    ladder = ", ".join(f"{name} {rank}" for name, rank in sorted(run.ranks.items(), key=lambda item: -item[1]))
    judge = c.judge.get("type", "") if c.judge else "a judge object (Python API)"
    if c.judge.get("function") or c.judge.get("model"):
        judge += f" ({c.judge.get('function') or c.judge.get('model')})"
    train = {k: v for k, v in c.train.items() if k in ("beta", "clip_chosen", "clip_rejected", "clip_mode",
                                                          "learning_rate", "epochs", "batch_size", "lora")}
    return [("prior ladder (rank, higher is better)", ladder), ("pairing", f"{c.pairing}, min_rank_gap {c.min_rank_gap}"),
            ("judge (AI feedback)", judge),
            ("review", f"flag_threshold {c.flag_threshold}, ambiguous_band {c.ambiguous_band}, "
                       f"audit_fraction {c.audit_fraction}"),
            ("undecided disagreements", c.unresolved), ("consistent_only", c.consistent_only),
            ("human decisions", c.decisions or "none"),
            ("scaled margin", f"{c.scaled_margin} x {c.margin_by}" if c.scaled_margin else "off"),
            ("rounds (prompt chunks)", f"{c.rounds}: {'/'.join(str(len(x)) for x in run.prompts.chunks)} prompts, "
                                       f"{len(run.prompts.eval)} held out"),
            ("each round's training (dual-clip DPO)", json.dumps(train) if train else "defaults")]


def tso_card(run, result: dict, stop_ids: list[int], versions: dict) -> str:
    c = run.config
    origin = model_origin(c.model)
    datasets = [c.prompts] if c.prompts and is_hub_id(c.prompts) else []
    tags = ["tso", "dpo", "preference-optimization"] + (["lora"] if c.train.get("lora") else [])
    reports = result["rounds"]
    intro = (f"Trained from {origin['label']} with TSO (self-training with scaled preference optimization, arXiv "
             f"2409.02118) in tokensift {versions.get('tokensift')}: {len(reports)} rounds of mini-batch iterative "
             "dual-clip DPO, each on pairs from a model matrix and human answers, ordered by a prior ladder and "
             "corrected with AI feedback and human decisions; the reference and the policy's answers are refreshed "
             "every round.")
    sections = [("", intro), ("TSO settings", table(settings_rows(run))), ("Rounds", rounds_table(reports))]
    notes = []
    if result.get("stopped_early"):
        notes.append(f"Stopped early after round {result['stopped_early']['round']}: "
                     f"{result['stopped_early']['reason']}; this is the previous round's model.")
    if result.get("eval"):
        notes.append(f"Held-out evaluation: {describe(result['eval'])}.")
    if notes:
        sections.append(("Evaluation", "\n\n".join(notes)))
    sections += [("Use", usage(stop_ids, bool(c.train.get("lora")))), ("Reproduce", reproduce(c, versions))]
    return render(metadata(origin, tags, datasets), c.hub_model_id or Path(c.output_dir).name or "tso", sections)


def publish_final(run, result: dict) -> None:
    """Rewrite the final model's card for the whole run, then upload it when push_to_hub asks."""
    final = Path(result["final_model"])
    if not final.resolve().is_relative_to(run.out.resolve()):
        print(f"[tso] no round changed the model: the final model is the start model ({final}); no card written"
              + (", nothing uploaded" if run.config.push_to_hub else ""))
        return
    recorded = json.loads((final / "run_card.json").read_text(encoding="utf-8"))
    generation = json.loads((final / "generation_config.json").read_text(encoding="utf-8"))
    stop_ids = generation.get("eos_token_id")
    stop_ids = stop_ids if isinstance(stop_ids, list) else [stop_ids]
    write_text_atomic(final / "README.md", tso_card(run, result, stop_ids, recorded.get("versions", {})))
    if run.config.push_to_hub:
        push_final(final, run.config, f"TSO run, {len(result['rounds'])} rounds")
