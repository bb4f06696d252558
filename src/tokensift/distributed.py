"""Process-group plumbing, all of it accelerate's: tokensift never runs its own distributed layer.

On a machine without an accelerator, accelerate only forms a multi-process (gloo) group when told the run is
on CPU; `on_cpu()` says so, so `accelerate launch --multi_gpu --num_processes N` (or torchrun) also works on
CPU-only hosts, which is how the CI checks multi-process training and scoring.

DeepSpeed launches on such hosts are the exception: accelerate silently drops DeepSpeed when told cpu=True,
and without a named backend it counts one process however many were launched. DeepSpeed has its own CPU
accelerator, so there we ask for a gloo group and leave cpu off: a DeepSpeed launch really runs DeepSpeed.
FSDP launches are dropped the same way; `fsdp_on_cpu` selects FSDP2 (which runs on gloo) after the fact. The CI
tests both sharded paths on CPU this way.
"""

from __future__ import annotations

import contextlib
import os

from tokensift.errors import UserError
from tokensift.lazy import lazy_import

torch = lazy_import("torch")


def on_cpu() -> bool:
    if torch.cuda.is_available():
        return False
    if hasattr(torch, "xpu") and torch.xpu.is_available():
        return False
    mps = getattr(torch.backends, "mps", None)
    return not (mps is not None and mps.is_available())


def quiet_deepspeed() -> None:
    """DeepSpeed, which accelerate and transformers import whenever it is installed (every model save does), warns
    "Setting accelerator to CPU" on hosts without an accelerator. It picks the CPU there anyway; saying so up front
    keeps every command quiet when DeepSpeed is not in use, and changes nothing when it is. Called before a stage
    runs (cli.main) and before models load (models.load_model, the trainer's accelerator), not at import: it asks
    torch, which the command line's start-up does not import."""
    if "DS_ACCELERATOR" not in os.environ and on_cpu():
        os.environ["DS_ACCELERATOR"] = "cpu"


def deepspeed_on_cpu() -> bool:
    return on_cpu() and os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def accelerator_options() -> dict:
    """The `cpu` flag (and, for DeepSpeed on a CPU host, the gloo backend) an `Accelerator` is created with."""
    if deepspeed_on_cpu():
        from accelerate.utils import InitProcessGroupKwargs

        return {"cpu": False, "kwargs_handlers": [InitProcessGroupKwargs(backend="gloo")]}
    return {"cpu": on_cpu()}


def partial_state():
    from accelerate import PartialState

    if deepspeed_on_cpu():
        return PartialState(cpu=False, backend="gloo")
    return PartialState(cpu=on_cpu())


def fresh_accelerator_state() -> None:
    """Let one process run several trainings with different precisions (the Python API, TSO rounds, tests).

    accelerate keeps one AcceleratorState per process and refuses a second Accelerator with another
    mixed_precision. With a single process nothing else holds that state between runs, so it is cleared (the
    process group in PartialState stays); a distributed launch has one precision from its launcher. This reaches
    into accelerate's state, like fsdp_on_cpu; tests/train/test_bf16.py fails if an upgrade breaks it.
    """
    from accelerate.state import AcceleratorState

    if partial_state().num_processes == 1:
        AcceleratorState._reset_state()


def fsdp_on_cpu(accelerator) -> None:
    """Turn a CPU multi-process run launched with FSDP into an FSDP run.

    With cpu=True accelerate forms a MULTI_CPU (DDP-style) group and drops the FSDP config without a word:
    AcceleratorState only selects FSDP for accelerator devices. FSDP2 itself works on gloo, so select it the
    way AcceleratorState would (this reaches into accelerate's state; tests/distributed checks it still works).
    """
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    if accelerator.distributed_type != DistributedType.MULTI_CPU:
        return
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true":
        return
    plugin = FullyShardedDataParallelPlugin()  # read from the launcher's FSDP_* environment, as accelerate does
    if plugin.fsdp_version != 2:
        raise UserError("FSDP on a CPU-only host needs fsdp_version 2 (FSDP1 is not supported there)")
    state = accelerator.state
    if state.mixed_precision != "no":
        plugin.set_mixed_precision(state.mixed_precision)
    state.fsdp_plugin = plugin
    state.distributed_type = PartialState._shared_state["distributed_type"] = DistributedType.FSDP


@contextlib.contextmanager
def unpartitioned_loading():
    """Load models whole even while a DeepSpeed ZeRO-3 config is active.

    With ZeRO-3 active, transformers partitions every model it loads (zero.Init). A partitioned model works only
    inside a DeepSpeed engine, whose every forward is a collective all processes join in lockstep; the frozen
    models tokensift runs outside the engine (references, oracles, judges, generators), each process on its
    own rows, must be whole: one copy per process, without gradients or optimizer state.
    """
    try:
        from transformers.integrations import deepspeed as hf_deepspeed
    except ImportError:
        yield
        return
    saved = getattr(hf_deepspeed, "_hf_deepspeed_config_weak_ref", None)
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = saved


def close_process_group() -> None:
    """Leave a launcher's process group cleanly when a command has finished: every process meets at a barrier, then
    the group is destroyed. Left to interpreter exit, gloo's threads may still be running and abort one process
    ("terminate called without an active exception", exit -6) after all the work was done."""
    import sys

    if "torch" not in sys.modules:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
