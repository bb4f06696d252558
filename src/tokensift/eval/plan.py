"""`tokensift eval ACTION --check`: what an evaluation would read, run and write, without loading any weights."""

from __future__ import annotations

from tokensift.eval.report import check_results_file
from tokensift.preflight import Plan, check_tokenizer, locate_model


def _models(plan: Plan, config, names: tuple[str, ...]):
    """Locate the policy and every other model an evaluation loads; returns the policy's tokenizer. Models that
    score the policy's token ids must share its tokenizer (the run's own error otherwise)."""
    from tokensift.errors import UserError
    from tokensift.models import same_tokenizer

    location = locate_model(config.model)
    plan.add("model", f"{config.model}: {location.description}")
    tokenizer = check_tokenizer(location, config.trust_remote_code)
    for name in names:
        other = getattr(config, name, None)
        if not other:
            continue
        found = locate_model(other)
        plan.add(name, f"{other}: {found.description}")
        if name == "reference" and not same_tokenizer(tokenizer, check_tokenizer(found, config.trust_remote_code)):
            raise UserError(f"the reference '{other}' uses another tokenizer than the policy '{config.model}'; its "
                            "log-probs of the policy's tokens would be meaningless")
    return tokenizer


def plan_pairs(plan: Plan, config) -> None:
    from tokensift.eval.preference import select_pairs

    tokenizer = _models(plan, config, ("reference",))
    pairs, info = select_pairs(config, tokenizer)
    plan.add("data", f"{info['source']}: {info['pairs_loaded']:,} pairs loaded, {info['pairs_evaluated']:,} evaluated")
    for note in info["notes"]:
        plan.add("", note)
    passes = 2 if config.reference else 1
    plan.add("work", f"{passes} no-grad pass{'es' if passes > 1 else ''} over {len(pairs):,} pairs "
                     f"(batch_size {config.batch_size})")


def plan_generate(plan: Plan, config) -> None:
    from tokensift.eval.prompts import load_prompt_set

    prompts = load_prompt_set(config.prompts, config.prompt_column, config.reference_column, config.columns,
                              config.split, config.skip_invalid, config.limit, config.eval_fraction, config.seed)
    _models(plan, config, ("reference", "opponent"))
    plan.add("prompts", f"{config.prompts}: {len(prompts.prompts):,} prompts" +
             (f", reference answers from column {config.reference_column}" if config.reference_column else ""))
    for note in prompts.notes:
        plan.add("", str(note))
    answers = len(prompts.prompts) * config.samples_per_prompt
    plan.add("work", f"{answers:,} answers sampled ({config.samples_per_prompt} per prompt, up to "
                     f"{config.max_new_tokens} tokens each)" + (", and as many from the opponent" if config.opponent
                                                                 else ""))
    if config.judge:
        plan.add("judge", f"{config.judge.get('type')} (settings checked; loaded when the answers are judged)")


def plan_files(plan: Plan, config, files: list[str]) -> None:
    """winrate / compare: the annotation files, read and parsed as the run reads them (cheap: no model)."""
    from tokensift.eval.leaderboard import read_glm_extras, read_models

    judged, _ = read_models(config, files)
    read_glm_extras(config)  # published difficulties and gamed rows, when given
    plan.add("files", ", ".join(str(f) for f in files))
    for j in judged:
        plan.add("", f"{j.model} against {j.baseline}: {len(j.prompts):,} judged prompts")


def plan_eval(action: str, config, output: str) -> Plan:
    plan = Plan(f"eval {action}")
    plan.add("output", check_results_file(config, output))
    if action == "pairs":
        plan_pairs(plan, config)
    elif action == "generate":
        plan_generate(plan, config)
    elif action == "winrate":
        plan_files(plan, config, config.files)
    else:
        for run in config.runs:
            files = run.rsplit("#", 1)[0] if "#" in run else run
            plan_files(plan, config, [f for f in files.split(",") if f])
    return plan
