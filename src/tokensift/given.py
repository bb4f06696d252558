"""Models handed over as Python objects (the Python API), used instead of names to load.

`tokensift.train_model(model=..., ref_model=..., peft_config=...)` takes a loaded transformers model (or a peft
model) where the command line takes a name or path. The config keeps a readable string in its place (the
object's `name_or_path`, see `object_label`) so run cards stay JSON; the objects travel beside it in a `Given`.

A model object is never re-loaded from disk: it is trained in place (dropout off, moved to the run's device; with
adapters, `final/` holds them merged and so does the object afterwards, see train/outputs.save_final).

Fingerprints. The reference log-prob cache (train/ref_cache.py) is keyed by a fingerprint of the reference
model. For a name or path that is a hash of its files (models.model_fingerprint); an object's weights may differ
from what its `name_or_path` holds on disk, so an object is fingerprinted by its own content instead
(`weights_fingerprint`: its class, config, adapter configs and every tensor's name, dtype, shape and bytes, about
0.3 s for the 135M default model): two different in-memory models never share a cache entry, and the run card
records which weights a run started from.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

from tokensift.errors import UserError

MODEL_TYPES = "a name or path (str), a transformers PreTrainedModel or a peft PeftModel"
TOKENIZER_TYPES = "a name or path (str) or a transformers tokenizer (PreTrainedTokenizerBase)"


def is_peft_model(value) -> bool:
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(value, PeftModel)


def is_model_object(value) -> bool:
    from transformers import PreTrainedModel

    return isinstance(value, PreTrainedModel) or is_peft_model(value)


def model_argument(value, argument: str):
    """A model argument as (name or None, object or None); anything else is a UserError naming the argument."""
    if value is None:
        return None, None
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value), None
    if is_model_object(value):
        return None, value
    raise UserError(f"{argument}= takes {MODEL_TYPES}; got {type(value).__name__}")


def check_tokenizer_argument(value, argument: str = "processing_class") -> None:
    from transformers import PreTrainedTokenizerBase

    if value is not None and not isinstance(value, (str, os.PathLike, PreTrainedTokenizerBase)):
        raise UserError(f"{argument}= takes {TOKENIZER_TYPES}; got {type(value).__name__}")


def tokenizer_argument(value, argument: str = "processing_class"):
    """A tokenizer argument: None, a name or path (loaded here) or a tokenizer object (a pad token added when it
    has none, as models.load_tokenizer does)."""
    from tokensift.models import load_tokenizer

    check_tokenizer_argument(value, argument)
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        return load_tokenizer(os.fspath(value))
    if value.pad_token_id is None:
        value.pad_token = value.eos_token  # padding positions are masked everywhere
    return value


def object_label(model) -> str:
    """What a config records for a model object: its `name_or_path`, or '<in-memory Class>' when it has none."""
    name = getattr(model, "name_or_path", "") or ""
    base = model.get_base_model() if is_peft_model(model) else model
    return str(name) or f"<in-memory {type(base).__name__}>"


def dtype_name(model) -> str:
    """The dtype a model object's floating weights are in, as the configs spell it."""
    import torch

    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    names = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}
    if dtype not in names:
        raise UserError(f"the model object holds {dtype} weights; tokensift runs float32, bfloat16 or float16 "
                        "models: convert it first (e.g. model.float())")
    return names[dtype]


def weights_fingerprint(model) -> str:
    """sha256 of a model object's content: class, config, adapter configs, and every tensor of its state dict
    (name, dtype, shape, bytes; a tied tensor once). Equal for bit-identical models, different otherwise."""
    import torch

    digest = hashlib.sha256(type(model).__name__.encode())
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        values = {k: v for k, v in config.to_dict().items() if k not in ("_name_or_path", "transformers_version")}
        digest.update(repr(sorted(values.items(), key=lambda kv: kv[0])).encode())
    for name, adapter in sorted((getattr(model, "peft_config", None) or {}).items()):
        digest.update(f"adapter {name}: {adapter!r}".encode())
    seen: set = set()
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        key = (tensor.data_ptr(), tensor.dtype, tuple(tensor.shape))
        if tensor.device.type == "meta" or key in seen:
            continue
        seen.add(key)
        data = tensor.detach().reshape(-1).contiguous().cpu()
        digest.update(memoryview(data.view(torch.uint8).numpy()))
    return digest.hexdigest()


