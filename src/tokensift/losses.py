"""Preference-optimisation losses as pure functions over per-token log-probs and masks.

The contract with the training engine:

- Per-token tensors are in **label space**: `logps[b, i] = log pi(y_i | x, y_<i)` for response token `i` of
  pair `b`. `mask[b, i]` says which tokens count: bool, or float weights >= 0 (a token selector's soft
  weights: sums become weighted sums, means weighted means divided by the weights' sum; 0/1 floats behave as
  bool). Masked-out positions may hold any value (usually 0); they never reach a result or a gradient,
  because they are dropped with `torch.where`, not multiplied by 0.
- Chosen and rejected tensors have their own widths R_c and R_r. Reference values arrive precomputed as
  sequence sums `[B]` (the reference cache) and are treated as constants (detached).
- Each loss decides its own aggregation: DPO-family losses sum over the mask, length-normalised ones
  (IPO, SimPO, RRHF, SePO) average over it.
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

Longer than our ~400-line aim on purpose: eleven losses, each a short function with its equation, declared beside
one another and sharing the same few helpers, read best in one file, with the check of their declarations.
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


CHOICES = {"reference": ("none", "cached", "live"), "unit": ("pair", "token"), "selection": ("none", "required")}


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


# ------------------------------------------------------------------------------------------------ losses


@register("sft", "supervised fine-tuning: mean NLL of the chosen responses", pairwise=False, unit="token",
          token_weights=False)
def sft_loss(*, logps: torch.Tensor, mask: torch.Tensor) -> LossOutput:
    """Supervised fine-tuning: mean negative log-likelihood over every masked token of the batch.

    logps: [B, R] policy log-probs of the target tokens.   mask: [B, R] which tokens count.

        L = -(1 / N) * sum_{b, i : mask[b, i]} logps[b, i],   N = number of masked tokens (= count)

    A batch with no masked token gives loss 0 (still attached to the graph, zero gradient) and count 0, so a
    count-weighted average over micro-batches ignores it.
    Metrics [B]: "logps/sum", "logps/mean" (0 for a row without tokens), "num_tokens".
    """
    _check_tokens("sft_loss", "logps", "mask", logps, mask)
    sums = _masked_sum(logps, mask)
    keep = _keep(mask)
    tokens = keep.sum(dim=-1).float()
    count = float(keep.sum())  # integer sum: exact at any batch size
    loss = -sums.sum() / max(count, 1.0)
    metrics = {"logps/sum": sums, "logps/mean": sums / tokens.clamp(min=1.0), "num_tokens": tokens}
    return LossOutput(loss=loss, count=count, metrics={k: v.detach() for k, v in metrics.items()})


@register("dpo", "sigmoid DPO on summed log-ratios", reference="cached", params={"beta": "beta"})
def dpo_loss(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps,
             beta: float = 0.1) -> LossOutput:
    """Sigmoid DPO (Rafailov et al. 2023, Eq. 7; https://arxiv.org/abs/2305.18290).

    chosen_logps, chosen_mask: [B, R_c].   rejected_logps, rejected_mask: [B, R_r].
    ref_chosen_logps, ref_rejected_logps: [B] reference sums over the same masks.

        h = (sum_c logps - ref_c) - (sum_r logps - ref_r)
        L = -log sigmoid(beta * h)

    rewards/* = beta * (policy sum - reference sum), as in TRL.
    """
    _check_positive("dpo_loss", "beta", beta)
    policy_c, policy_r, ratio_c, ratio_r = _logratios(
        "dpo_loss", chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps
    )
    per_pair = -F.logsigmoid(beta * (ratio_c - ratio_r))
    return _pair_output(per_pair, beta * ratio_c, beta * ratio_r, policy_c, policy_r)


@register("ipo", "IPO: squared loss on length-normalised log-ratios", reference="cached", params={"beta": "beta"})
def ipo_loss(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps,
             beta: float = 0.1) -> LossOutput:
    """IPO (Azar et al. 2023, Eq. 17; https://arxiv.org/abs/2310.12036), with TRL's length normalisation.

    Shapes as in `dpo_loss`. beta is the paper's tau. n_c, n_r = masked tokens per side (at least 1):

        h = (sum_c logps - ref_c) / n_c - (sum_r logps - ref_r) / n_r
        L = (h - 1 / (2 * beta))^2

    Dividing each side's log-ratio by its length is TRL's choice (confirmed with the IPO authors there); it
    keeps the squared loss from growing with response length. rewards/* = beta * (policy sum - reference sum).
    """
    _check_positive("ipo_loss", "beta", beta)
    policy_c, policy_r, ratio_c, ratio_r = _logratios(
        "ipo_loss", chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps
    )
    length_c = _mask_count(chosen_mask).clamp(min=1.0)
    length_r = _mask_count(rejected_mask).clamp(min=1.0)
    per_pair = (ratio_c / length_c - ratio_r / length_r - 1 / (2 * beta)) ** 2
    return _pair_output(per_pair, beta * ratio_c, beta * ratio_r, policy_c, policy_r)


@register("cdpo", "conservative DPO for noisy labels", reference="cached",
          params={"beta": "beta", "label_smoothing": "label_smoothing"})
def cdpo_loss(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps,
              beta: float = 0.1, label_smoothing: float = 0.1) -> LossOutput:
    """Conservative DPO (Mitchell 2023, "A note on DPO with noisy preferences", https://ericmitchell.ai/cdpo.pdf).

    Shapes as in `dpo_loss`; h as in `dpo_loss`; eps = label_smoothing in [0, 0.5], the assumed probability
    that a label is flipped:

        L = -(1 - eps) * log sigmoid(beta * h) - eps * log sigmoid(-beta * h)

    rewards/* = beta * (policy sum - reference sum).
    """
    _check_positive("cdpo_loss", "beta", beta)
    if not 0 <= label_smoothing <= 0.5:
        raise ValueError(f"cdpo_loss: label_smoothing must lie in [0, 0.5], got {label_smoothing!r}")
    policy_c, policy_r, ratio_c, ratio_r = _logratios(
        "cdpo_loss", chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps
    )
    logits = beta * (ratio_c - ratio_r)
    per_pair = -(1 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)
    return _pair_output(per_pair, beta * ratio_c, beta * ratio_r, policy_c, policy_r)


@register("robust", "robust DPO: unbiased under label noise", reference="cached",
          params={"beta": "beta", "label_smoothing": "label_smoothing"})
def robust_dpo_loss(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps,
                    ref_rejected_logps, beta: float = 0.1, label_smoothing: float = 0.1) -> LossOutput:
    """Robust DPO (Chowdhury et al. 2024, https://arxiv.org/abs/2403.00409), TRL's "robust" loss.

    Shapes as in `dpo_loss`; h as in `dpo_loss`; eps = label_smoothing in [0, 0.5), the flip rate:

        L = ( -(1 - eps) * log sigmoid(beta * h) + eps * log sigmoid(-beta * h) ) / (1 - 2 * eps)

    Unlike cDPO this is an unbiased estimate of the clean-label DPO loss. rewards/* as in `dpo_loss`.
    """
    _check_positive("robust_dpo_loss", "beta", beta)
    if not 0 <= label_smoothing < 0.5:
        raise ValueError(f"robust_dpo_loss: label_smoothing must lie in [0, 0.5), got {label_smoothing!r}")
    policy_c, policy_r, ratio_c, ratio_r = _logratios(
        "robust_dpo_loss", chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps,
        ref_rejected_logps,
    )
    logits = beta * (ratio_c - ratio_r)
    clean = -(1 - label_smoothing) * F.logsigmoid(logits)
    flipped = -label_smoothing * F.logsigmoid(-logits)
    per_pair = (clean - flipped) / (1 - 2 * label_smoothing)
    return _pair_output(per_pair, beta * ratio_c, beta * ratio_r, policy_c, policy_r)


@register("hinge", "SLiC-style hinge on the log-ratio margin", reference="cached", params={"beta": "beta"})
def hinge_loss(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps,
               beta: float = 0.1) -> LossOutput:
    """SLiC-style hinge (Zhao et al. 2023, https://arxiv.org/abs/2305.10425), TRL's "hinge" form.

    Shapes as in `dpo_loss`; h as in `dpo_loss`:   L = max(0, 1 - beta * h)

    rewards/* = beta * (policy sum - reference sum).
    """
    _check_positive("hinge_loss", "beta", beta)
    policy_c, policy_r, ratio_c, ratio_r = _logratios(
        "hinge_loss", chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps
    )
    per_pair = torch.relu(1 - beta * (ratio_c - ratio_r))
    return _pair_output(per_pair, beta * ratio_c, beta * ratio_r, policy_c, policy_r)


@register("simpo", "SimPO: reference-free, mean log-probs with a target margin",
          params={"beta": "beta", "simpo_gamma": "gamma"})
def simpo_loss(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, beta: float = 2.0,
               gamma: float = 0.5) -> LossOutput:
    """SimPO (Meng et al. 2024, Eq. 6; https://arxiv.org/abs/2405.14734). Reference-free.

    chosen_logps, chosen_mask: [B, R_c].   rejected_logps, rejected_mask: [B, R_r].
    mean_c, mean_r = mean policy log-prob over each side's mask (an empty mask is a ValueError):

        L = -log sigmoid(beta * mean_c - beta * mean_r - gamma)

    gamma is the absolute target margin (the official code's gamma_beta_ratio times beta).
    Implicit rewards: rewards/chosen = beta * mean_c, rewards/rejected = beta * mean_r; the margin metric
    does not subtract gamma.
    """
    _check_positive("simpo_loss", "beta", beta)
    _check_nonnegative("simpo_loss", "gamma", gamma)
    return _mean_margin_loss("simpo_loss", beta, gamma, chosen_logps, chosen_mask, rejected_logps, rejected_mask)


@register("rrhf", "RRHF: ranking hinge on mean log-probs plus SFT", params={"rrhf_sft_weight": "sft_weight"})
def rrhf_loss(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, sft_weight: float = 1.0) -> LossOutput:
    """RRHF with two candidates (Yuan et al. 2023, https://arxiv.org/abs/2304.05302). Reference-free.

    Shapes as in `simpo_loss`. p_c, p_r = mean policy log-prob over each side's mask (the paper's
    length-normalised score; an empty mask is a ValueError):

        L = max(0, p_r - p_c) + sft_weight * (-p_c)

    Implicit rewards: rewards/chosen = p_c, rewards/rejected = p_r. Also logs "loss/ranking" and "loss/sft"
    (the unweighted -p_c) per pair.
    """
    _check_nonnegative("rrhf_loss", "sft_weight", sft_weight)
    _check_pair("rrhf_loss", chosen_logps, chosen_mask, rejected_logps, rejected_mask)
    score_c = _masked_mean("rrhf_loss", "chosen", chosen_logps, chosen_mask)
    score_r = _masked_mean("rrhf_loss", "rejected", rejected_logps, rejected_mask)
    ranking = torch.relu(score_r - score_c)
    per_pair = ranking + sft_weight * -score_c
    extra = {"loss/ranking": ranking, "loss/sft": -score_c}
    return _pair_output(per_pair, score_c, score_r,
                        _masked_sum(chosen_logps, chosen_mask), _masked_sum(rejected_logps, rejected_mask), extra)


@register("tdpo", "token-level DPO: margin plus sequential KL to a live reference", reference="live",
          params={"beta": "beta", "tdpo_alpha": "alpha", "tdpo_variant": "variant"}, token_weights=False)
def tdpo_loss(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps,
              chosen_kl, rejected_kl, beta: float = 0.1, alpha: float = 0.5, variant: int = 2) -> LossOutput:
    """Token-level DPO (Zeng et al. ICML 2024, https://arxiv.org/abs/2404.11999).

    Shapes as in `dpo_loss`, plus chosen_kl [B, R_c] and rejected_kl [B, R_r]: per position
    KL(pi_ref(. | s_t) || pi(. | s_t)) over the full vocabulary. Sequence KLs are masked sums:
    D_c = sum_c chosen_kl, D_r = sum_r rejected_kl. With h as in `dpo_loss`:

        TDPO1:  u = h - (D_r - D_c)
        TDPO2:  u = h - alpha * (D_r - sg(D_c))        (sg = stop-gradient)
        L = -log sigmoid(beta * u)

    This is the reference TDPO code's convention, the paper's objectives with u = beta * h and
    delta = beta * (D_r - D_c): beta scales the whole bracket, alpha only the KL difference (alpha is unused
    by TDPO1). TDPO2 passes no gradient through chosen_kl.
    rewards/* = beta * (policy sum - reference sum), like DPO (the reference code logs
    beta * (log-ratio + KL) instead); "kl/chosen" and "kl/rejected" log D_c and D_r.
    """
    who = "tdpo_loss"
    _check_positive(who, "beta", beta)
    if variant not in (1, 2):
        raise ValueError(f"{who}: variant must be 1 (TDPO1) or 2 (TDPO2), got {variant!r}")
    _check_nonnegative(who, "alpha", alpha)
    if chosen_kl.shape != chosen_logps.shape or rejected_kl.shape != rejected_logps.shape:
        raise ValueError(
            f"{who}: chosen_kl {tuple(chosen_kl.shape)} / rejected_kl {tuple(rejected_kl.shape)} must match "
            f"chosen_logps {tuple(chosen_logps.shape)} / rejected_logps {tuple(rejected_logps.shape)}"
        )
    policy_c, policy_r, ratio_c, ratio_r = _logratios(
        who, chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps
    )
    kl_c = _masked_sum(chosen_kl, chosen_mask)
    kl_r = _masked_sum(rejected_kl, rejected_mask)
    if variant == 1:
        logits = (ratio_c - ratio_r) - (kl_r - kl_c)
    else:
        logits = (ratio_c - ratio_r) - alpha * (kl_r - kl_c.detach())
    per_pair = -F.logsigmoid(beta * logits)
    extra = {"kl/chosen": kl_c, "kl/rejected": kl_r}
    return _pair_output(per_pair, beta * ratio_c, beta * ratio_r, policy_c, policy_r, extra)


@register("sepo", "SePO: reference-free, mean log-prob over the oracle's key tokens",
          params={"sepo_gamma": "gamma", "sepo_margin": "margin"}, selection="required")
def sepo_loss(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, gamma: float = 1.0,
              margin: float = 0.0) -> LossOutput:
    """SePO policy objective (Yang et al., https://arxiv.org/abs/2408.13518; specs/sepo.md section 2.8).

    chosen_logps: [B, R_c], chosen_mask: [B, R_c] the selected key tokens (top-k% by oracle score).
    rejected_logps: [B, R_r], rejected_mask: [B, R_r] the selected key tokens (bottom-k% by oracle score).
    Reference-free:

        u(y, I) = gamma * mean_{i : I_i} logps_i          (gamma / (|y| k%) * sum_i I_i log pi(y_i | q, y_<i))
        L = -log sigmoid(u(y_w, I_w) - u(y_l, I_l) - margin)

    gamma = 1, margin = 0 is the official code; with full response masks this is SimPO(beta=1, gamma=0).
    A pair whose selection is empty on a side is a ValueError naming the batch index (the selection step
    keeps at least one token per response). Implicit rewards: rewards/chosen = u(y_w, I_w),
    rewards/rejected = u(y_l, I_l); logps/* are sums over the selected tokens.
    """
    _check_positive("sepo_loss", "gamma", gamma)
    _check_nonnegative("sepo_loss", "margin", margin)
    return _mean_margin_loss("sepo_loss", gamma, margin, chosen_logps, chosen_mask, rejected_logps, rejected_mask)


@register("tso", "TSO dual-clip DPO", reference="cached",
          params={"beta": "beta", "clip_chosen": "clip_chosen", "clip_rejected": "clip_rejected",
                  "clip_mode": "mode", "clip_margin_low": "clip_margin_low",
                  "clip_margin_high": "clip_margin_high"}, pair_inputs=("target_margin",))
def tso_loss(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps,
             beta: float = 0.1, clip_chosen: float = 2.0, clip_rejected: float = 2.0, mode: str = "per_reward",
             clip_margin_low: float | None = None, clip_margin_high: float | None = None,
             target_margin: torch.Tensor | None = None) -> LossOutput:
    """TSO dual-clip DPO (Chen et al. 2024, https://arxiv.org/abs/2409.02118; specs/tso.md section 3.6).

    Shapes as in `dpo_loss`. r_w = beta * (sum_c logps - ref_c), r_l = beta * (sum_r logps - ref_r).

        mode "per_reward" (default):  z = min(r_w, c_w) - max(r_l, -c_l)
        mode "margin":                z = clamp(r_w - r_l, -c_low, +c_high)
        L = -log sigmoid(z - m)

    m = target_margin: an optional per-pair [B] target margin (constant, >= 0), the "scaled" of TSO's name in
    the spec's reading (ii): it grows with the two responses' distance in the model matrix (docs/tso.md).
    None: m = 0. The clip bounds z, not z - m: a pair clipped on both sides has z = c_w + c_l, so a margin
    above that leaves it a loss it cannot lower (and no gradient), like any clipped pair. "rewards/target_margin"
    logs m.

    c_w = clip_chosen, c_l = clip_rejected (used only by "per_reward"; inf disables a side);
    c_low = clip_margin_low, c_high = clip_margin_high (only for "margin"; None leaves that side open, at
    least one is required). Clipping is a clamp, so a term past its bound gets zero gradient. The formula is
    the spec's primary reading (reading B for "margin"); the paper's exact form was not available.
    rewards/* are the unclipped r_w, r_l. Indicators per pair (mean = fraction clipped):
    "clip/chosen_fraction" (r_w > c_w), "clip/rejected_fraction" (r_l < -c_l); in margin mode
    "clip/margin_low_fraction" (r_w - r_l < -c_low), "clip/margin_high_fraction" (r_w - r_l > c_high).
    """
    who = "tso_loss"
    _check_positive(who, "beta", beta)
    policy_c, policy_r, ratio_c, ratio_r = _logratios(
        who, chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps
    )
    reward_c, reward_r = beta * ratio_c, beta * ratio_r
    if mode == "per_reward":
        if clip_margin_low is not None or clip_margin_high is not None:
            raise ValueError(f"{who}: clip_margin_low/clip_margin_high apply only to mode='margin'")
        _check_clip(who, "clip_chosen", clip_chosen)
        _check_clip(who, "clip_rejected", clip_rejected)
        z = reward_c.clamp(max=clip_chosen) - reward_r.clamp(min=-clip_rejected)
        extra = {
            "clip/chosen_fraction": (reward_c > clip_chosen).float(),
            "clip/rejected_fraction": (reward_r < -clip_rejected).float(),
        }
    elif mode == "margin":
        if clip_margin_low is None and clip_margin_high is None:
            raise ValueError(f"{who}: mode='margin' needs clip_margin_low and/or clip_margin_high")
        low = -math.inf if clip_margin_low is None else -clip_margin_low
        high = math.inf if clip_margin_high is None else clip_margin_high
        _check_clip(who, "clip_margin_low", -low)
        _check_clip(who, "clip_margin_high", high)
        reward_margin = reward_c - reward_r
        z = reward_margin.clamp(min=low, max=high)
        extra = {
            "clip/margin_low_fraction": (reward_margin < low).float(),
            "clip/margin_high_fraction": (reward_margin > high).float(),
        }
    else:
        raise ValueError(f"{who}: mode must be 'per_reward' or 'margin', got {mode!r}")
    if target_margin is not None:
        if tuple(target_margin.shape) != tuple(z.shape):
            raise ValueError(f"{who}: target_margin must have shape [B] = {tuple(z.shape)}, got "
                             f"{tuple(target_margin.shape)}")
        margin = target_margin.detach().float()
        z = z - margin
        extra["rewards/target_margin"] = margin
    per_pair = -F.logsigmoid(z)
    return _pair_output(per_pair, reward_c, reward_r, policy_c, policy_r, extra)


# Derived views of LOSSES, for callers that only need the names (pairwise losses; SFT is neither).
REFERENCE_FREE = tuple(name for name, spec in LOSSES.items() if spec.pairwise and not spec.needs_reference)
NEEDS_REFERENCE = tuple(name for name, spec in LOSSES.items() if spec.needs_reference)
