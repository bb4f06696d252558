"""Losses built from the declared ones: a weighted mixture of several losses in one run (TRL's `loss_type=[...]`
with `loss_weights`), and the NLL term on the chosen response that RPO adds to a pairwise loss (`rpo_alpha`).

Both are pure functions of the same inputs the engine passes to a single loss. A mixture is a `LossSpec` made on
demand (`mixture_spec`), not registered: the engine dispatches it like any declared loss.
"""

from __future__ import annotations

import math

from tokensift.losses.core import LOSSES, LossOutput, LossSpec, _masked_mean, engine_inputs, torch


def nll_term(chosen_logps, chosen_mask) -> torch.Tensor:
    """[B] RPO's NLL term per pair (Pang et al. 2024, "Iterative Reasoning Preference Optimization", Eq. 1;
    https://arxiv.org/abs/2404.19733): the chosen response's negative log-likelihood divided by its length,
    -mean_{i : mask_i} logps_i, over the tokens the loss reads (a token selection when one is active)."""
    return -_masked_mean("rpo_alpha", "chosen", chosen_logps, chosen_mask)


def add_nll(output: LossOutput, chosen_logps, chosen_mask, alpha: float) -> LossOutput:
    """A pairwise loss plus alpha times RPO's NLL term, averaged over the pairs like the loss itself:

        L' = L + alpha * mean_b ( -mean_{i : mask_i} chosen_logps[b, i] )

    Logs the unweighted term per pair as "loss/nll" (ORPO's and CPO's own NLL keep their name: "loss/rpo_nll")."""
    if not (alpha >= 0 and math.isfinite(alpha)):
        raise ValueError(f"rpo_alpha must be a finite number >= 0, got {alpha!r}")
    nll = nll_term(chosen_logps, chosen_mask)
    name = "loss/rpo_nll" if "loss/nll" in output.metrics else "loss/nll"
    metrics = {**output.metrics, name: nll.detach()}
    return LossOutput(loss=output.loss + alpha * nll.mean(), count=output.count, metrics=metrics)


def parse_mixture(loss: str, weights) -> tuple[list[str], list[float]]:
    """'dpo,sft' and '1.0,0.2' (or [1.0, 0.2]) -> (['dpo', 'sft'], [1.0, 0.2]); weights default to 1 each (TRL's
    default)."""
    names = [name.strip() for name in str(loss).replace("+", ",").split(",") if name.strip()]
    if weights is None or str(weights).strip() in ("", "[]"):
        values = [1.0] * len(names)
    else:
        items = weights if isinstance(weights, (list, tuple)) else str(weights).strip("[]").split(",")
        try:
            values = [float(w) for w in items if str(w).strip()]
        except ValueError:
            raise ValueError(f"loss_weights must be a comma list of numbers, e.g. 1.0,0.2; got {weights!r}") from None
    if len(values) != len(names):
        raise ValueError(f"loss_weights has {len(values)} weight(s) for {len(names)} loss(es) in loss={loss}")
    return names, values


def mixture_spec(names: list[str], weights: list[float]) -> LossSpec:
    """The LossSpec of sum_k weights[k] * L_k over declared losses (each term's own settings and inputs).

    Terms are pairwise losses averaging over pairs, plus "sft" (TRL's NLL term: its mean over the chosen tokens of
    the micro-batch, as TRL computes it). A term with a live reference (TDPO), one that needs a stage's token
    selection (SePO) or a repeated name is refused. The mixture needs a reference when any term does; each term
    gets only what it declares.
    """
    if len(names) < 2:
        raise ValueError("a mixture needs at least two losses")
    if len(set(names)) != len(names):
        raise ValueError(f"a loss appears twice in the mixture {','.join(names)}")
    specs = []
    for name, weight in zip(names, weights):
        if name not in LOSSES:
            raise KeyError(name)
        spec = LOSSES[name]
        if not (weight >= 0 and math.isfinite(weight)):
            raise ValueError(f"loss_weights: the weight of {name} must be a finite number >= 0, got {weight!r}")
        if spec.reference == "live" or spec.selection == "required" or (spec.pairwise and spec.unit != "pair") \
                or (not spec.pairwise and name != "sft") or spec.data != "paired":
            raise ValueError(f"{name} cannot be a mixture term (terms: pairwise losses on paired data with no or a "
                             "cached reference, and sft)")
        specs.append(spec)
    terms = list(zip(specs, weights))

    def mixture_loss(**inputs) -> LossOutput:
        batch = inputs["chosen_logps"].shape[0]
        total, metrics = 0.0, {}
        for spec, weight in terms:
            if spec.pairwise:
                args = {k: inputs[k] for k in engine_inputs(True, spec.reference)}
                args.update({kw: inputs[s] for s, kw in spec.params.items() if s in inputs})
                args.update({k: inputs[k] for k in spec.pair_inputs if k in inputs})
            else:
                args = {"logps": inputs["chosen_logps"], "mask": inputs["chosen_mask"]}
            out = spec.function(**args)
            total = total + weight * out.loss
            metrics[f"loss/{spec.name}"] = out.loss.detach().float().expand(batch)
            if spec.pairwise:
                for metric, value in out.metrics.items():
                    metrics.setdefault(metric, value)  # the first pairwise term's rewards and log-probs
        return LossOutput(loss=total, count=float(batch), metrics=metrics)

    reference = "cached" if any(s.reference == "cached" for s in specs) else "none"
    settings = {setting: setting for spec in specs for setting in spec.params}
    pair_inputs = tuple(dict.fromkeys(k for spec in specs for k in spec.pair_inputs))
    summary = " + ".join(f"{w:g} x {s.name}" for s, w in terms)
    return LossSpec(",".join(names), mixture_loss, f"mixture: {summary}", reference=reference, params=settings,
                    token_weights=all(s.token_weights for s in specs if s.pairwise), pair_inputs=pair_inputs)


def resolve(loss: str, weights=None) -> LossSpec:
    """The spec of `loss`: a declared name, or a comma list of them (a mixture weighed by `weights`).
    KeyError names an unknown loss; ValueError a bad mixture."""
    names, values = parse_mixture(loss, weights)
    if not names:
        raise KeyError(str(loss))
    for name in names:
        if name not in LOSSES:
            raise KeyError(name)
    if len(names) == 1:
        if weights is not None and values != [1.0]:
            raise ValueError("loss_weights weighs the terms of a mixture (loss=a,b); with one loss leave it unset")
        return LOSSES[names[0]]
    return mixture_spec(names, values)