def describe(model, fingerprint: str) -> dict:
    """What a run card records of a model object."""
    base = model.get_base_model() if is_peft_model(model) else model
    info = {"name_or_path": getattr(model, "name_or_path", "") or "", "class": type(base).__name__,
            "weights_sha256": fingerprint, "parameters": sum(p.numel() for p in model.parameters())}
    if is_peft_model(model):
        info["adapters"] = {name: type(cfg).__name__ for name, cfg in model.peft_config.items()}
    return info


def lora_settings_of(peft_config) -> dict:
    """TrainConfig's lora_* values that describe a peft LoraConfig (target_modules None: peft's default for the
    model type, recorded as '')."""
    targets = peft_config.target_modules
    if targets is None:
        targets = ""
    elif not isinstance(targets, str):
        targets = ",".join(sorted(targets))
    return {"lora_r": int(peft_config.r), "lora_alpha": int(peft_config.lora_alpha),
            "lora_dropout": float(peft_config.lora_dropout), "lora_targets": targets}


def check_peft_config(value):
    if value is None:
        return None
    try:
        from peft import LoraConfig
    except ImportError:
        raise UserError("peft_config= needs the peft package (pip install peft)") from None
    if not isinstance(value, LoraConfig):
        raise UserError(f"peft_config= takes a peft.LoraConfig; got {type(value).__name__}")
    return value


