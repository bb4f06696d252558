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
  b. DPO tokens/s and peak memory, tokensift against TRL DPOTrainer as shipped and with its best documented options
     (precomputed reference, no checkpointing), Qwen2.5-1.5B shape (151,936 vocabulary) on HH and AlpacaEval pair
     lengths, and the Llama-3-8B shape with LoRA;
  c. the SePO policy step against DPO and SimPO steps on the 151k-vocabulary shape;
  d. MFU of the SePO step with rows of 2048+ tokens: 6 x parameters x tokens/s / peak bf16 FLOP/s.
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
from common import ROOT, SHARED, PeakMemory, device, emit, machine, median, run_child, sync  # noqa: E402

sys.path.insert(0, str(ROOT / "src"))  # the GPU machine runs the carried checkout without installing it

BUNDLE = ROOT / ".gpu-bundle"
WHEELS = ("trl==1.16.0", "datasets==5.2.0", "dill<0.4.2", "multiprocess<0.70.20", "pyarrow>=24")
SHAPES = {  # real configurations (random weights)
    "qwen2.5-1.5b": dict(model_type="qwen2", vocab_size=151936, hidden_size=1536, intermediate_size=8960,
                         num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
                         tie_word_embeddings=True, rope_theta=1e6, max_position_embeddings=32768),
    "llama-3-8b": dict(model_type="llama", vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                       num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                       tie_word_embeddings=False, rope_theta=500000.0, max_position_embeddings=8192),
    "qwen2-4layers": dict(model_type="qwen2", vocab_size=151936, hidden_size=1536, intermediate_size=8960,
                          num_hidden_layers=4, num_attention_heads=12, num_key_value_heads=2,
                          tie_word_embeddings=True, max_position_embeddings=32768),
    "mistral-4layers-window": dict(model_type="mistral", vocab_size=32768, hidden_size=4096,
                                   intermediate_size=14336, num_hidden_layers=4, num_attention_heads=32,
                                   num_key_value_heads=8, sliding_window=256, max_position_embeddings=32768),
    "toy": dict(model_type="qwen2", vocab_size=151936, hidden_size=64, intermediate_size=128,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                max_position_embeddings=4096),
    "toy-window": dict(model_type="mistral", vocab_size=49152, hidden_size=64, intermediate_size=128,
                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, sliding_window=16,
                       max_position_embeddings=4096),
}
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


def random_model(folder: Path, shape: str, tokenizer_dir: Path, dtype: str) -> int:
    """Save a random-weight model of a real configuration (once); returns its parameter count."""
    import torch
    import transformers

    spec = dict(SHAPES[shape])
    config = transformers.AutoConfig.for_model(spec.pop("model_type"), **spec)
    if not (folder / "config.json").exists():
        torch.manual_seed(0)
        with torch.device(device()):
            model = transformers.AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
        model.save_pretrained(folder, safe_serialization=True)
        transformers.AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(folder)
        del model
    with torch.device("meta"):
        return sum(p.numel() for p in transformers.AutoModelForCausalLM.from_config(config).parameters())


def bundle_pairs(bundle: Path, name: str, n: int, tokenizer, max_length: int):
    from tokensift.data.load import load_preferences
    from tokensift.data.tokenize import TokenizeSettings, tokenize_examples

    file = {"hh": "hh-rlhf-harmless-test.dev.jsonl.gz", "alpaca": "alpacaeval-gpt4turbo-pairs.dev.jsonl.gz"}[name]
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
        folder = Path(args.work) / shape
        random_model(folder, shape, args.bundle / "tokenizer", "bfloat16")
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
                  lora: bool = False, max_length: int | None = None, select_k: float | None = None) -> dict:
    """Median step time, tokens/s and peak memory of tokensift training steps on a random model."""
    import numpy as np
    import torch

    from tokensift.models import load_tokenizer
    from tokensift.selection import Selection, selection_masks
    from tokensift.train.config import TrainConfig
    from tokensift.train.data import PairSet, TrainData
    from tokensift.train.loop import Trainer

    max_length = max_length or args.max_length
    folder = Path(args.work) / shape
    params = random_model(folder, shape, args.bundle / "tokenizer", "bfloat16")
    tokenizer = load_tokenizer(str(folder))
    _, pairs = bundle_pairs(args.bundle, data, args.batch_size * (args.steps + 1), tokenizer, max_length)
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
                         loss=loss, scores="-" if loss == "sepo" else None, batch_size=args.batch_size,
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
    return {"step_s": median(times), "tokens_per_s": tokens_per_s, "peak_mb": mem.peak, "setup_s": setup_s,
            "parameters": params, "mfu": mfu(params, tokens_per_s)}


