"""The loss registry (`LossSpec`, `register`, `LOSSES`), the declaration check, `LossOutput` and the helpers every
loss shares. The losses themselves live beside this module, one family per module (see the package docstring).

The contract with the training engine:

- Per-token tensors are in **label space**: `logps[b, i] = log pi(y_i | x, y_<i)` for response token `i` of
  pair `b`. `mask[b, i]` says which tokens count: bool, or float weights >= 0 (a token selector's soft
  weights: sums become weighted sums, means weighted means divided by the weights' sum; 0/1 floats behave as
  bool). Masked-out positions may hold any value (usually 0); they never reach a result or a gradient,
  because they are dropped with `torch.where`, not multiplied by 0.
- Chosen and rejected tensors have their own widths R_c and R_r. Reference values arrive precomputed as
  sequence sums `[B]` (the reference cache) and are treated as constants (detached).
- Each loss decides its own aggregation: DPO-family losses sum over the mask, length-normalised ones
  (IPO, SimPO, RRHF, SePO, ORPO) average over it.
- Reductions run in float32 whatever the input dtype (bf16 sums over thousands of tokens lose digits).
- Every function returns `LossOutput`: `loss` is the mean over `count` units (pairs; tokens for SFT), so
  the engine can weight micro-batches by `count` and make 8 x 1 equal 1 x 8 exactly.
- Metrics are detached float32 tensors of shape `[B]`, one value per pair, named like TRL's. In every loss
  `logps/chosen` and `logps/rejected` are the sums of the policy log-probs over the mask given, and
  `rewards/accuracy` is `rewards/margin > 0`. Indicator metrics such as `clip/chosen_fraction` are 0/1 per
  pair, so their batch mean is the fraction.

Each loss declares itself once, with `@register` above its function (a `LossSpec`): what the engine must give
it (a reference? the reference's whole distribution at every position, like TDPO? a token selection?), which
training settings it reads and under which keyword, and what its `loss` averages over. Config validation, the
command-line help, the oracle's check and the trainer's dispatch all read `LOSSES`; docs/contributing.md says
how to add one.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Callable

from tokensift.lazy import lazy_import

torch = lazy_import("torch")
F = lazy_import("torch.nn.functional")


@dataclass(frozen=True)
class LossSpec:
    """What the engine needs to know about one loss, declared beside its function.

    reference:  "none" (reference-free), "cached" (reference log-prob sums [B], precomputed once and read from
                the cache: `ref_chosen_logps`, `ref_rejected_logps`), or "live" (a frozen reference model runs
                beside the policy: the reference sums plus per-position KL(ref || policy), `chosen_kl`,
                `rejected_kl`, over the full vocabulary).
    params:     training setting -> the function's keyword, for every setting the loss reads. A setting left
                unset (None) is not passed: the function's own default applies (SimPO's beta 2.0, DPO's 0.1).
    pairwise:   chosen and rejected sides (False: `logps`, `mask` of the chosen responses only, e.g. SFT).
    unit:       what `loss` averages over, so the engine can weight micro-batches: "pair" or "token".
    selection:  "none" (the whole response unless a selector is set), or "required" (it trains on a token
                selection, e.g. SePO's key tokens): the mask the function receives.
    token_weights: whether its masks may be float weights (a weighted sum or mean over the tokens), what the
                soft selector gives; losses whose math is not a sum over tokens (SFT's count, TDPO's KL) say no.
    pair_inputs: optional per-pair tensors [B] the function takes as keywords of the same name, passed when the
                batch carries them (`PairBatch.<name>`), e.g. TSO's `target_margin` (TrainConfig.margin_column).
    data:       "paired" (prompt, chosen, rejected) or "unpaired" (prompt, completion, label: KTO, BCO; the engine
                lays each row out as a pair whose rejected side is a mismatched completion, data/unpaired.py, and
                passes the labels as the pair input `label`).
    no_selection: why the loss takes no token selection, when it takes none (the config refuses a selector with
                this reason); empty: any selector works.
    summary:    one line for the command-line help.
    """

    name: str
    function: Callable[..., "LossOutput"]
    summary: str
    reference: str = "none"
    params: dict[str, str] = field(default_factory=dict)
    pairwise: bool = True
    unit: str = "pair"
    selection: str = "none"
    token_weights: bool = True
    pair_inputs: tuple[str, ...] = ()
    data: str = "paired"
    no_selection: str = ""

    @property
    def needs_reference(self) -> bool:
        return self.reference != "none"

    def keywords(self, settings) -> dict:
        """The function's keyword arguments from an object holding the training settings as attributes."""
        values = {keyword: getattr(settings, name) for name, keyword in self.params.items()}
        return {keyword: value for keyword, value in values.items() if value is not None}

    def check(self, keywords: dict) -> None:
        """Run the function once on a one-pair batch, so that a bad setting fails before any work (ValueError),
        with the function's own message."""
        logps, mask = torch.zeros(1, 1), torch.ones(1, 1, dtype=torch.bool)
        if not self.pairwise:
            self.function(logps=logps, mask=mask, **keywords)
            return
        args = dict(chosen_logps=logps, chosen_mask=mask, rejected_logps=logps - 1, rejected_mask=mask)
        if self.data == "unpaired":
            args["label"] = torch.ones(1)
        if self.needs_reference:
            args.update(ref_chosen_logps=torch.zeros(1), ref_rejected_logps=torch.zeros(1))
        if self.reference == "live":
            args.update(chosen_kl=torch.zeros(1, 1), rejected_kl=torch.zeros(1, 1))
        self.function(**args, **keywords)


LOSSES: dict[str, LossSpec] = {}


def register(name: str, summary: str, **options):
    """Declare the decorated function as loss `name` (see LossSpec for the options). Every option is checked now,
    against the function's own signature, so a typo fails at import with the loss and the option named."""

    def declare(function):
        if name in LOSSES:
            raise ValueError(f"loss '{name}' is declared twice")
        known = [f for f in LossSpec.__dataclass_fields__ if f not in ("name", "function", "summary")]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(f"loss '{name}': unknown option {', '.join(unknown)}; the options are {', '.join(known)}")
        spec = LossSpec(name, function, summary, **options)
        check_declaration(spec)
        LOSSES[name] = spec
        return function

    return declare


CHOICES = {"reference": ("none", "cached", "live"), "unit": ("pair", "token"), "selection": ("none", "required"),
           "data": ("paired", "unpaired")}


def engine_inputs(pairwise: bool, reference: str) -> tuple[str, ...]:
    """The keywords the engine passes to a loss so declared, besides its params (train/objective.py)."""
    if not pairwise:
        return ("logps", "mask")
    inputs = ("chosen_logps", "chosen_mask", "rejected_logps", "rejected_mask")
    if reference != "none":
        inputs += ("ref_chosen_logps", "ref_rejected_logps")
    if reference == "live":
        inputs += ("chosen_kl", "rejected_kl")
    return inputs


def check_declaration(spec: LossSpec) -> None:
    """A ValueError naming the loss, the option and what it may be, unless every option is valid and the function
    takes exactly what the engine will pass it: its inputs, the params' keywords and the pair inputs (with
    defaults: an unset setting, or a pair input the batch lacks, is not passed), and nothing else without a
    default."""
    name, function = spec.name, spec.function

    def bad(message: str) -> ValueError:
        return ValueError(f"loss '{name}': {message}")

    if not callable(function):
        raise bad(f"@register declares a function, got {type(function).__name__}")
    if not isinstance(spec.summary, str) or not spec.summary.strip():
        raise bad("the summary (a line for the help) must be a non-empty string")
    for option, choices in CHOICES.items():
        if getattr(spec, option) not in choices:
            raise bad(f"{option} must be one of {', '.join(choices)}, got {getattr(spec, option)!r}")
    if not isinstance(spec.no_selection, str) or (spec.no_selection and spec.selection == "required"):
        raise bad(f"no_selection is the reason a loss takes no selection (a string; not with selection='required'), "
                  f"got {spec.no_selection!r}")
    if spec.data == "unpaired" and "label" not in spec.pair_inputs:
        raise bad("an unpaired loss reads each row's label: declare pair_inputs=('label',)")
    for option in ("pairwise", "token_weights"):
        if not isinstance(getattr(spec, option), bool):
            raise bad(f"{option} must be True or False, got {getattr(spec, option)!r}")
    if not isinstance(spec.params, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                    for k, v in spec.params.items()):
        raise bad(f"params must map training settings to the function's keywords (str -> str), got {spec.params!r}")
    if not isinstance(spec.pair_inputs, tuple) or not all(isinstance(k, str) for k in spec.pair_inputs):
        raise bad(f"pair_inputs must be a tuple of keyword names, e.g. ('target_margin',), got {spec.pair_inputs!r}")
    if not spec.pairwise:
        for option, plain in (("reference", "none"), ("selection", "none"), ("pair_inputs", ())):
            if getattr(spec, option) != plain:
                raise bad(f"a pairwise=False loss gets logps and mask only: {option} must be {plain!r}, "
                          f"got {getattr(spec, option)!r}")

    signature = inspect.signature(function)
    parameters = signature.parameters
    keywords = [k for k, p in parameters.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    any_keyword = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    who = getattr(function, "__name__", name)
    kind = f"a pairwise loss with reference={spec.reference!r}" if spec.pairwise else "a pairwise=False loss"
    inputs = engine_inputs(spec.pairwise, spec.reference)
    passed = {keyword: f"the engine passes to {kind}" for keyword in inputs}
    declared = [(f"params[{setting!r}]", keyword) for setting, keyword in spec.params.items()]
    declared += [("pair_inputs", keyword) for keyword in spec.pair_inputs]
    for where, keyword in [("", keyword) for keyword in inputs] + declared:
        if where and keyword in passed:
            raise bad(f"{where} names {keyword!r}, which {passed[keyword]} already")
        if keyword not in keywords and not any_keyword:
            why = where + " names" if where else passed[keyword]
            raise bad(f"{who} does not take the keyword {keyword!r}, which {why}; its keywords: "
                      f"{', '.join(keywords) or 'none'}")
        if where and keyword in parameters and parameters[keyword].default is inspect.Parameter.empty:
            why = ("it is passed only when the batch carries it" if where == "pair_inputs"
                   else "an unset setting (None) is not passed")
            raise bad(f"{who}'s keyword {keyword!r} ({where}) needs a default: {why}")
        passed.setdefault(keyword, f"{where} names")
    for keyword, parameter in parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD) or keyword in passed:
            continue
        if parameter.default is inspect.Parameter.empty:
            hint = " (reference='cached' or 'live' passes the reference's sums)" if keyword.startswith("ref_") else ""
            raise bad(f"{who} requires {keyword!r}, which nothing passes{hint}: the engine passes "
                      f"{', '.join(inputs)} to {kind}; give it a default, or name it in params or pair_inputs")


@dataclass
class LossOutput:
    """What every loss returns.

    loss:    scalar float32, the mean over `count` units of this batch (differentiable).
    count:   how many units `loss` averages over (pairs, or masked tokens for SFT).
    metrics: detached float32 per-pair values, shape [B] each.
    """

    loss: torch.Tensor
    count: float
    metrics: dict[str, torch.Tensor]


# ---------------------------------------------------------------------------------------------- helpers


def _check_tokens(who: str, logps_name: str, mask_name: str, logps: torch.Tensor, mask: torch.Tensor) -> None:
    if logps.dim() != 2:
        raise ValueError(f"{who}: {logps_name} must have shape [B, R], got {tuple(logps.shape)}")
    if mask.shape != logps.shape:
        raise ValueError(
            f"{who}: {mask_name} has shape {tuple(mask.shape)} but {logps_name} has {tuple(logps.shape)}"
        )


def _check_pair(who: str, chosen_logps, chosen_mask, rejected_logps, rejected_mask, *refs) -> int:
    """Validate the shapes of one batch of pairs; return B. `refs` are (name, tensor) of shape [B]."""
    _check_tokens(who, "chosen_logps", "chosen_mask", chosen_logps, chosen_mask)
    _check_tokens(who, "rejected_logps", "rejected_mask", rejected_logps, rejected_mask)
    batch = chosen_logps.shape[0]
    if rejected_logps.shape[0] != batch:
        raise ValueError(
            f"{who}: chosen_logps {tuple(chosen_logps.shape)} and rejected_logps "
            f"{tuple(rejected_logps.shape)} hold different batch sizes"
        )
    if batch == 0:
        raise ValueError(f"{who}: empty batch (B = 0)")
    for name, tensor in refs:
        if tuple(tensor.shape) != (batch,):
            raise ValueError(f"{who}: {name} must have shape [B] = ({batch},), got {tuple(tensor.shape)}")
    return batch


def _keep(mask: torch.Tensor) -> torch.Tensor:
    return mask if mask.dtype == torch.bool else mask != 0


def _masked_sum(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, R] -> [B] float32 sum over the masked positions (weighted by a float mask); others contribute nothing."""
    values = values.float()
    if mask.dtype != torch.bool:
        values = values * mask.float()
    return torch.where(_keep(mask), values, torch.zeros_like(values)).sum(dim=-1)


def _mask_count(mask: torch.Tensor) -> torch.Tensor:
    """[B, R] -> [B] float32: masked tokens per row, or the sum of a float mask's weights."""
    return _keep(mask).sum(dim=-1).float() if mask.dtype == torch.bool else mask.float().sum(dim=-1)


def _masked_mean(who: str, name: str, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, R] -> [B] float32 (weighted) mean over the masked positions; an empty row is an error naming the pair."""
    counts = _mask_count(mask)
    empty = _keep(mask).sum(dim=-1) == 0
    if bool(empty.any()):
        rows = empty.nonzero().flatten().tolist()
        raise ValueError(f"{who}: {name}_mask selects no token in pair(s) at batch index {rows}")
    return _masked_sum(values, mask) / counts


def _check_positive(who: str, name: str, value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{who}: {name} must be a finite number > 0, got {value!r}")


def _check_nonnegative(who: str, name: str, value: float) -> None:
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{who}: {name} must be a finite number >= 0, got {value!r}")


def _check_clip(who: str, name: str, value: float) -> None:
    # inf passes: an infinite bound is the "no clip" ablation.
    if not value >= 0:
        raise ValueError(f"{who}: {name} must be >= 0 (inf disables the clip), got {value!r}")


def _pair_output(per_pair, chosen_rewards, rejected_rewards, policy_chosen, policy_rejected, extra=None):
    margin = chosen_rewards - rejected_rewards
    metrics = {
        "rewards/chosen": chosen_rewards,
        "rewards/rejected": rejected_rewards,
        "rewards/margin": margin,
        "rewards/accuracy": (margin > 0).float(),
        "logps/chosen": policy_chosen,
        "logps/rejected": policy_rejected,
        **(extra or {}),
    }
    metrics = {name: value.detach() for name, value in metrics.items()}
    return LossOutput(loss=per_pair.mean(), count=float(per_pair.shape[0]), metrics=metrics)


def _logratios(who, chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps):
    """Policy sums [B] and sequence log-ratios log pi/pi_ref [B] for both sides, in float32."""
    _check_pair(
        who, chosen_logps, chosen_mask, rejected_logps, rejected_mask,
        ("ref_chosen_logps", ref_chosen_logps), ("ref_rejected_logps", ref_rejected_logps),
    )
    policy_chosen = _masked_sum(chosen_logps, chosen_mask)
    policy_rejected = _masked_sum(rejected_logps, rejected_mask)
    chosen_logratios = policy_chosen - ref_chosen_logps.detach().float()
    rejected_logratios = policy_rejected - ref_rejected_logps.detach().float()
    return policy_chosen, policy_rejected, chosen_logratios, rejected_logratios


def _mean_margin_loss(who, scale, margin, chosen_logps, chosen_mask, rejected_logps, rejected_mask):
    """SimPO's and SePO's one equation, reference-free: with mean_c, mean_r the mean policy log-prob over each
    side's mask (an empty mask is a ValueError naming the pair),

        L = -log sigmoid(scale * mean_c - scale * mean_r - margin)

    rewards/* = scale * mean (the margin metric does not subtract `margin`); logps/* are sums over the masks."""
    _check_pair(who, chosen_logps, chosen_mask, rejected_logps, rejected_mask)
    reward_c = scale * _masked_mean(who, "chosen", chosen_logps, chosen_mask)
    reward_r = scale * _masked_mean(who, "rejected", rejected_logps, rejected_mask)
    per_pair = -F.logsigmoid(reward_c - reward_r - margin)
    return _pair_output(per_pair, reward_c, reward_r,
                        _masked_sum(chosen_logps, chosen_mask), _masked_sum(rejected_logps, rejected_mask))