@dataclass
class Given:
    """Objects handed over in Python, used instead of loading `config.model` / `config.reference`.

    model: the policy (trained in place). ref_model: the reference (the cached no-grad pass of reference-based
    losses, or the frozen reference of a live-reference loss such as tdpo). peft_config: a peft LoraConfig that
    wraps the policy instead of the config's lora_* settings (which then mirror it, for the run card).
    """

    model: Any = None
    ref_model: Any = None
    peft_config: Any = None
    fingerprints: dict = field(default_factory=dict, repr=False)  # role -> weights fingerprint at the start
    reference_is_copy: bool = False  # ref_model is a frozen copy of the policy object's start (tdpo), made here

    @property
    def brings_adapters(self) -> bool:
        """The adapters come with the objects (a peft model, or peft_config): the lora_* settings add none."""
        return self.peft_config is not None or is_peft_model(self.model)

    def check(self, config) -> None:
        """Refuse combinations the config's loss cannot use, before any work. ref_model= the policy object itself
        means the policy's start, the default reference: it is dropped (the cached pass runs the policy)."""
        from tokensift.selectors import SELECTORS

        spec = config.loss_spec
        selector = SELECTORS.get(config.active_selector)
        reads_reference = config.needs_reference or (selector is not None and "reference" in selector.reads)
        if self.ref_model is not None and not reads_reference:
            raise UserError(f"loss={config.loss} uses no reference model: ref_model= is not read")
        if self.ref_model is not None and self.ref_model is self.model and spec.reference == "live":
            raise UserError(f"loss={config.loss} keeps a frozen reference beside the policy: ref_model= must be "
                            "another object than model= (e.g. copy.deepcopy(model)), or leave it unset for a "
                            "frozen copy of the policy's start")
        if self.ref_model is not None and self.ref_model is self.model:
            self.ref_model = None
        if self.model is not None and getattr(config, "qlora", False):
            raise UserError("qlora=true loads the base model in 4-bit itself: pass model= as a name or path")
        if is_peft_model(self.model) and self.peft_config is not None:
            raise UserError("model= is already a peft model (it has adapters): leave peft_config= unset")

    def check_call(self, processing_class):
        """check(config) and check_tokenizer(processing_class), as one function of the config."""
        def check(config) -> None:
            self.check(config)
            self.check_tokenizer(processing_class)
        return check

    def policy(self, config, lora, device, checkpointing: bool = False):
        """The policy object ready to train (dropout off, on `device`, adapters added), or None: load by name.

        Fingerprints the starting weights first (the reference when it is the policy's start, and the run card);
        a live-reference loss without ref_model gets a frozen copy of the start."""
        from tokensift.models import prepare_model

        if self.model is None:
            return None
        self.fingerprint("model")
        if config.loss_spec.reference == "live" and self.ref_model is None:
            self.ref_model = copy.deepcopy(self.model)
            self.fingerprints["reference"] = self.fingerprints["model"]
            self.reference_is_copy = True
        return prepare_model(self.model, gradient_checkpointing=checkpointing, lora=lora,
                             device=device, peft_config=self.peft_config,
                             keep_dropout="lora_dropout" if is_peft_model(self.model) else None)

    def reference(self, device):
        """The reference object on `device`, frozen and in eval mode (None: load it by name)."""
        if self.ref_model is None:
            return None
        return self.ref_model.to(device).requires_grad_(False).eval()

    def fingerprint(self, role: str) -> str:
        """The weights fingerprint of the `role` ("model" or "reference") object, taken once: at the start."""
        if role not in self.fingerprints:
            self.fingerprints[role] = weights_fingerprint(self.model if role == "model" else self.ref_model)
        return self.fingerprints[role]

    def reference_fingerprint(self, config) -> str | None:
        """The reference cache's model key when the reference is an object (None: it is config.reference or
        config.model on disk): the reference object's weights, or the policy object's starting weights."""
        if self.ref_model is not None:
            return self.fingerprint("reference")
        if self.model is not None and config.reference in (None, config.model):
            return self.fingerprint("model")
        return None

    def start_fingerprints(self) -> dict:
        """role -> sha256 of the starting weights of the objects the caller handed over (a run folder compares
        them with the run it holds, train/run_folder.check_model_objects); {} when models are loaded by name."""
        out = {}
        if self.model is not None:
            out["model"] = self.fingerprint("model")
        if self.ref_model is not None and not self.reference_is_copy:
            out["reference"] = self.fingerprint("reference")
        return out

    def check_reference_vocabulary(self, tokenizer) -> None:
        """A reference object scores the policy's token ids: it must at least have a row for each of them."""
        if self.ref_model is None:
            return
        rows = self.ref_model.get_input_embeddings().num_embeddings
        if rows < len(tokenizer):
            raise UserError(f"ref_model= has {rows} token embeddings, fewer than the policy tokenizer's "
                            f"{len(tokenizer)} tokens: use a reference of the policy's family")

    def check_tokenizer(self, processing_class) -> None:
        """processing_class= of the right type, and given when the model object has no name to load one by."""
        check_tokenizer_argument(processing_class)
        if processing_class is None and self.model is not None and not getattr(self.model, "name_or_path", ""):
            raise UserError("model= is an in-memory model without a name_or_path to load its tokenizer from: pass "
                            "processing_class= (its tokenizer)")

    def record(self, config, extra_meta: dict) -> None:
        """Once the policy is ready: the objects' descriptions into the run card's `model_objects` (extra_meta),
        and the adapters' target modules into config.lora_targets when peft chose them (target_modules=None)."""
        if self.peft_config is not None and not config.lora_targets:
            config.lora_targets = lora_settings_of(self.peft_config)["lora_targets"]
        out = {}
        if self.model is not None:
            out["model"] = describe(self.model, self.fingerprint("model"))
        if self.ref_model is not None:
            out["reference"] = describe(self.ref_model, self.fingerprint("reference"))
            if self.reference_is_copy:
                out["reference"]["copy_of_model"] = True
        if out:
            extra_meta["model_objects"] = out


