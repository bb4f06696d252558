"""One command for one lent GPU: tokensift's engine in bf16, correct and fast, side by side with TRL.

    python benchmarks/gpu_proof.py --prepare     # here, on the CPU: .gpu-bundle/ (tokenizer, pairs, wheels)
    python benchmarks/gpu_proof.py               # on the GPU machine (carry .gpu-bundle): under 8 minutes
    python benchmarks/gpu_proof.py --dry-run     # every section at toy size on the CPU (CI runs this)

The GPU machines reach no network or hub. `--prepare` writes `.gpu-bundle/` (git-ignored; pass it in `carry`):
the default model's tokenizer, the first HH-RLHF and AlpacaEval dev pairs (their real length distributions are
the point) and the wheels the machine lacks (trl, datasets, dill, multiprocess, pyarrow). Models are random
weights with real configurations: the speed of a step does not depend on the values.

Sections, each in its own process (so each peak memory is its own); results go to `--out` (JSON) as each ends:
  a. correctness: padding-free pairs on flex attention (all pairs of a batch in one row, block mask) against the
     model's own forward, bf16, a Qwen2-shaped and a Mistral-shaped model (sliding window shorter than the rows);
  b. DPO tokens/s and peak memory (whole and above the training state), tokensift against TRL DPOTrainer as shipped
     and with its best documented options (precomputed reference, no checkpointing): the CPU tables' shapes
     (shapes.py: Qwen2.5-0.5B, vocabulary 151,936, at 1024 and 2048 tokens on HH and AlpacaEval pair lengths;
     Gemma-3-1B, vocabulary 262,144), then the Llama-3-8B shape with LoRA;
  c. the SePO policy step against DPO and SimPO steps on the Qwen2.5-0.5B shape;
  d. MFU of the SePO step with rows of 2048+ tokens (Qwen2.5-1.5B shape): 6 x parameters x tokens/s / peak bf16;
  e. peak memory against length: one pair whose sequences are cut at exactly 1024 ... 8192 tokens
     (memory_vs_tokens.py's pairs), tokensift and TRL.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED, PeakMemory, device, emit, machine, median, out_of_memory, run_child, sync  # noqa: E402
from shapes import model_folder, parameter_count, training_state_mb  # noqa: E402

sys.path.insert(0, str(ROOT / "src"))  # the GPU machine runs the carried checkout without installing it

BUNDLE = ROOT / ".gpu-bundle"
WHEELS = ("trl==1.16.0", "datasets==5.2.0", "dill<0.4.2", "multiprocess<0.70.20", "pyarrow>=24")
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense, SXM
BUDGET_S = 7.5 * 60


# ----------------------------------------------------------------------------------------------------- set-up
def prepare(bundle: Path, pairs: int) -> None:
    """The bundle the GPU machine needs (it reaches no network)."""
    from tokensift.models import load_tokenizer

    shutil.rmtree(bundle, ignore_errors=True)
    (bundle / "data").mkdir(parents=True)
    load_tokenizer("smollm2-135m-instruct").save_pretrained(bundle / "tokenizer")
    for name in ("hh-rlhf-harmless-test.dev.jsonl.gz", "alpacaeval-gpt4turbo-pairs.dev.jsonl.gz"):
        with gzip.open(SHARED / name, "rt") as src, gzip.open(bundle / "data" / name, "wt") as dst:
            for i, line in enumerate(src):
                if i >= pairs:
                    break
                dst.write(line)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--platform", "manylinux_2_28_x86_64", "--platform",
                    "manylinux2014_x86_64", "-d", str(bundle / "wheels"), *WHEELS], check=True)
    size = sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file()) / 2**20
    print(f"wrote {bundle} ({size:.1f} MiB): carry it with the run, e.g. carry=['.gpu-bundle']")


def install_wheels(bundle: Path) -> None:
    """Install what the machine lacks from the bundle (nothing is fetched)."""
    try:
        import datasets  # noqa: F401
        import trl  # noqa: F401
        return
    except ImportError:
        pass
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links",
                    str(bundle / "wheels"), "trl", "datasets"], check=True)


def random_model(args, shape: str) -> tuple[Path, int]:
    """(folder, parameter count) of the random-weight bf16 model of a real configuration (shapes.py), made once."""
    folder = model_folder(shape, root=Path(args.work), tokenizer_dir=args.bundle / "tokenizer", dtype="bfloat16",
                          device=str(device()))
    return folder, parameter_count(shape)


def bundle_pairs(bundle: Path, name: str, n: int, tokenizer, max_length: int):
    """(examples, tokenized pairs): the first n pairs of a bundled file, or for "alpaca-long" n pairs whose every
    sequence is cut at exactly max_length tokens (memory_vs_tokens.long_pairs, the CPU table's pairs)."""
    from tokensift.data.load import load_preferences
    from tokensift.data.tokenize import TokenizeSettings, tokenize_examples

    file = {"hh": "hh-rlhf-harmless-test.dev.jsonl.gz", "alpaca": "alpacaeval-gpt4turbo-pairs.dev.jsonl.gz",
            "alpaca-long": "alpacaeval-gpt4turbo-pairs.dev.jsonl.gz"}[name]
    if name == "alpaca-long":
        from memory_vs_tokens import long_pairs

        examples = long_pairs(tokenizer, n, max_length, bundle / "data" / file)
    else:
        examples = load_preferences(str(bundle / "data" / file), limit=n).examples
    pairs, _ = tokenize_examples(tokenizer, examples, TokenizeSettings(max_length, max_length // 2))
    return examples, pairs


# ---------------------------------------------------------------------------------------------------- sections
def correctness(args) -> dict:
    """a. flex attention, all pairs in one row, against the model's own forward over each sequence (bf16)."""
    import torch

    from tokensift.data.collate import collate_pairs
    from tokensift.logprobs import packed_row_tokens, token_logps
    from tokensift.models import load_model, load_tokenizer

    out = {}
    for shape in (("toy", "toy-window") if args.dry_run else ("qwen2-4layers", "mistral-4layers-window")):
        folder, _ = random_model(args, shape)
        tokenizer = load_tokenizer(str(folder))
        _, pairs = bundle_pairs(args.bundle, "alpaca", 8, tokenizer, args.max_length)
        model = load_model(str(folder), dtype="bfloat16", device=device(), attn_implementation="flex_attention")
        packed = collate_pairs(pairs, tokenizer.pad_token_id, pack=True,
                               row_tokens=packed_row_tokens("auto", model)).to(device())
        with torch.no_grad():
            got = token_logps(model, packed.input_ids, packed.prompt_lens, packed.response_mask,
                              packed=packed.packed).logps.float()
            worst, n = 0.0, len(pairs)
            for i, pair in enumerate(pairs):
                for row, ids in ((i, pair.chosen_ids), (n + i, pair.rejected_ids)):
                    seq = torch.tensor([list(pair.prompt_ids) + list(ids)], device=device())
                    logits = model(input_ids=seq).logits[0].float()
                    p = len(pair.prompt_ids)
                    own = torch.log_softmax(logits[p - 1: p - 1 + len(ids)], -1).gather(
                        1, torch.tensor(list(ids), device=device())[:, None]).squeeze(1)
                    worst = max(worst, float((got[row, : len(ids)] - own).abs().max()))
        out[shape] = {"rows": int(packed.packed.input_ids.shape[0]), "row_tokens": int(packed.packed.input_ids.shape[1]),
                      "max_abs_logp_diff_per_token": worst, "tolerance": 0.02, "ok": worst <= 0.02,
                      "sliding_window": getattr(model.config, "sliding_window", None)}
        del model
    return out


def tokensift_run(args, shape: str, data: str, loss: str = "dpo", checkpointing: bool = False,
                  lora: bool = False, max_length: int | None = None, select_k: float | None = None,
                  batch_size: int | None = None) -> dict:
    """Median step time, tokens/s and peak memory of tokensift training steps on a random model."""
    import numpy as np
    import torch

    from tokensift.models import load_tokenizer
    from tokensift.selection import Selection, selection_masks
    from tokensift.train.config import TrainConfig
    from tokensift.train.data import PairSet, TrainData
    from tokensift.train.loop import Trainer

    max_length, batch_size = max_length or args.max_length, batch_size or args.batch_size
    folder, params = random_model(args, shape)
    tokenizer = load_tokenizer(str(folder))
    _, pairs = bundle_pairs(args.bundle, data, batch_size * (args.steps + 1), tokenizer, max_length)
    select = None
    if loss == "sepo":
        rng = np.random.RandomState(0)
        scores = {p.row: (rng.randn(len(p.chosen_ids)), rng.randn(len(p.rejected_ids))) for p in pairs}
        selection = Selection("per_response", select_k, select_k)

        def select(batch):
            rows = batch.rows.tolist()
            return selection_masks(selection, [scores[r][0] for r in rows], [scores[r][1] for r in rows],
                                   batch.response_mask.shape[1])
    config = TrainConfig(data="-", model=str(folder), output_dir=str(Path(args.work) / f"run-{shape}-{loss}"),
                         loss=loss, scores="-" if loss == "sepo" else None, batch_size=batch_size,
                         max_steps=args.steps + 1, dtype="bfloat16", attn_implementation=args.attention,
                         learning_rate=1e-6, progress=False, save_every=0, max_length=max_length,
                         max_prompt_length=max_length // 2, ref_cache_dir=str(Path(args.work) / "refcache"),
                         gradient_checkpointing=checkpointing, lora=lora)
    t0 = time.perf_counter()
    with PeakMemory() as mem:
        trainer = Trainer(config, data=TrainData(train=PairSet(data, f"{data}-{max_length}", pairs), select=select))
        trainer.schedule.epoch_order = lambda epoch: np.arange(len(pairs))
        setup_s = time.perf_counter() - t0
        trainer.train_step(0)  # warm-up: optimizer state, flex attention's compilation
        times, tokens = [], 0
        for step in range(1, args.steps + 1):
            sync()
            t = time.perf_counter()
            metrics, _ = trainer.train_step(step)
            sync()
            times.append(time.perf_counter() - t)
            tokens += metrics["tokens"]
    del trainer
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    tokens_per_s = tokens / sum(times)
    state = 0.0 if lora else training_state_mb(params, "float32")  # fp32 masters, gradients and moments
    return {"step_s": median(times), "tokens_per_s": tokens_per_s, "peak_mb": mem.peak, "setup_s": setup_s,
            "parameters": params, "mfu": mfu(params, tokens_per_s), "state_mb": state,
            "above_state_mb": mem.peak - mem.base - state}


def trl_run(args, shape: str, data: str, best: bool = False, lora: bool = False, max_length: int | None = None,
            batch_size: int | None = None) -> dict:
    """TRL DPOTrainer on the same model, pairs, batch and max length: as shipped, or with its best options."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    max_length, batch_size = max_length or args.max_length, batch_size or args.batch_size
    folder, params = random_model(args, shape)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    examples, _ = bundle_pairs(args.bundle, data, batch_size * (args.steps + 1), tokenizer, max_length)
    rows = {"prompt": [e.prompt for e in examples],
            "chosen": [[{"role": "assistant", "content": e.chosen}] for e in examples],
            "rejected": [[{"role": "assistant", "content": e.rejected}] for e in examples]}
    extra = dict(precompute_ref_log_probs=True, gradient_checkpointing=False) if best else {}
    config = DPOConfig(output_dir=str(Path(args.work) / f"trl-{shape}"), per_device_train_batch_size=batch_size,
                       num_train_epochs=1, learning_rate=1e-6, beta=0.1, max_length=max_length,
                       bf16=torch.cuda.is_available(), report_to=[], logging_steps=1000, save_strategy="no",
                       use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0, seed=0, **extra)

    class StepTimes(TrainerCallback):
        def __init__(self):
            self.times, self.t = [], None

        def on_step_begin(self, *a, **k):
            sync()
            self.t = time.perf_counter()

        def on_step_end(self, *a, **k):
            sync()
            self.times.append(time.perf_counter() - self.t)

    timer = StepTimes()
    peft_config = None
    if lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                                 task_type="CAUSAL_LM")
    t0 = time.perf_counter()
    with PeakMemory() as mem:
        # fp32 master weights under bf16 autocast (bf16=True), as tokensift trains with dtype=bfloat16: the same
        # training state (16 bytes per trained parameter) for both; LoRA keeps its frozen base in bf16, as ours
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16 if lora else torch.float32)
        model = model.to(device())
        trainer = DPOTrainer(model=model, args=config, train_dataset=Dataset.from_dict(rows),
                             processing_class=tokenizer, callbacks=[timer], peft_config=peft_config)
        setup_s = time.perf_counter() - t0
        trainer.train()
    state = 0.0 if lora else training_state_mb(params, "float32")  # fp32 masters, gradients and moments
    return {"step_s": median(timer.times[1:] or timer.times), "steps": len(timer.times), "setup_s": setup_s,
            "peak_mb": mem.peak, "parameters": params, "state_mb": state, "above_state_mb": mem.peak - mem.base - state}


def mfu(params: int, tokens_per_s: float) -> float | None:
    """6 x parameters x tokens/s over the GPU's dense bf16 peak (forward and backward matmuls of every token)."""
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)
    return 6 * params * tokens_per_s / peak if peak else None


def speed(args) -> dict:
    """b, c, d: what one child measures (`--job`)."""
    job = json.loads(args.job)
    kind = job.pop("kind")
    return trl_run(args, **job) if kind == "trl" else tokensift_run(args, **job)


MAIN, VOCAB262K = "qwen2.5-0.5b", "gemma-3-1b"  # the CPU tables' shapes (BENCHMARKS.md, issue 24)


def jobs(dry: bool) -> list[tuple[str, dict]]:
    """Result key -> job, most valuable first (a job that would start past the time budget is skipped).

    The keys name shape/data/max_length/contender; batch sizes are the CPU tables' (4 pairs for the Qwen shape,
    2 for the Gemma one, 1 long pair for the memory sweep), so a lent GPU measures exactly what the CPU tables show.
    """
    if dry:  # one job of each kind, at toy size: the code paths, quickly
        return [("b/toy/alpaca/128/tokensift", dict(kind="tokensift", shape="toy", data="alpaca")),
                ("b/toy/alpaca/128/trl_shipped", dict(kind="trl", shape="toy", data="alpaca")),
                ("c/toy/alpaca/128/sepo", dict(kind="tokensift", shape="toy", data="alpaca", loss="sepo",
                                               select_k=0.3)),
                ("e/toy/alpaca-long/128/tokensift", dict(kind="tokensift", shape="toy", data="alpaca-long",
                                                         batch_size=1)),
                ("b/toy/alpaca/128/tokensift_lora", dict(kind="tokensift", shape="toy", data="alpaca", lora=True))]
    out = []
    for data in ("hh", "alpaca"):
        for kind, name in (("tokensift", "tokensift"), ("trl", "trl_shipped")):
            out.append((f"b/{MAIN}/{data}/1024/{name}", dict(kind=kind, shape=MAIN, data=data, max_length=1024,
                                                              batch_size=4)))
    out += [(f"c/{MAIN}/alpaca/1024/{loss}", dict(kind="tokensift", shape=MAIN, data="alpaca", loss=loss,
                                                  max_length=1024, batch_size=4,
                                                  select_k=0.3 if loss == "sepo" else None))
            for loss in ("sepo", "simpo")]
    for length in (1024, 2048, 4096, 8192):
        for kind, name in (("tokensift", "tokensift"), ("trl", "trl_shipped")):
            out.append((f"e/{MAIN}/alpaca-long/{length}/{name}", dict(kind=kind, shape=MAIN, data="alpaca-long",
                                                                      max_length=length, batch_size=1)))
    for kind, name in (("tokensift", "tokensift"), ("trl", "trl_shipped")):
        out.append((f"b/{VOCAB262K}/alpaca/1024/{name}", dict(kind=kind, shape=VOCAB262K, data="alpaca",
                                                               max_length=1024, batch_size=2)))
    out += [(f"b/{MAIN}/alpaca/2048/tokensift", dict(kind="tokensift", shape=MAIN, data="alpaca", max_length=2048,
                                                     batch_size=4)),
            (f"b/{MAIN}/alpaca/2048/trl_shipped", dict(kind="trl", shape=MAIN, data="alpaca", max_length=2048,
                                                       batch_size=4)),
            (f"b/{MAIN}/hh/1024/trl_best", dict(kind="trl", shape=MAIN, data="hh", best=True, max_length=1024,
                                                batch_size=4)),
            ("d/qwen2.5-1.5b/alpaca/2048/sepo", dict(kind="tokensift", shape="qwen2.5-1.5b", data="alpaca",
                                                     loss="sepo", select_k=0.3, max_length=2048)),
            ("b/llama-3-8b/alpaca/1024/tokensift_lora", dict(kind="tokensift", shape="llama-3-8b", data="alpaca",
                                                             lora=True, max_length=1024)),
            ("b/llama-3-8b/alpaca/1024/trl_shipped_lora", dict(kind="trl", shape="llama-3-8b", data="alpaca",
                                                               lora=True, max_length=1024))]
    return out


def summary(results: dict) -> list[str]:
    """The ratios the proof is about (issue 24's targets), from whatever finished."""
    lines = []
    for key, value in results.items():
        if not key.startswith(("b/", "e/")) or not key.endswith("/tokensift") or "step_s" not in value:
            continue
        base = key.rsplit("/", 1)[0]
        trl = results.get(f"{base}/trl_shipped", {})
        if "step_s" in trl:
            lines.append(f"{base}: tokensift DPO {trl['step_s'] / value['step_s']:.2f}x TRL's speed as shipped "
                         f"(target >= 3), peak memory {value['peak_mb'] / trl['peak_mb']:.2f}x, above the training "
                         f"state {value['above_state_mb'] / trl['above_state_mb']:.2f}x (target <= 0.35)")
        elif "error" in trl:
            lines.append(f"{base}: TRL {trl['error'][:120]}; tokensift peak {value['peak_mb']:.0f} MB")
    sepo = results.get(f"c/{MAIN}/alpaca/1024/sepo", {})
    simpo = results.get(f"c/{MAIN}/alpaca/1024/simpo", {})
    dpo = results.get(f"b/{MAIN}/alpaca/1024/tokensift", {})
    if "step_s" in sepo and "step_s" in dpo:
        lines.append(f"SePO step {sepo['step_s'] / dpo['step_s']:.2f}x the DPO step (target <= 0.7)")
    if "step_s" in sepo and "step_s" in simpo:
        lines.append(f"SePO step {sepo['step_s'] / simpo['step_s']:.2f}x the SimPO step (target <= 0.8)")
    sweep = {int(k.split("/")[3]): v for k, v in results.items()
             if k.startswith("e/") and k.endswith("/tokensift") and "above_state_mb" in v}
    if 1024 in sweep and max(sweep) > 1024:
        top = max(sweep)
        lines.append(f"tokensift memory above the training state 1024 -> {top} tokens: "
                     f"{sweep[top]['above_state_mb'] / sweep[1024]['above_state_mb']:.2f}x for {top / 1024:.0f}x the "
                     f"tokens (target: no faster than the tokens)")
    long = results.get("d/qwen2.5-1.5b/alpaca/2048/sepo", {})
    if long.get("mfu") is not None:
        lines.append(f"SePO MFU at 2048 tokens, Qwen2.5-1.5B shape {long['mfu']:.1%} (target >= 40%)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepare", action="store_true", help="Write the bundle for the GPU machine, then stop.")
    parser.add_argument("--dry-run", action="store_true", help="Every section at toy size on the CPU.")
    parser.add_argument("--bundle", type=Path, default=BUNDLE)
    parser.add_argument("--pairs", type=int, default=200, help="Pairs of each file in the bundle.")
    parser.add_argument("--out", default=os.environ.get("OUT", "gpu-proof"), help="Folder of gpu-proof.json.")
    parser.add_argument("--work", default="/tmp/gpu-proof-work", help="Scratch folder (models, runs).")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--attention", default=None, help="attn_implementation (default: flex_attention on CUDA)")
    parser.add_argument("--only", default="", help="Comma list of result keys (prefixes) to run.")
    parser.add_argument("--section", help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare:
        return prepare(args.bundle, args.pairs)
    if args.dry_run:
        args.batch_size, args.max_length, args.steps = 2, 128, 2
    if args.attention is None:
        args.attention = "flex_attention" if device().type == "cuda" else "sdpa"
    if args.child:
        emit(correctness(args) if args.section == "a" else speed(args))
        return
    if not args.bundle.exists():
        if args.dry_run:
            prepare_light(args.bundle)
        else:
            sys.exit(f"{args.bundle} is missing: run `python benchmarks/gpu_proof.py --prepare` first and carry it")
    if not args.dry_run:
        install_wheels(args.bundle)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common = ["--bundle", str(args.bundle), "--work", args.work, "--batch-size", str(args.batch_size),
              "--max-length", str(args.max_length), "--steps", str(args.steps), "--attention", args.attention]
    common += ["--dry-run"] if args.dry_run else []
    results = {"machine": machine(), "attention": args.attention, "batch_size": args.batch_size,
               "max_length": args.max_length, "steps": args.steps}
    started = time.perf_counter()
    todo = [("a/correctness", ["--section", "a"])] + [(k, ["--job", json.dumps(v)]) for k, v in jobs(args.dry_run)]
    for key, extra in todo:
        if args.only and not any(key.startswith(p) for p in args.only.split(",")):
            continue
        if time.perf_counter() - started > BUDGET_S:
            results[key] = {"skipped": "time budget spent"}
            continue
        try:
            results[key] = run_child(Path(__file__), [*common, *extra], timeout=int(BUDGET_S))
        except Exception as exc:  # one section failing must not lose the others' numbers
            results[key] = {"error": out_of_memory(str(exc)), "detail": str(exc)[-2000:]}
        results["summary"] = summary(results)
        (out / "gpu-proof.json").write_text(json.dumps(results, indent=2))
        print(f"[gpu-proof] {key}: {json.dumps(results[key])[:300]}", flush=True)
    print("\n".join(results["summary"]))
    print(f"[gpu-proof] {time.perf_counter() - started:.0f} s; {out / 'gpu-proof.json'}")


def prepare_light(bundle: Path) -> None:
    """The dry run's bundle: the tokenizer and pairs, no wheels (the test environment has trl and datasets)."""
    from tokensift.models import load_tokenizer

    (bundle / "data").mkdir(parents=True, exist_ok=True)
    load_tokenizer("smollm2-135m-instruct").save_pretrained(bundle / "tokenizer")
    for name in ("hh-rlhf-harmless-test.dev.jsonl.gz", "alpacaeval-gpt4turbo-pairs.dev.jsonl.gz"):
        source = SHARED / name
        with gzip.open(source, "rt") as src, gzip.open(bundle / "data" / name, "wt") as dst:
            for i, line in enumerate(src):
                if i >= 40:
                    break
                dst.write(line)


if __name__ == "__main__":
    main()