def trl_run(args, shape: str, data: str, best: bool = False, lora: bool = False) -> dict:
    """TRL DPOTrainer on the same model, pairs, batch and max length: as shipped, or with its best options."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    folder = Path(args.work) / shape
    params = random_model(folder, shape, args.bundle / "tokenizer", "bfloat16")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    examples, _ = bundle_pairs(args.bundle, data, args.batch_size * (args.steps + 1), tokenizer, args.max_length)
    rows = {"prompt": [e.prompt for e in examples],
            "chosen": [[{"role": "assistant", "content": e.chosen}] for e in examples],
            "rejected": [[{"role": "assistant", "content": e.rejected}] for e in examples]}
    extra = dict(precompute_ref_log_probs=True, gradient_checkpointing=False) if best else {}
    config = DPOConfig(output_dir=str(Path(args.work) / f"trl-{shape}"), per_device_train_batch_size=args.batch_size,
                       num_train_epochs=1, learning_rate=1e-6, beta=0.1, max_length=args.max_length,
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
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).to(device())
        trainer = DPOTrainer(model=model, args=config, train_dataset=Dataset.from_dict(rows),
                             processing_class=tokenizer, callbacks=[timer], peft_config=peft_config)
        setup_s = time.perf_counter() - t0
        trainer.train()
    return {"step_s": median(timer.times[1:] or timer.times), "steps": len(timer.times), "setup_s": setup_s,
            "peak_mb": mem.peak, "parameters": params}


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


def jobs(dry: bool) -> list[tuple[str, dict]]:
    if dry:  # one job of each kind, at toy size: the code paths, quickly
        return [("b/toy/alpaca/tokensift", dict(kind="tokensift", shape="toy", data="alpaca")),
                ("b/toy/alpaca/trl_shipped", dict(kind="trl", shape="toy", data="alpaca")),
                ("c/toy/alpaca/sepo", dict(kind="tokensift", shape="toy", data="alpaca", loss="sepo", select_k=0.3)),
                ("b/toy/alpaca/tokensift_lora", dict(kind="tokensift", shape="toy", data="alpaca", lora=True))]
    big, eight = "qwen2.5-1.5b", "llama-3-8b"
    out = []
    for data in ("hh", "alpaca"):
        out += [(f"b/{big}/{data}/tokensift", dict(kind="tokensift", shape=big, data=data)),
                (f"b/{big}/{data}/trl_shipped", dict(kind="trl", shape=big, data=data))]
    out += [(f"b/{big}/hh/trl_best", dict(kind="trl", shape=big, data="hh", best=True)),
            (f"b/{big}/hh/tokensift_ckpt", dict(kind="tokensift", shape=big, data="hh", checkpointing=True)),
            (f"c/{big}/alpaca/sepo", dict(kind="tokensift", shape=big, data="alpaca", loss="sepo", select_k=0.3)),
            (f"c/{big}/alpaca/simpo", dict(kind="tokensift", shape=big, data="alpaca", loss="simpo")),
            (f"d/{big}/alpaca/sepo_2048", dict(kind="tokensift", shape=big, data="alpaca", loss="sepo",
                                               select_k=0.3, max_length=2048)),
            (f"b/{eight}/alpaca/tokensift_lora", dict(kind="tokensift", shape=eight, data="alpaca", lora=True)),
            (f"b/{eight}/alpaca/trl_shipped_lora", dict(kind="trl", shape=eight, data="alpaca", lora=True))]
    return out


def summary(results: dict) -> list[str]:
    """The ratios the proof is about, from whatever finished."""
    lines = []
    for key, value in results.items():
        if not key.endswith("/tokensift") or "error" in value:
            continue
        base = key.rsplit("/", 1)[0]
        trl = results.get(f"{base}/trl_shipped", {})
        if "step_s" in trl:
            lines.append(f"{base}: tokensift DPO {trl['step_s'] / value['step_s']:.2f}x TRL's speed as shipped "
                         f"(target >= 2), peak memory {value['peak_mb'] / trl['peak_mb']:.2f}x (target <= 0.5)")
    sepo = {k.split("/")[-1]: v for k, v in results.items() if k.startswith("c/") and "step_s" in v}
    dpo = next((v for k, v in results.items() if k.endswith("alpaca/tokensift") and "step_s" in v), None)
    if "sepo" in sepo and dpo:
        lines.append(f"SePO step {sepo['sepo']['step_s'] / dpo['step_s']:.2f}x the DPO step (target <= 0.7)")
    if "sepo" in sepo and "simpo" in sepo:
        lines.append(f"SePO step {sepo['sepo']['step_s'] / sepo['simpo']['step_s']:.2f}x the SimPO step")
    long = next((v for k, v in results.items() if k.startswith("d/") and "mfu" in v), None)
    if long and long["mfu"] is not None:
        lines.append(f"SePO MFU at 2048 tokens {long['mfu']:.1%} (target >= 40%)")
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
            results[key] = {"error": str(exc)[-2000:]}
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