# ---------------------------------------------------------------------------------------------- the API's arguments
def field_default(cls, name: str):
    spec = cls.__dataclass_fields__[name]
    return spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()


def unset(cls, config, settings: dict, name: str) -> bool:
    """Neither the keywords nor the config object set `name`; a config object holding the field's default counts
    as not set (a dataclass cannot tell a default from the same value written out)."""
    if name in settings:
        return False
    return config is None or getattr(config, name) == field_default(cls, name)


def given_objects(cls, config, settings: dict, model=None, ref_model=None, peft_config=None):
    """The model objects of an API call (a Given); `settings` get their names (model, reference), the
    dtype they are in, and the lora_* values of their adapters, so the config and run card describe them."""
    from tokensift.config import apply_aliases

    aliased = apply_aliases(cls, settings)  # TRL's names (model_name_or_path, use_peft ...) as ours, first
    settings.clear()
    settings.update(aliased)
    if model is None and settings.get("model") is not None:
        model = settings.pop("model")
    name, model_obj = model_argument(model, "model")
    if name is not None:
        settings["model"] = name
    if ref_model is not None and settings.get("reference") is not None:
        raise UserError("pass the reference once: ref_model= or reference=, not both")
    if ref_model is None and settings.get("reference") is not None:
        ref_model = settings.pop("reference")
    ref_name, ref_obj = model_argument(ref_model, "ref_model")
    if ref_name is not None:
        settings["reference"] = ref_name
    peft_config = check_peft_config(peft_config)
    if model_obj is not None:  # loading settings follow the object, which is not loaded again
        dtype = dtype_name(model_obj)
        if unset(cls, config, settings, "dtype"):
            settings["dtype"] = dtype
        elif (asked := settings["dtype"] if "dtype" in settings else config.dtype) != dtype:
            raise UserError(f"model= holds {dtype} weights and dtype={asked} is set: leave dtype unset (it follows "
                            "the object) or convert the model first")
        if not unset(cls, config, settings, "attn_implementation"):
            raise UserError("attn_implementation applies when a model is loaded; a model object keeps the attention "
                            "it was loaded with: leave attn_implementation unset")
        settings["model"] = object_label(model_obj)
    if ref_obj is not None:
        settings["reference"] = object_label(ref_obj)
    adapter = peft_config
    if is_peft_model(model_obj):
        if peft_config is not None:
            raise UserError("model= is already a peft model (it has adapters): leave peft_config= unset")
        adapter = model_obj.peft_config.get(model_obj.active_adapter)
    if adapter is not None and type(adapter).__name__ == "LoraConfig":
        mirrored = lora_settings_of(adapter)
        if settings.get("lora", getattr(config, "lora", False)):
            if is_peft_model(model_obj):
                raise UserError("model= is already a peft model (it has adapters): leave lora unset")
            _check_lora_agrees(cls, config, settings, mirrored)
        settings.update(lora=True, **mirrored)
    return Given(model=model_obj, ref_model=ref_obj, peft_config=peft_config)


def _check_lora_agrees(cls, config, settings: dict, mirrored: dict) -> None:
    """lora=true beside peft_config=: every lora_* value that is set must say what the peft config says."""
    differ = []
    for key, wanted in mirrored.items():
        value = settings.get(key, field_default(cls, key) if config is None else getattr(config, key))
        if key == "lora_targets":
            same = not wanted or {t.strip() for t in str(value).split(",") if t.strip()} == set(wanted.split(","))
        else:
            try:
                same = float(value) == float(wanted)
            except (TypeError, ValueError):
                same = False
        if not same:
            differ.append(f"{key}={value} but peft_config has {wanted}")
    if differ:
        raise UserError(f"peft_config= and lora=true disagree ({'; '.join(differ)}): set the adapters in one place, "
                        "peft_config= alone or the lora_* settings alone")
