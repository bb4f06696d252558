"""The training loop on accelerate: every loss, gradient accumulation, checkpoints, resume, eval and metrics.

One model in memory: reference log-probs come from the cache (computed before training, see ref_cache.py);
only TDPO keeps a frozen reference, because it needs the reference's full distribution at every position.
Micro-batches are weighted by the units their loss averages over (pairs, or tokens for SFT) relative to the
whole global batch, so batch 8 x accumulation 1 and batch 1 x accumulation 8 take identical steps.

Longer than our ~400-line aim (about 500): the Trainer's steps, evaluation, checkpoints and final save read best
together; the reference pass (reference_meta, reference_logps) is the first piece to move to ref_cache.py when it
grows again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from tokensift.data.collate import collate_pairs, collate_sequences
from tokensift.data.tokenize import TokenizedPair
from tokensift.distributed import accelerator_options, quiet_deepspeed, fresh_accelerator_state, fsdp_on_cpu
from tokensift.errors import UserError
from tokensift.fsutil import check_output_dir
from tokensift.logprobs import LabelLogps, packed_attention_scale, packed_row_tokens
from tokensift.models import (LoraSettings, free_memory, keep_freed_memory, load_model, load_tokenizer,
                              model_fingerprint, parse_dtype, same_tokenizer, tokenizer_fingerprint)
from tokensift.train import checkpoint as ckpt
from tokensift.train import deepspeed_setup as ds_setup
from tokensift.train.config import TrainConfig
from tokensift.train.callbacks import Callbacks
from tokensift.train.hub import check_hub
from tokensift.train.data import Schedule, TrainData, load_training_data, micro_batches, token_micro_batches
from tokensift.train.memory import checkpointing_for
from tokensift.train.metrics import MetricsLog, StepMetrics, peak_memory_mb
from tokensift.train.objective import compute_loss, loss_units, read_mask
from tokensift.train.outputs import save_final
from tokensift.train.recompute import enable_selective_recompute
from tokensift.train.run_folder import check_model_objects, folder_state, record_start, remove_run
from tokensift.train.ref_cache import ReferenceLogpCache

log = logging.getLogger(__name__)


class NumericalError(UserError):
    """The loss or the gradients became NaN/inf."""


@dataclass
class TrainResult:
    output_dir: Path
    final_dir: Path
    steps: int
    train_metrics: dict
    eval_metrics: dict | None


def check_reference_tokenizer(config: TrainConfig, tokenizer, given=None) -> None:
    """A reference scores the policy's token ids: it must read them as the same text."""
    if given is not None and given.ref_model is not None:  # an object: no tokenizer to load by its name
        given.check_reference_vocabulary(tokenizer)
        return
    if not config.needs_reference or config.reference in (None, config.model):
        return
    if not same_tokenizer(tokenizer, load_tokenizer(config.reference, config.trust_remote_code)):
        raise UserError(
            f"the reference '{config.reference}' uses another tokenizer (vocabulary, special tokens or chat "
            f"template) than the policy '{config.model}'; its log-probs of the policy's tokens would be "
            "meaningless. Use a reference of the policy's family"
        )


def autocast_precision(config: TrainConfig) -> str:
    """accelerate's mixed_precision: as set, else the half dtype the weights were asked in (bf16 done right: the
    trained weights are fp32 masters, see Trainer.keep_trained_weights_fp32, and the matmuls run in bf16)."""
    if config.mixed_precision != "no":
        return config.mixed_precision
    return {"bfloat16": "bf16", "bf16": "bf16", "float16": "fp16", "fp16": "fp16"}.get(config.dtype, "no")


def make_accelerator(config: TrainConfig):
    quiet_deepspeed()
    from accelerate import Accelerator

    trackers = [t.strip() for t in config.trackers.split(",") if t.strip()]
    fresh_accelerator_state()
    accelerator = Accelerator(mixed_precision=autocast_precision(config), log_with=trackers or None,
                              project_dir=config.output_dir, **accelerator_options())
    fsdp_on_cpu(accelerator)
    return accelerator


