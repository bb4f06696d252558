"""Callbacks: a user's own code at the training loop's events, for their own metrics and for early stopping.

The protocol is transformers' `TrainerCallback`, so its subclasses (and any object with some of these methods)
work as they are; each method is optional:

    on_train_begin(args, state, control, **kwargs)
    on_step_end(args, state, control, **kwargs)          after each optimizer step
    on_evaluate(args, state, control, metrics, **kwargs) after each evaluation (metrics: "eval/..." values)
    on_log(args, state, control, logs, **kwargs)         before a step's record is written: keys added to `logs`
                                                         (numbers) are written to metrics.jsonl with it
    on_train_end(args, state, control, **kwargs)

`args` is the run's TrainConfig (not transformers' TrainingArguments: a callback that reads TrainingArguments'
own fields, such as transformers' EarlyStoppingCallback, does not apply; `EarlyStopping` below does that job),
`state` a transformers TrainerState (global_step, max_steps, epoch, log_history), `control` a TrainerControl:
set `control.should_training_stop = True` to stop after this step (the final model is saved as at the end), or
`control.should_save = True` for a checkpoint now. kwargs: model (the policy), processing_class (its
tokenizer), optimizer, lr_scheduler. With several processes every process calls the callbacks, and training stops
when any of them asks (the decision is shared), so a callback reading the logged metrics decides alike everywhere.
"""

from __future__ import annotations

import math

EVENTS = ("on_train_begin", "on_step_end", "on_evaluate", "on_log", "on_train_end")


class EarlyStopping:
    """Stop when `metric` (default "eval/loss"; any logged name, e.g. "eval/rewards/accuracy" with mode="max")
    has not improved by more than `threshold` for `patience` evaluations in a row. Needs eval data and
    eval_every=N (it reads the evaluations); `best` and `bad_evaluations` hold where it stands."""

    def __init__(self, metric: str = "eval/loss", patience: int = 3, mode: str = "min", threshold: float = 0.0):
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping: mode must be min or max, got {mode!r}")
        if patience < 1:
            raise ValueError(f"EarlyStopping: patience must be at least 1, got {patience}")
        self.metric, self.patience, self.mode, self.threshold = metric, patience, mode, threshold
        self.best = math.inf if mode == "min" else -math.inf
        self.bad_evaluations = 0

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not metrics:
            return
        if self.metric not in metrics:
            raise KeyError(f"EarlyStopping: no metric {self.metric!r} in the evaluation; it has "
                           f"{', '.join(sorted(metrics))}")
        value = metrics[self.metric]
        better = value < self.best - self.threshold if self.mode == "min" else value > self.best + self.threshold
        if better:
            self.best, self.bad_evaluations = value, 0
        else:
            self.bad_evaluations += 1
            if self.bad_evaluations >= self.patience:
                control.should_training_stop = True


class Callbacks:
    """The loop's side: calls every callback's method for an event, and holds the state and control they share."""

    def __init__(self, callbacks, config, max_steps: int, steps_per_epoch: float, objects: dict):
        from transformers import TrainerControl, TrainerState

        self.callbacks = list(callbacks or [])
        for callback in self.callbacks:
            if not any(callable(getattr(callback, event, None)) for event in EVENTS):
                raise TypeError(f"callback {callback!r} has none of the methods {', '.join(EVENTS)}")
        self.config, self.objects, self.steps_per_epoch = config, objects, steps_per_epoch
        self.state = TrainerState(max_steps=max_steps)
        self.control = TrainerControl()

    def __bool__(self) -> bool:
        return bool(self.callbacks)

    def call(self, event: str, step: int | None = None, **extra) -> None:
        if step is not None:
            self.state.global_step = step
            self.state.epoch = step / max(self.steps_per_epoch, 1e-12)
        for callback in self.callbacks:
            method = getattr(callback, event, None)
            if callable(method):
                method(self.config, self.state, self.control, **self.objects, **extra)

    def log(self, step: int, record: dict) -> None:
        """on_log with the step's record: what callbacks add to it is logged with it (numbers only)."""
        logs = dict(record)
        self.call("on_log", step, logs=logs)
        for key, value in logs.items():
            if key not in record and isinstance(value, (int, float)) and not isinstance(value, bool):
                record[key] = float(value)
        self.state.log_history.append(dict(record))

    def should_stop(self, accelerator) -> bool:
        """Whether any process's callbacks asked to stop (all-reduced, so every process stops at the same step)."""
        stop = bool(self.control.should_training_stop)
        if accelerator is not None and accelerator.num_processes > 1:
            import torch

            flag = torch.tensor([1.0 if stop else 0.0], device=accelerator.device)
            stop = bool(accelerator.reduce(flag, reduction="sum").item() > 0)
        return stop

    def take_save(self) -> bool:
        save, self.control.should_save = bool(self.control.should_save), False
        return save
