"""`tokensift tso run|generate|review --check`: what a TSO run would do, from the checks it makes before it
generates, judges or trains anything; no model is loaded and nothing is written."""

from __future__ import annotations

from pathlib import Path

from tokensift.preflight import Plan, locate_model


def plan_tso(config, action: str) -> Plan:
    from tokensift.train.hub import check_hub
    from tokensift.tso.loop import TSORun
    from tokensift.tso.pairs import read_decisions

    plan = Plan(f"tso {action}")
    run = TSORun(config, check_only=True)  # refuses a folder of other settings, reads and splits the prompts
    if action == "review" and not run.started:
        from tokensift.errors import UserError

        raise UserError(f"{run.out} holds no TSO run yet; start one with `tokensift tso run` first")
    finished = sorted(int(p.parent.name.split("-")[1]) for p in run.out.glob("round-*/round.json"))
    plan.add("output_dir", f"{run.out}: " + ("continues the run started there with these settings"
                                            + (f" (rounds finished: {', '.join(map(str, finished))})" if finished
                                               else "") if run.started else "a new run"))
    plan.add("prompts", run.describe().replace("[tso] ", ""))
    plan.add("model", f"{config.model}: {locate_model(config.model).description}")
    for spec in run.specs:
        where = {"model": lambda: locate_model(spec.source).description, "policy": lambda: "the round's policy",
                 "offline": lambda: f"column {spec.source} of {config.matrix_file}"}[spec.kind]()
        plan.add(f"generator {spec.name}", where)
    if config.judge:
        plan.add("judge", f"{config.judge.get('type')} (settings checked; built before the first generation)")
    if config.decisions:
        decided = read_decisions(config.decisions)
        plan.add("decisions", f"{config.decisions}: {len(decided):,} human decisions")
    if action == "review" and getattr(config, "serve", False):
        from tokensift.tso.review_server import default_decisions_file, is_loopback

        if not is_loopback(config.host) and not config.allow_remote:
            from tokensift.errors import UserError

            raise UserError(f"host={config.host} serves the review page beyond this machine; pass "
                            "allow_remote=true as well if that is meant")
        if config.token_scores:
            from tokensift.scores import scores_meta

            meta = scores_meta(config.token_scores)  # finished, readable: the page matches their rows at start
            plan.add("token scores", f"{config.token_scores}: {meta.get('rows', 0):,} scored rows of "
                     f"{meta['inputs'].get('source')}, oracle {meta.get('oracle_model')}")
        port = config.port or "(a free port)"
        plan.add("review page", f"http://{config.host}:{port}/ (its access token is printed at start); decisions "
                 f"to {default_decisions_file(config)}")
    if action == "run":
        check_hub(config)
        plan.add("rounds", f"{config.rounds} (dual-clip training in round-XX/train, output_dir {Path(config.output_dir)})")
    return plan