def reference_meta(config, part, tokenizer, ref_fp: str) -> dict:
    """What the reference log-probs of a set of pairs depend on: the key of their cache."""
    return {"data": part.fingerprint, "reference": ref_fp, "tokenizer": tokenizer_fingerprint(tokenizer),
            "max_length": config.max_length, "max_prompt_length": config.max_prompt_length, "dtype": config.dtype}


def reference_logps(config, data: TrainData, tokenizer, accelerator, policy_model, per_token: bool = False,
                    given=None):
    """Cached reference log-prob sums for every train and eval pair (and, with `per_token`, the per-token arrays a
    token selection sums over); computed once, with one model loaded. Returns (sums, per-token or None).
    given: model objects handed over in Python (given.py): a reference object runs the pass, keyed by its weights."""
    reference = config.reference or config.model
    ref_fp = (given and given.reference_fingerprint(config)) or model_fingerprint(reference)
    sums, tokens = {}, ({} if per_token else None)
    for part in (data.train, data.eval):
        if part is None or not part.pairs:
            continue
        cache = ReferenceLogpCache(reference_meta(config, part, tokenizer, ref_fp), config.ref_cache_dir,
                                   accelerator.process_index, accelerator.num_processes)
        # Every process must see the same "missing" set: agree on it before anyone writes a shard.
        if accelerator.is_main_process:
            cache.store.clean_temporaries()  # left by a killed run; nobody is writing yet
        accelerator.wait_for_everyone()
        missing = cache.missing(part.pairs)
        accelerator.wait_for_everyone()
        if missing:
            # Under ZeRO-3 the policy's weights are partitioned: the reference pass loads a whole copy instead.
            same = config.reference in (None, config.model) and ds_setup.zero_stage(accelerator) != 3
            model = policy_model if same else None
            if given is not None and given.ref_model is not None:
                model = given.reference(accelerator.device)
            if model is None:
                model = load_model(reference, dtype=config.dtype, trust_remote_code=config.trust_remote_code,
                                   device=accelerator.device, attn_implementation=config.attn_implementation)
            model.eval()
            with accelerator.autocast():  # the precision of the policy's own forward: rewards start at exactly 0
                cache.fill(model, missing, config.ref_batch_size, tokenizer.pad_token_id, accelerator.device,
                           share_prompt=config.share_prompt, packing=config.packing, progress=config.progress)
            del model
            free_memory()  # the pass's buffers (and a separate reference model) before training allocates its own
            accelerator.wait_for_everyone()
        sums.update(cache.sums(part.pairs))
        if per_token:
            tokens.update(cache.token_logps({p.row for p in part.pairs}))
    return sums, tokens


def keep_trained_weights_fp32(model) -> None:
    """Trained parameters become fp32 masters (their gradients and AdamW states follow), frozen ones (a LoRA base)
    keep the dtype they were loaded in. In bf16 the matmuls still run in bf16, under autocast: updates smaller than
    bf16's resolution (1/256 of a weight) are not lost, at 16 bytes per trained parameter as in fp32 training."""
    for param in model.parameters():
        if param.requires_grad and param.dtype in (torch.bfloat16, torch.float16):
            param.data = param.data.float()


def fused_adamw(params, accelerator) -> bool:
    """AdamW's fused kernel (CPU and CUDA): one pass over each tensor instead of a dozen, no parameter-sized
    temporaries (4x faster steps for the default model on CPU). Not under FSDP or DeepSpeed, which wrap or replace
    the optimizer's tensors."""
    floats = (torch.float32, torch.bfloat16, torch.float16)
    return not ckpt.is_sharded(accelerator) and all(p.device.type in ("cpu", "cuda") and p.dtype in floats
                                                    for p in params)


