"""`tokensift demo` (`make demo`): SePO end to end on the embedded default model, in minutes on 2 CPU cores.

1. Prompts the project writes itself (short everyday topics) are split into train and test.
2. The default model samples several answers per train prompt; a real external scorer, VADER sentiment
   (PyPI vaderSentiment), ranks them; the most and least positive answers form a preference pair.
3. The SePO pipeline runs on those pairs: oracle DPO on half of them, token scores, SePO policy on 30% key
   tokens of every response.
4. Fresh answers to the held-out test prompts are scored by VADER before and after; the token heatmap page
   shows what the oracle found (sentiment words should light up).
Every step is resumable: rerunning continues where a killed run stopped.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

from tokensift.config import build, option
from tokensift.errors import UserError
from tokensift.fsutil import write_json_atomic
from tokensift.models import DEFAULT_MODEL

TEMPLATES = (
    "Describe your last visit to {} in one sentence.",
    "What do you think about {}? Answer in one sentence.",
    "Write a one-sentence review of {}.",
    "Tell a friend about {} in one sentence.",
)
TOPICS = (
    "the beach", "a new restaurant in town", "the library", "a rainy Monday", "your favourite park",
    "a train journey", "a concert", "the dentist", "a birthday party", "a museum", "a long flight", "the gym",
    "a bakery", "a job interview", "a mountain hike", "a traffic jam", "a summer festival",
    "a hospital waiting room", "a cooking class", "an old bookshop",
)


def demo_prompts(seed: int = 0) -> tuple[list[str], list[str]]:
    prompts = [t.format(topic) for t in TEMPLATES for topic in TOPICS]
    random.Random(seed).shuffle(prompts)
    return prompts[16:], prompts[:16]


@dataclass
class DemoConfig:
    CLI_EXAMPLE = "train_prompts=16 samples=2"

    output_dir: str = option("demo-run", "Where the demo writes its data, stages and report.")
    model: str = option(DEFAULT_MODEL, "The model to sample from and align.")
    samples: int = option(4, "Answers sampled per training prompt; the best and worst by VADER form a pair.")
    max_new_tokens: int = option(32, "Length of sampled answers (tokens).")
    train_prompts: int = option(64, "How many of the 64 training prompts to use (fewer is faster).")
    eval_samples: int = option(4, "Answers per test prompt when measuring before/after.")
    learning_rate: float = option(1e-5, "Learning rate of the oracle and the policy.")
    seed: int = option(0, "Seed of the prompt split and the sampling.")
    overwrite: bool = option(False, "Replace a demo in output_dir made with other settings (otherwise refused, naming them; one with the same settings continues where it stopped).")


def vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    return lambda text: analyzer.polarity_scores(text)["compound"]


def build_pairs(config: DemoConfig, model, tokenizer, path: Path) -> dict:
    from tokensift.generate import SamplingSettings, generate_responses

    train, _ = demo_prompts(config.seed)
    train = train[: config.train_prompts]
    score = vader()
    messages = [[{"role": "user", "content": p}] for p in train]
    answers = generate_responses(model, tokenizer, messages, config.samples,
                                 SamplingSettings(max_new_tokens=config.max_new_tokens, seed=config.seed),
                                 desc="sampling answers")
    rows, ties = [], 0
    for prompt, options in zip(train, answers):
        ranked = sorted({a for a in options if a}, key=score)
        if len(ranked) < 2 or score(ranked[-1]) - score(ranked[0]) < 0.05:
            ties += 1
            continue
        rows.append({"prompt": prompt, "chosen": ranked[-1], "rejected": ranked[0],
                     "chosen_vader": score(ranked[-1]), "rejected_vader": score(ranked[0])})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"prompts": len(train), "pairs": len(rows), "dropped_ties": ties}


def mean_vader(model, tokenizer, prompts: list[str], config: DemoConfig, desc: str) -> float:
    from tokensift.generate import SamplingSettings, generate_responses

    score = vader()
    answers = generate_responses(model, tokenizer, [[{"role": "user", "content": p}] for p in prompts],
                                 config.eval_samples,
                                 SamplingSettings(max_new_tokens=config.max_new_tokens, seed=config.seed + 1),
                                 desc=desc)
    values = [score(a) for options in answers for a in options]
    return sum(values) / len(values)


RECORD = "demo-config.json"
NOT_RECORDED = ("output_dir", "overwrite")  # where the demo goes and whether it may replace one: not what it does


def demo_folder(config: DemoConfig, clear: bool = True) -> str:
    """'new', 'continues' or 'replaced' for the demo's output_dir; a demo there with other settings is refused,
    naming them, unless overwrite=true (which removes what a demo writes: data/, sepo/, its report and record)."""
    from tokensift.fsutil import remove_dir
    from tokensift.train.run_folder import changed_settings

    out = Path(config.output_dir)
    recorded = json.loads((out / RECORD).read_text()) if (out / RECORD).is_file() else None
    if recorded is None:
        return "continues" if (out / "data").exists() else "new"
    changed = changed_settings(recorded, config, ignore=NOT_RECORDED)
    if not changed:
        return "continues"
    if not config.overwrite:
        raise UserError(f"{out} holds a demo made with other settings ({'; '.join(changed)}); pass overwrite=true "
                        "to replace it, or choose another output_dir")
    if clear:
        for name in ("data", "sepo"):
            remove_dir(out / name)
        for name in (RECORD, "demo-report.json"):
            (out / name).unlink(missing_ok=True)
    return "replaced"


def plan_demo(config: DemoConfig):
    """`tokensift demo --check`: the folder, the model and the scorer, and the steps the demo takes."""
    from tokensift.fsutil import check_writable
    from tokensift.preflight import Plan, check_tokenizer, locate_model

    plan = Plan("demo")
    check_writable(config.output_dir)
    plan.add("output_dir", f"{config.output_dir}: {demo_folder(config, clear=False)}")
    location = locate_model(config.model)
    check_tokenizer(location)
    plan.add("model", f"{config.model}: {location.description}")
    vader()  # the external scorer is installed
    train, test = demo_prompts(config.seed)
    plan.add("steps", f"sample {config.samples} answers to each of {min(config.train_prompts, len(train))} prompts, "
                      f"rank them with VADER, run the SePO pipeline on the pairs, answer {len(test)} held-out "
                      f"prompts {config.eval_samples} times before and after")
    return plan


def run_demo(config: DemoConfig) -> dict:
    from tokensift.models import load_model, load_tokenizer
    from tokensift.sepo.pipeline import SePOConfig, run_pipeline

    out = Path(config.output_dir)
    started = time.perf_counter()
    demo_folder(config)
    write_json_atomic(out / RECORD, {k: v for k, v in dataclasses.asdict(config).items() if k not in NOT_RECORDED})
    tokenizer = load_tokenizer(config.model)
    base = load_model(config.model)
    pairs_path = out / "data" / "vader-pairs.jsonl"
    if pairs_path.exists():
        print(f"[demo] preference pairs: {pairs_path} (made earlier)")
    else:
        stats = build_pairs(config, base, tokenizer, pairs_path)
        print(f"[demo] preference pairs: {stats['pairs']} from {stats['prompts']} prompts ({config.samples} VADER-ranked "
              f"samples each; {stats['dropped_ties']} prompts without a clear best/worst) -> {pairs_path}")
    fast = {"learning_rate": config.learning_rate, "batch_size": 8, "warmup_ratio": 0.0, "save_every": 4}
    pipeline = build(SePOConfig, {
        "data": str(pairs_path), "output_dir": str(out / "sepo"), "reference_model": config.model,
        "policy_model": config.model, "max_length": 160, "max_prompt_length": 96, "seed": config.seed,
        "oracle": {**fast, "fraction": 0.5, "epochs": 2, "beta": 0.1},
        "score": {"batch_size": 16},
        "policy": {**fast, "epochs": 2, "k_chosen": 0.3, "k_rejected": 0.3},
        "show_pairs": 40,
    })
    report = run_pipeline(pipeline)
    _, test = demo_prompts(config.seed)
    before = mean_vader(base, tokenizer, test, config, "answers before")
    policy = load_model(report["stages"]["policy"])
    after = mean_vader(policy, tokenizer, test, config, "answers after")
    result = {"vader_before": before, "vader_after": after, "test_prompts": len(test),
              "answers_per_prompt": config.eval_samples, "minutes": (time.perf_counter() - started) / 60, **report}
    write_json_atomic(out / "demo-report.json", result)
    print(f"\n[demo] mean VADER sentiment of fresh answers to {len(test)} held-out prompts: "
          f"{before:+.3f} before -> {after:+.3f} after SePO")
    print(f"[demo] open {report.get('heatmap')} to see which tokens the oracle rewards")
    print(f"[demo] report: {out / 'demo-report.json'} ({result['minutes']:.1f} minutes)")
    return result