class Trainer:
    def __init__(self, config: TrainConfig, data: TrainData | Callable | None = None, tokenizer=None, given=None,
                 callbacks=None):
        """callbacks: a user's objects called at the loop's events (train/callbacks.py).
        data: what to train on (TrainData), or a function (config, tokenizer) -> TrainData that builds it, e.g.
        a method's stage that adds token selections; default: the pairs of `config.data` (train/data.py).
        tokenizer: the policy's tokenizer object (default: loaded from `config.model`).
        given: model objects handed over in Python (tokensift.given.Given), used instead of loading
        `config.model` / `config.reference` (the config holds their names, for the run card)."""
        from tokensift.given import Given

        given = given or Given()
        self.config = config
        self.spec = config.loss_spec
        self.accelerator = make_accelerator(config)
        ds_setup.configure(self.accelerator, config)  # DeepSpeed's batch/clip values from ours, before any work
        self.output_dir = Path(config.output_dir)
        check_model_objects(config, given.start_fingerprints())  # a run there from other model objects: refused
        if folder_state(config) == "done":  # train() returns a finished run instead of building this
            raise UserError(f"{self.output_dir} holds a finished run with these settings; overwrite=true trains again")
        check_output_dir(self.output_dir)
        check_hub(config)  # push_to_hub: token, network, id and write access now, not after training
        torch.manual_seed(config.seed)
        self.tokenizer = tokenizer or load_tokenizer(config.model, config.trust_remote_code)
        check_reference_tokenizer(config, self.tokenizer, given)
        if data is None:
            data = load_training_data
        self.data = data(config, self.tokenizer) if callable(data) else data
        if self.spec.selection == "required" and self.data.select is None:
            raise UserError(f"loss={config.loss} trains on a token selection, and the data brings none; "
                            "train it through its stage (e.g. `tokensift train loss=sepo scores=DIR`)")
        self.pair_tokens = np.array([self.run_tokens(p) for p in self.data.train.pairs])  # max_tokens_per_batch
        choice = checkpointing_for(config, given.model, self.pair_tokens.tolist(), self.accelerator.device,
                                   ckpt.is_sharded(self.accelerator))
        if choice.reason != "set":
            log.info("gradient_checkpointing %s", choice.reason)
        self.checkpointing = choice.on
        lora = None
        if config.lora and not given.brings_adapters:  # else lora_* mirror the given adapters, for the card
            lora = LoraSettings(config.lora_r, config.lora_alpha, config.lora_dropout,
                                [t.strip() for t in config.lora_targets.split(",") if t.strip()])
        self.model = given.policy(config, lora, self.accelerator.device, self.checkpointing)
        if self.model is None:
            self.model = load_model(config.model, dtype=config.dtype, trust_remote_code=config.trust_remote_code,
                                    gradient_checkpointing=self.checkpointing, lora=lora,
                                    device=self.accelerator.device, zero3_partition=True,
                                    attn_implementation=config.attn_implementation, qlora=config.qlora,
                                    peft_config=given.peft_config)
        given.record(config, self.data.extra_meta)  # model objects and peft-chosen adapters, for the run card
        self.deepspeed = ds_setup.is_deepspeed(self.accelerator)
        if config.keep_freed_memory and self.accelerator.device.type == "cpu":
            keep_freed_memory()
        if not self.deepspeed:  # DeepSpeed keeps its own fp32 masters (its bf16 config)
            keep_trained_weights_fp32(self.model)
        if config.selective_recompute and not self.checkpointing and not ckpt.is_sharded(self.accelerator):
            enable_selective_recompute(self.model)
        self.ref_model = None
        self.ref_sums = self.ref_tokens = None
        if self.spec.reference == "live":
            self.ref_model = given.reference(self.accelerator.device)
            if self.ref_model is None:
                self.ref_model = load_model(config.reference or config.model, dtype=config.dtype,
                                            trust_remote_code=config.trust_remote_code,
                                            device=self.accelerator.device,
                                            attn_implementation=config.attn_implementation)
            self.ref_model.requires_grad_(False).eval()
        if config.needs_reference and self.spec.reference == "cached" or self.data.reference_tokens:
            # a token selection sums the reference over its own tokens: it needs them per token
            per_token = self.data.select is not None or self.data.reference_tokens
            self.ref_sums, self.ref_tokens = reference_logps(config, self.data, self.tokenizer, self.accelerator,
                                                             self.model, per_token, given)
        self.pack = config.share_prompt  # logprobs.token_logps runs unpacked where a model cannot pack
        self.row_tokens = packed_row_tokens(config.packing, self.model)
        self.attention_scale = packed_attention_scale(config.packing, self.model)
        world = self.accelerator.num_processes
        self.schedule = Schedule(len(self.data.train.pairs), config.batch_size * config.grad_accum * world,
                                 config.seed, config.epochs, config.max_steps)
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=config.learning_rate, betas=(config.adam_beta1, config.adam_beta2),
                                      weight_decay=config.weight_decay, fused=fused_adamw(params, self.accelerator))
        wrapper = LabelLogps(self.model)
        if ds_setup.zero_stage(self.accelerator) == 3:
            ds_setup.register_head(wrapper, self.model)
        self.wrapper, self.optimizer = self.accelerator.prepare(wrapper, optimizer)
        # Not handed to accelerate: its scheduler wrapper steps once per process, which would make the schedule
        # depend on the number of processes. Ours is defined in global optimizer steps, on the torch optimizer
        # every backend keeps stepping (DeepSpeed's ZeRO optimizers step it with its own param_groups).
        self.scheduler = make_scheduler(optimizer, config, self.schedule.total_steps)
        self.metrics_log = MetricsLog(self.output_dir / "metrics.jsonl", self.accelerator.is_main_process)
        self.callbacks = Callbacks(callbacks, config, self.schedule.total_steps, self.schedule.steps_per_epoch,
                                   {"model": self.model, "processing_class": self.tokenizer, "optimizer": optimizer,
                                    "lr_scheduler": self.scheduler})

    # ------------------------------------------------------------------------------------------------ batches
    def run_tokens(self, pair: TokenizedPair) -> int:
        """Tokens a pair runs as: prompt + chosen (SFT), else both responses with the prompt once when shared."""
        if not self.spec.pairwise:
            return len(pair.prompt_ids) + len(pair.chosen_ids)
        return pair.num_tokens - (len(pair.prompt_ids) if self.config.share_prompt else 0)

    def build_batch(self, pairs: list[TokenizedPair]):
        pad = self.tokenizer.pad_token_id
        if not self.spec.pairwise:
            return collate_sequences([p.prompt_ids for p in pairs], [p.chosen_ids for p in pairs], pad,
                                     pack=self.pack, row_tokens=self.row_tokens)
        batch = collate_pairs(pairs, pad, self.ref_sums, pack=self.pack, row_tokens=self.row_tokens,
                              ref_token_logps=self.ref_tokens, attention_scale=self.attention_scale)
        select = self.data.select
        if select is not None and not getattr(select, "online", False):
            batch.select_mask = select(batch)
        return batch

    def forward_loss(self, batch):
        """One forward and the loss. The labels it computes are the batch's selection (or every response token);
        an online selection (one that reads the policy's own log-probs) is made from them, then the loss reads it."""
        batch = batch.to(self.accelerator.device)
        mask = read_mask(batch)
        out = self.wrapper(batch.input_ids, batch.prompt_lens, mask, self.ref_model, getattr(batch, "packed", None))
        select = self.data.select
        if select is not None and getattr(select, "online", False):
            mask = select(batch, out.logps.detach())
        return compute_loss(self.config, batch, out.logps, out.kl, out.ref_logps, mask=mask)

    # ------------------------------------------------------------------------------------------------ steps
    def train_step(self, step: int) -> tuple[dict, bool]:
        """One optimizer step over the global batch of `step`; returns (metrics, finite)."""
        cfg, acc = self.config, self.accelerator
        pairs = self.data.train.pairs
        indices = self.schedule.batch(step)
        global_units = sum(loss_units(self.spec, pairs[i]) for i in indices)
        metrics = StepMetrics()
        if cfg.max_tokens_per_batch:
            micro = token_micro_batches(indices, self.pair_tokens, cfg.max_tokens_per_batch, acc.process_index,
                                        acc.num_processes)
        else:
            micro = micro_batches(indices, cfg.batch_size, cfg.grad_accum, acc.process_index, acc.num_processes)
        self.wrapper.train()
        for m, part in enumerate(micro):
            weight = 1.0
            if len(part) == 0:  # a short last batch: keep every process in step with a zero-weight pass
                part, weight = indices[:1], 0.0
            batch = self.build_batch([pairs[i] for i in part])
            last = m == len(micro) - 1
            if self.deepspeed:
                self.wrapper.set_gradient_accumulation_boundary(last)
            sync = last or acc.num_processes == 1
            context = acc.no_sync(self.wrapper) if not sync and not self.deepspeed else contextlib.nullcontext()
            with context:
                out = self.forward_loss(batch)
                scaled = out.loss * (weight * out.count / global_units * acc.num_processes)
                if self.deepspeed:  # already weighted by its share of the global batch: no division by grad_accum
                    self.wrapper.backward(scaled, scale_wrt_gas=False)
                else:
                    acc.backward(scaled)
            if weight:
                metrics.add(out, batch.num_examples, batch.num_tokens)
            else:
                metrics.register(out)
        result = metrics.reduce(acc)
        if self.deepspeed:
            # DeepSpeed clips, steps and clears the gradients in this one call, and skips the update when their
            # norm is not finite; accelerate's optimizer step and zero_grad below are no-ops under DeepSpeed.
            self.wrapper.step()
            norm = self.wrapper.get_global_grad_norm()
        else:
            # Measured even when clipping is off (max_norm=inf scales by exactly 1): a non-finite gradient with a
            # finite loss must not reach the optimizer.
            norm = acc.clip_grad_norm_(self.wrapper.parameters(),
                                       cfg.max_grad_norm if cfg.max_grad_norm > 0 else math.inf)
        grad_norm = None if norm is None else float(norm)
        finite = math.isfinite(result["loss"]) and (grad_norm is None or math.isfinite(grad_norm))
        if finite:
            self.optimizer.step()
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        result["grad_norm"] = grad_norm
        return result, finite

    @torch.no_grad()
    def evaluate(self) -> dict | None:
        if self.data.eval is None or not self.data.eval.pairs:
            return None
        acc, pairs = self.accelerator, self.data.eval.pairs
        self.wrapper.eval()
        metrics = StepMetrics()
        size = self.config.eval_batch_size
        mine = [p for i, p in enumerate(pairs) if i % acc.num_processes == acc.process_index]
        # Every process runs as many forwards as the busiest one (ZeRO-3 and FSDP gather weights in each forward,
        # a collective all must join); the extra ones are zero-weight passes over a pair already counted.
        passes = math.ceil(math.ceil(len(pairs) / acc.num_processes) / size)
        for start in range(0, passes * size, size):
            part = mine[start : start + size]
            batch = self.build_batch(part or pairs[:1])
            out = self.forward_loss(batch)
            if part:
                metrics.add(out, batch.num_examples, batch.num_tokens)
            else:
                metrics.register(out)
        return {f"eval/{k}": v for k, v in metrics.reduce(acc).items()}

    def save(self, step: int, extra: dict) -> None:
        acc = self.accelerator
        if ckpt.is_sharded(acc):
            ckpt.save_sharded_checkpoint(acc, self.output_dir, step, self.scheduler, extra, self.config.keep_checkpoints)
            return
        acc.wait_for_everyone()
        if acc.is_main_process:
            ckpt.save_checkpoint(self.output_dir, step, acc.unwrap_model(self.wrapper), self.optimizer, self.scheduler,
                                 extra, keep=self.config.keep_checkpoints)
        acc.wait_for_everyone()

    def resume(self) -> tuple[int, dict]:
        """Continue from the last checkpoint of this run (the folder's settings were compared in __init__)."""
        ckpt.clean_temporaries(self.output_dir)
        found = ckpt.latest_checkpoint(self.output_dir)
        if found is None:
            log.info("%s holds no checkpoint of this run: starting from scratch", self.output_dir)
            self.metrics_log.truncate_after(0)  # lines of an earlier attempt that died before its first checkpoint
            return 0, {}
        if ckpt.is_sharded(self.accelerator):
            state = ckpt.load_sharded_checkpoint(self.accelerator, found, self.scheduler)
        else:
            state = ckpt.load_checkpoint(found, self.accelerator.unwrap_model(self.wrapper), self.optimizer,
                                         self.scheduler)
        self.metrics_log.truncate_after(state["step"])
        return state["step"], state

    # ------------------------------------------------------------------------------------------------ run
    def run(self) -> TrainResult:
        cfg, acc = self.config, self.accelerator
        if cfg.overwrite:  # the run there is replaced only now that everything is loaded (a failed start keeps it)
            if acc.is_main_process:
                remove_run(self.output_dir)
            acc.wait_for_everyone()
        start, state = self.resume()
        if acc.is_main_process:
            record_start(cfg, self.data.extra_meta.get("model_objects"))
        total = self.schedule.total_steps
        skipped = state.get("skipped_steps", 0)
        if cfg.trackers:
            acc.init_trackers("tokensift", config={k: v for k, v in dataclasses.asdict(cfg).items()
                                                   if isinstance(v, (int, float, str, bool))})
        bar = tqdm(total=total, initial=start, desc=f"{cfg.loss} training", unit="step",
                   disable=not (cfg.progress and acc.is_main_process))
        train_metrics: dict = state.get("train_metrics", {})
        eval_metrics = None
        started = time.perf_counter()
        self.callbacks.call("on_train_begin", start)
        evaluated_at = None
        for step in range(start, total):
            t0 = time.perf_counter()
            metrics, finite = self.train_step(step)
            elapsed = time.perf_counter() - t0
            if not finite:
                if cfg.nan_policy == "stop":
                    last = ckpt.latest_checkpoint(self.output_dir)
                    raise NumericalError(
                        f"step {step + 1}: the loss or gradient norm is not finite (loss={metrics['loss']}, "
                        f"grad_norm={metrics['grad_norm']}); nothing was applied. Last good checkpoint: "
                        f"{last if last else 'none'}. Lower the learning rate, use float32, or pass nan_policy=skip."
                    )
                skipped += 1
            record = {"step": step + 1, "epoch": round((step + 1) / self.schedule.steps_per_epoch, 4),
                      "lr": self.scheduler.get_last_lr()[0], "tokens_per_s": metrics["tokens"] / max(elapsed, 1e-9),
                      "step_time_s": elapsed, "peak_memory_mb": peak_memory_mb(acc.device), "skipped_steps": skipped,
                      **metrics}
            train_metrics = record
            if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < total:
                eval_metrics = self.evaluate()
                record.update(eval_metrics or {})
                if eval_metrics:
                    evaluated_at = step + 1
                    self.callbacks.call("on_evaluate", step + 1, metrics=eval_metrics)
            self.callbacks.call("on_step_end", step + 1)
            stop = self.callbacks.should_stop(acc)
            if stop:  # a callback asked: this step is the last (the final model is saved below, as at the end)
                log.info("step %d: a callback stopped training", step + 1)
                total = step + 1
            if (step + 1) % cfg.log_every == 0 or step + 1 == total or eval_metrics:
                self.callbacks.log(step + 1, record)
                self.metrics_log.write(record)
                if cfg.trackers:
                    acc.log({k: v for k, v in record.items() if isinstance(v, (int, float)) and v is not None},
                            step=step + 1)
            bar.set_postfix(loss=f"{metrics['loss']:.4f}",
                            acc=f"{metrics.get('rewards/accuracy', float('nan')):.2f}")
            bar.update(1)
            asked = self.callbacks.take_save()
            if (asked or cfg.save_every and (step + 1) % cfg.save_every == 0) and step + 1 < total:
                self.save(step + 1, {"train_metrics": train_metrics, "skipped_steps": skipped})
            if stop:
                break
        bar.close()
        if evaluated_at != total:  # a callback may have stopped right after an evaluation: not run twice
            eval_metrics = self.evaluate()
            if eval_metrics:
                self.callbacks.call("on_evaluate", total, metrics=eval_metrics)
                self.metrics_log.write({"step": total, **eval_metrics})
        self.callbacks.call("on_train_end", total)
        if cfg.trackers:
            acc.end_training()
        final = self.output_dir / "final"
        # Under FSDP / ZeRO-3 the full weights exist only once gathered, a collective every process joins.
        full_state = None
        if ckpt.is_sharded(acc):
            gathered = acc.get_state_dict(self.wrapper)  # ZeRO-3 returns it on the main process only
            if gathered is not None:
                full_state = {k.removeprefix("model."): v for k, v in gathered.items()}
        saved_dtype = parse_dtype(cfg.dtype)  # the fp32 masters of a bf16 run are saved in bf16, as asked
        if full_state is not None:
            full_state = {k: v.to(saved_dtype) if v.is_floating_point() else v for k, v in full_state.items()}
        elif saved_dtype != torch.float32 and not (self.deepspeed or cfg.qlora):  # QLoRA merges into a fresh base
            acc.unwrap_model(self.wrapper).model.to(saved_dtype)
        if acc.is_main_process:
            save_final(final, acc.unwrap_model(self.wrapper).model, self.tokenizer, cfg, self.data, total,
                       train_metrics, eval_metrics, time.perf_counter() - started, state_dict=full_state)
        acc.wait_for_everyone()
        return TrainResult(self.output_dir, final, total, train_metrics, eval_metrics)


def finished_result(config: TrainConfig) -> TrainResult:
    """The TrainResult of the finished run in output_dir, read from its run card (nothing is loaded)."""
    import json

    folder = Path(config.output_dir)
    card = json.loads((folder / "final" / "run_card.json").read_text(encoding="utf-8"))
    return TrainResult(folder, folder / "final", card.get("steps", 0), card.get("final_train_metrics") or {},
                       card.get("final_eval_metrics"))


def make_scheduler(optimizer, config: TrainConfig, total_steps: int):
    from transformers import get_scheduler

    name = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}[config.scheduler]
    warmup = int(round(config.warmup_ratio * total_steps))
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)


def train(config: TrainConfig, data: TrainData | Callable | None = None, tokenizer=None, given=None,
          callbacks=None) -> TrainResult:
    """Train, or return the finished run in output_dir when it was trained with these settings (nothing is loaded);
    a run there with other settings, or from other model objects (given), is refused, naming them
    (train/run_folder.py)."""
    from tokensift.given import Given

    check_model_objects(config, (given or Given()).start_fingerprints())
    if folder_state(config) == "done":
        print(f"{Path(config.output_dir) / 'final'}: finished already with these settings; kept "
              "(overwrite=true trains again)")
        return finished_result(config)
    return Trainer(config, data, tokenizer, given, callbacks).run()
