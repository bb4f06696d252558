"""Hand-computed checks of tokensift.losses (the losses added for TRL users: tests/test_losses_added.py).

Every expected number is worked out in the comments and computed with `math` on plain floats, never by the
code under test. The shared batch (B = 2) holds garbage at masked-out positions to prove masking works:

    chosen_logps   [[-1.0, -2.0,  99.0       ],   mask [[1, 1, 0   ],   sums   c = [-3.0, -2.0]
                    [-0.5,  7.0,  -1.5       ]]         [1, 0, 1   ]]   means    [-1.5, -1.0]
    rejected_logps [[-2.0, -1.0,  -3.0,  55.0],   mask [[1, 1, 1, 0],   sums   r = [-6.0, -4.0]
                    [-4.0, 123.0, -456.0, 0.0]]         [1, 0, 0, 0]]   means    [-2.0, -4.0]
    ref_chosen   = [-2.5, -3.0]  ->  chosen log-ratio   lc = [-3.0 + 2.5, -2.0 + 3.0] = [-0.5, 1.0]
    ref_rejected = [-5.0, -6.0]  ->  rejected log-ratio lr = [-6.0 + 5.0, -4.0 + 6.0] = [-1.0, 2.0]
    h = lc - lr = [0.5, -1.0]
"""

from __future__ import annotations

import math

import pytest
import torch

from tokensift import losses as L

TOL = 1e-6


def nls(x: float) -> float:
    """-log sigmoid(x) = log(1 + exp(-x)) on a Python float."""
    return math.log1p(math.exp(-x))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def batch(dtype=torch.float32, grad=False, bool_masks=False):
    chosen = torch.tensor([[-1.0, -2.0, 99.0], [-0.5, 7.0, -1.5]], dtype=dtype, requires_grad=grad)
    rejected = torch.tensor([[-2.0, -1.0, -3.0, 55.0], [-4.0, 123.0, -456.0, 0.0]], dtype=dtype, requires_grad=grad)
    chosen_mask = torch.tensor([[1, 1, 0], [1, 0, 1]], dtype=dtype)
    rejected_mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=dtype)
    if bool_masks:
        chosen_mask, rejected_mask = chosen_mask.bool(), rejected_mask.bool()
    return dict(chosen_logps=chosen, chosen_mask=chosen_mask, rejected_logps=rejected, rejected_mask=rejected_mask)


def ref_batch(**kwargs):
    b = batch(**kwargs)
    b.update(ref_chosen_logps=torch.tensor([-2.5, -3.0]), ref_rejected_logps=torch.tensor([-5.0, -6.0]))
    return b


def close(tensor, expected) -> bool:
    values = tensor.detach().double().flatten().tolist()
    expected = expected if isinstance(expected, list) else [expected]
    # relative above 1: float32 carries ~7 significant digits, so 1e-6 absolute is too tight for e.g. 33.2
    return len(values) == len(expected) and all(abs(a - b) <= TOL * max(1.0, abs(b)) for a, b in zip(values, expected))


# ----------------------------------------------------------------------------------------------- SFT


def test_sft_mean_over_masked_tokens():
    # chosen side as an SFT batch: NLL = 1 + 2 (row 0) + 0.5 + 1.5 (row 1) = 5 over 4 tokens -> 1.25
    b = batch()
    out = L.sft_loss(logps=b["chosen_logps"], mask=b["chosen_mask"])
    assert close(out.loss, 1.25) and out.count == 4.0
    assert close(out.metrics["logps/sum"], [-3.0, -2.0])
    assert close(out.metrics["logps/mean"], [-1.5, -1.0])
    assert close(out.metrics["num_tokens"], [2.0, 2.0])


def test_sft_count_weighting_matches_full_batch():
    # micro-batches weighted by count: (3 * 2 + 2 * 2) / 4 = 1.25, the full-batch mean
    b = batch()
    rows = [L.sft_loss(logps=b["chosen_logps"][i : i + 1], mask=b["chosen_mask"][i : i + 1]) for i in range(2)]
    weighted = sum(o.loss.item() * o.count for o in rows) / sum(o.count for o in rows)
    assert abs(weighted - 1.25) <= TOL


def test_sft_empty_mask_gives_zero_loss_and_count():
    logps = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    out = L.sft_loss(logps=logps, mask=torch.zeros(1, 2))
    out.loss.backward()
    assert out.loss.item() == 0.0 and out.count == 0.0
    assert torch.equal(logps.grad, torch.zeros(1, 2))


# ------------------------------------------------------------------------------------- DPO family


def test_dpo_value_and_metrics():
    # beta = 0.1: beta*h = [0.05, -0.1]; loss = (nls(0.05) + nls(-0.1)) / 2
    out = L.dpo_loss(**ref_batch(), beta=0.1)
    assert close(out.loss, (nls(0.05) + nls(-0.1)) / 2) and out.count == 2.0
    m = out.metrics
    assert close(m["rewards/chosen"], [-0.05, 0.1]) and close(m["rewards/rejected"], [-0.1, 0.2])
    assert close(m["rewards/margin"], [0.05, -0.1]) and close(m["rewards/accuracy"], [1.0, 0.0])
    assert close(m["logps/chosen"], [-3.0, -2.0]) and close(m["logps/rejected"], [-6.0, -4.0])
    assert all(v.shape == (2,) and not v.requires_grad for v in m.values())


def test_dpo_gradient_only_on_masked_tokens():
    # dL/dlogps_c[b, i] = -(1/2) * beta * sigmoid(-beta*h_b) on masked tokens, 0 elsewhere
    b = ref_batch(grad=True)
    L.dpo_loss(**b, beta=0.1).loss.backward()
    g0, g1 = -0.5 * 0.1 * sigmoid(-0.05), -0.5 * 0.1 * sigmoid(0.1)
    assert close(b["chosen_logps"].grad, [g0, g0, 0.0, g1, 0.0, g1])
    assert close(b["rejected_logps"].grad, [-g0, -g0, -g0, 0.0, -g1, 0.0, 0.0, 0.0])


def test_garbage_at_masked_positions_changes_nothing():
    b, other = ref_batch(bool_masks=True), ref_batch()
    other["chosen_logps"] = torch.where(other["chosen_mask"].bool(), other["chosen_logps"], torch.tensor(-3e38))
    other["rejected_logps"] = torch.where(other["rejected_mask"].bool(), other["rejected_logps"], torch.tensor(1e30))
    assert L.dpo_loss(**b).loss.item() == L.dpo_loss(**other).loss.item()


def test_bf16_inputs_reduce_in_float32():
    # every value above is exact in bf16, so the result equals the float32 one bit for bit
    b16 = ref_batch(dtype=torch.bfloat16, grad=True)
    out = L.dpo_loss(**b16)
    assert out.loss.dtype == torch.float32 and out.metrics["logps/chosen"].dtype == torch.float32
    assert out.loss.item() == L.dpo_loss(**ref_batch()).loss.item()
    out.loss.backward()
    assert b16["chosen_logps"].grad.dtype == torch.bfloat16


def test_ipo_value_uses_per_side_length():
    # lengths n_c = [2, 2], n_r = [3, 1]; h_ipo = lc/n_c - lr/n_r = [-0.25 + 1/3, 0.5 - 2.0]
    # loss = mean((h_ipo - 1/(2*0.1))^2) = mean((h_ipo - 5)^2)
    h = [-0.25 + 1.0 / 3.0, 0.5 - 2.0]
    out = L.ipo_loss(**ref_batch(), beta=0.1)
    assert close(out.loss, ((h[0] - 5.0) ** 2 + (h[1] - 5.0) ** 2) / 2)
    assert close(out.metrics["rewards/chosen"], [-0.05, 0.1])


def test_cdpo_value():
    # eps = 0.1: -(0.9) log s(bh) - 0.1 log s(-bh) per pair, bh = [0.05, -0.1]
    per = [0.9 * nls(x) + 0.1 * nls(-x) for x in (0.05, -0.1)]
    out = L.cdpo_loss(**ref_batch(), beta=0.1, label_smoothing=0.1)
    assert close(out.loss, sum(per) / 2)


def test_robust_value():
    # (-(1-eps) log s(bh) + eps log s(-bh)) / (1 - 2 eps), eps = 0.2: (0.8 nls(x) - 0.2 nls(-x)) / 0.6
    per = [(0.8 * nls(x) - 0.2 * nls(-x)) / 0.6 for x in (0.05, -0.1)]
    out = L.robust_dpo_loss(**ref_batch(), beta=0.1, label_smoothing=0.2)
    assert close(out.loss, sum(per) / 2)


def test_robust_with_zero_smoothing_is_dpo():
    assert close(L.robust_dpo_loss(**ref_batch(), label_smoothing=0.0).loss, (nls(0.05) + nls(-0.1)) / 2)


@pytest.mark.parametrize("eps", [0.5, 0.7, -0.1])
def test_robust_rejects_smoothing_outside_range(eps):
    with pytest.raises(ValueError, match=r"\[0, 0.5\)"):
        L.robust_dpo_loss(**ref_batch(), label_smoothing=eps)


def test_robust_accepts_smoothing_just_below_half():
    assert math.isfinite(L.robust_dpo_loss(**ref_batch(), label_smoothing=0.49).loss.item())


def test_hinge_value_and_zero_gradient_past_the_hinge():
    # beta = 4: 1 - 4h = [1 - 2, 1 + 4] -> relu = [0, 5], mean 2.5; pair 0 is past the hinge: no gradient
    b = ref_batch(grad=True)
    out = L.hinge_loss(**b, beta=4.0)
    out.loss.backward()
    assert close(out.loss, 2.5)
    assert torch.equal(b["chosen_logps"].grad[0], torch.zeros(3))
    assert close(b["chosen_logps"].grad[1], [-0.5 * 4.0, 0.0, -0.5 * 4.0])


# ------------------------------------------------------------------------------------ reference-free


def test_simpo_value_and_implicit_rewards():
    # beta = 2, gamma = 0.5: z = 2*mean_c - 2*mean_r - 0.5 = [-3 + 4 - 0.5, -2 + 8 - 0.5] = [0.5, 5.5]
    out = L.simpo_loss(**batch(), beta=2.0, gamma=0.5)
    assert close(out.loss, (nls(0.5) + nls(5.5)) / 2)
    assert close(out.metrics["rewards/chosen"], [-3.0, -2.0]) and close(out.metrics["rewards/rejected"], [-4.0, -8.0])
    assert close(out.metrics["rewards/margin"], [1.0, 6.0]) and close(out.metrics["rewards/accuracy"], [1.0, 1.0])
    assert close(out.metrics["logps/chosen"], [-3.0, -2.0])


def test_rrhf_value_with_active_ranking_term():
    # swap sides so the ranking term fires: p_c = [-2, -4], p_r = [-1.5, -1]
    # ranking = relu(p_r - p_c) = [0.5, 3.0]; sft = -p_c = [2, 4]; sft_weight 0.5 -> [1.5, 5.0], mean 3.25
    b = batch()
    out = L.rrhf_loss(chosen_logps=b["rejected_logps"], chosen_mask=b["rejected_mask"],
                      rejected_logps=b["chosen_logps"], rejected_mask=b["chosen_mask"], sft_weight=0.5)
    assert close(out.loss, 3.25)
    assert close(out.metrics["loss/ranking"], [0.5, 3.0]) and close(out.metrics["loss/sft"], [2.0, 4.0])
    assert close(out.metrics["rewards/accuracy"], [0.0, 0.0])


def test_rrhf_default_weight_inactive_ranking():
    # p_c = [-1.5, -1], p_r = [-2, -4]: ranking 0; sft = [1.5, 1.0]; mean 1.25
    assert close(L.rrhf_loss(**batch()).loss, 1.25)


# ------------------------------------------------------------------------------------------------ TDPO


def tdpo_batch(grad=False):
    b = ref_batch(grad=grad)
    # sequence KLs (masked sums): D_c = [0.1 + 0.2, 0.3 + 0.4] = [0.3, 0.7], D_r = [0.05+0.05+0.1, 0.5] = [0.2, 0.5]
    b["chosen_kl"] = torch.tensor([[0.1, 0.2, 50.0], [0.3, 9.0, 0.4]], requires_grad=grad)
    b["rejected_kl"] = torch.tensor([[0.05, 0.05, 0.1, 77.0], [0.5, 8.0, 8.0, 8.0]], requires_grad=grad)
    return b


def test_tdpo1_value():
    # u = h - (D_r - D_c) = [0.5 + 0.1, -1.0 + 0.2] = [0.6, -0.8]; loss mean nls(0.1 * u)
    out = L.tdpo_loss(**tdpo_batch(), beta=0.1, variant=1)
    assert close(out.loss, (nls(0.06) + nls(-0.08)) / 2)
    assert close(out.metrics["kl/chosen"], [0.3, 0.7]) and close(out.metrics["kl/rejected"], [0.2, 0.5])
    assert close(out.metrics["rewards/chosen"], [-0.05, 0.1])


def test_tdpo2_value_and_no_gradient_through_chosen_kl():
    # u = h - 0.5 (D_r - D_c) = [0.5 + 0.05, -1.0 + 0.1] = [0.55, -0.9]
    # dL/dD_r[b] = (1/2) * sigmoid(-beta u_b) * beta * alpha, on masked rejected positions only
    b = tdpo_batch(grad=True)
    out = L.tdpo_loss(**b, beta=0.1, alpha=0.5, variant=2)
    assert close(out.loss, (nls(0.055) + nls(-0.09)) / 2)
    out.loss.backward()
    assert b["chosen_kl"].grad is None or torch.count_nonzero(b["chosen_kl"].grad) == 0
    g0, g1 = 0.5 * sigmoid(-0.055) * 0.05, 0.5 * sigmoid(0.09) * 0.05
    assert close(b["rejected_kl"].grad, [g0, g0, g0, 0.0, g1, 0.0, 0.0, 0.0])


def test_tdpo1_passes_gradient_to_chosen_kl():
    # dL/dD_c[b] = -(1/2) * sigmoid(-beta u_b) * beta with u = [0.6, -0.8]
    b = tdpo_batch(grad=True)
    L.tdpo_loss(**b, beta=0.1, variant=1).loss.backward()
    g0, g1 = -0.5 * sigmoid(-0.06) * 0.1, -0.5 * sigmoid(0.08) * 0.1
    assert close(b["chosen_kl"].grad, [g0, g0, 0.0, g1, 0.0, g1])


def test_tdpo_rejects_bad_variant_and_kl_shape():
    with pytest.raises(ValueError, match="variant"):
        L.tdpo_loss(**tdpo_batch(), variant=3)
    b = tdpo_batch()
    b["chosen_kl"] = b["chosen_kl"][:, :2]
    with pytest.raises(ValueError, match=r"\(2, 2\)"):
        L.tdpo_loss(**b)


# ------------------------------------------------------------------------------------------------ SePO


def test_sepo_value_on_selected_tokens():
    # selection: chosen keeps [[-1.0], [-1.5]] -> means [-1.0, -1.5]; rejected keeps [[-3.0], [-4.0]] -> [-3, -4]
    # gamma = 2, margin = 0.1: z = 2 * (mean_c - mean_r) - 0.1 = [4 - 0.1, 5 - 0.1] = [3.9, 4.9]
    b = batch()
    b["chosen_mask"] = torch.tensor([[True, False, False], [False, False, True]])
    b["rejected_mask"] = torch.tensor([[False, False, True, False], [True, False, False, False]])
    out = L.sepo_loss(**b, gamma=2.0, margin=0.1)
    assert close(out.loss, (nls(3.9) + nls(4.9)) / 2)
    assert close(out.metrics["rewards/chosen"], [-2.0, -3.0]) and close(out.metrics["rewards/rejected"], [-6.0, -8.0])
    assert close(out.metrics["logps/chosen"], [-1.0, -1.5])


def test_sepo_with_full_masks_equals_simpo_beta1_gamma0_including_gradients():
    a, b = batch(grad=True), batch(grad=True)
    sepo = L.sepo_loss(**a, gamma=1.0, margin=0.0)
    simpo = L.simpo_loss(**b, beta=1.0, gamma=0.0)
    # by hand: z = mean_c - mean_r = [0.5, 3.0]
    assert close(sepo.loss, (nls(0.5) + nls(3.0)) / 2)
    assert torch.equal(sepo.loss, simpo.loss)
    sepo.loss.backward()
    simpo.loss.backward()
    assert torch.equal(a["chosen_logps"].grad, b["chosen_logps"].grad)
    assert torch.equal(a["rejected_logps"].grad, b["rejected_logps"].grad)
    for name, value in sepo.metrics.items():
        assert torch.equal(value, simpo.metrics[name]), name


def test_sepo_empty_selection_names_the_pair():
    b = batch()
    b["rejected_mask"] = torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 0]])
    with pytest.raises(ValueError, match=r"rejected_mask.*batch index \[1\]"):
        L.sepo_loss(**b)


# ------------------------------------------------------------------------------------------------- TSO


def test_tso_per_reward_value_fractions_and_clipped_side_gradients():
    # beta = 1 so rewards are the log-ratios: r_w = [-0.5, 1.0], r_l = [-1.0, 2.0]
    # c_w = 0.8 clips r_w[1] to 0.8; c_l = 0.7 clips r_l[0] to -0.7
    # z = [-0.5 + 0.7, 0.8 - 2.0] = [0.2, -1.2]
    b = ref_batch(grad=True)
    out = L.tso_loss(**b, beta=1.0, clip_chosen=0.8, clip_rejected=0.7)
    assert close(out.loss, (nls(0.2) + nls(-1.2)) / 2)
    assert close(out.metrics["clip/chosen_fraction"], [0.0, 1.0])
    assert close(out.metrics["clip/rejected_fraction"], [1.0, 0.0])
    assert close(out.metrics["rewards/chosen"], [-0.5, 1.0])  # unclipped
    out.loss.backward()
    # clipped sides get exactly zero gradient; the others get -(1/2) sigmoid(-z) (chosen), +(1/2) sigmoid(-z) (rejected)
    gc, gr = -0.5 * sigmoid(-0.2), 0.5 * sigmoid(1.2)
    assert close(b["chosen_logps"].grad, [gc, gc, 0.0, 0.0, 0.0, 0.0])
    assert close(b["rejected_logps"].grad, [0.0, 0.0, 0.0, 0.0, gr, 0.0, 0.0, 0.0])


def test_tso_margin_mode_value_and_fractions():
    # beta = 1: margin = r_w - r_l = [0.5, -1.0]; low = 2.0, high = 0.3 -> z = [0.3, -1.0]
    b = ref_batch(grad=True)
    out = L.tso_loss(**b, beta=1.0, mode="margin", clip_margin_low=2.0, clip_margin_high=0.3)
    assert close(out.loss, (nls(0.3) + nls(-1.0)) / 2)
    assert close(out.metrics["clip/margin_high_fraction"], [1.0, 0.0])
    assert close(out.metrics["clip/margin_low_fraction"], [0.0, 0.0])
    out.loss.backward()
    g1 = -0.5 * sigmoid(1.0)  # only pair 1 is inside the clamp
    assert close(b["chosen_logps"].grad, [0.0, 0.0, 0.0, g1, 0.0, g1])


def test_tso_margin_low_clip_counts_pairs():
    # low = 0.6: margin[1] = -1.0 < -0.6 -> clipped to -0.6; high open: z = [0.5, -0.6]
    out = L.tso_loss(**ref_batch(), beta=1.0, mode="margin", clip_margin_low=0.6)
    assert close(out.loss, (nls(0.5) + nls(-0.6)) / 2)
    assert close(out.metrics["clip/margin_low_fraction"], [0.0, 1.0])


def test_tso_scaled_margin_per_pair_value_and_gradients():
    # The per_reward example above (z = [0.2, -1.2]) with target margins m = [0.3, 0.0] (scaled margin, per pair):
    # z - m = [-0.1, -1.2]; pair 1 has no margin and is unchanged.
    b = ref_batch(grad=True)
    margin = torch.tensor([0.3, 0.0])
    out = L.tso_loss(**b, beta=1.0, clip_chosen=0.8, clip_rejected=0.7, target_margin=margin)
    assert close(out.loss, (nls(-0.1) + nls(-1.2)) / 2)
    assert close(out.metrics["rewards/target_margin"], [0.3, 0.0])
    assert close(out.metrics["rewards/margin"], [0.5, -1.0])  # the reward margin itself does not subtract m
    out.loss.backward()
    gc = -0.5 * sigmoid(0.1)  # pair 0's chosen side is unclipped: -(1/2) sigmoid(-(z - m))
    assert close(b["chosen_logps"].grad, [gc, gc, 0.0, 0.0, 0.0, 0.0])
    # a zero margin for every pair is exactly no margin
    plain = L.tso_loss(**ref_batch(), beta=1.0, clip_chosen=0.8, clip_rejected=0.7)
    zero = L.tso_loss(**ref_batch(), beta=1.0, clip_chosen=0.8, clip_rejected=0.7, target_margin=torch.zeros(2))
    assert close(zero.loss, plain.loss)
    with pytest.raises(ValueError, match=r"target_margin must have shape \[B\]"):
        L.tso_loss(**ref_batch(), target_margin=torch.zeros(3))


def test_tso_without_clipping_is_dpo():
    out = L.tso_loss(**ref_batch(), beta=0.1, clip_chosen=math.inf, clip_rejected=math.inf)
    assert close(out.loss, (nls(0.05) + nls(-0.1)) / 2)


def test_tso_argument_validation():
    with pytest.raises(ValueError, match="mode"):
        L.tso_loss(**ref_batch(), mode="both")
    with pytest.raises(ValueError, match="clip_margin"):
        L.tso_loss(**ref_batch(), mode="margin")
    with pytest.raises(ValueError, match="only to mode='margin'"):
        L.tso_loss(**ref_batch(), clip_margin_high=1.0)
    with pytest.raises(ValueError, match="clip_chosen"):
        L.tso_loss(**ref_batch(), clip_chosen=-1.0)


# ------------------------------------------------------------------------------------- validation


def test_pair_count_weighting_matches_full_batch():
    # per-pair losses nls(0.05), nls(-0.1): micro-batches of 1 weighted by count equal the batch of 2
    b = ref_batch()
    outs = [L.dpo_loss(**{k: v[i : i + 1] for k, v in b.items()}) for i in range(2)]
    weighted = sum(o.loss.item() * o.count for o in outs) / sum(o.count for o in outs)
    assert abs(weighted - (nls(0.05) + nls(-0.1)) / 2) <= TOL


def test_shape_errors_name_the_shapes():
    b = ref_batch()
    b["rejected_logps"], b["rejected_mask"] = b["rejected_logps"][:1], b["rejected_mask"][:1]
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(1, 4\)"):
        L.dpo_loss(**b)
    b = ref_batch()
    b["chosen_mask"] = b["chosen_mask"][:, :2]
    with pytest.raises(ValueError, match=r"\(2, 2\).*\(2, 3\)"):
        L.ipo_loss(**b)
    b = ref_batch()
    b["ref_rejected_logps"] = torch.zeros(3)
    with pytest.raises(ValueError, match=r"ref_rejected_logps.*\(3,\)"):
        L.hinge_loss(**b)
    with pytest.raises(ValueError, match=r"\[B, R\]"):
        L.sft_loss(logps=torch.zeros(3), mask=torch.ones(3))


@pytest.mark.parametrize(
    "call",
    [
        lambda: L.dpo_loss(**ref_batch(), beta=0.0),
        lambda: L.cdpo_loss(**ref_batch(), label_smoothing=0.6),
        lambda: L.simpo_loss(**batch(), beta=-1.0),
        lambda: L.rrhf_loss(**batch(), sft_weight=-0.1),
        lambda: L.tdpo_loss(**tdpo_batch(), alpha=float("nan")),
        lambda: L.sepo_loss(**batch(), gamma=0.0),
        lambda: L.tso_loss(**ref_batch(), beta=float("inf")),
    ],
)
def test_bad_hyperparameters_raise(call):
    with pytest.raises(ValueError):
        call()


def test_sepo_and_simpo_name_themselves_in_their_errors():
    b = batch()
    b["chosen_mask"] = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"^simpo_loss: chosen_mask selects no token in pair\(s\) at batch index \[0"):
        L.simpo_loss(**b)
    with pytest.raises(ValueError, match=r"^sepo_loss: chosen_mask selects no token"):
        L.sepo_loss(**b)
    with pytest.raises(ValueError, match=r"^simpo_loss: gamma must be a finite number >= 0"):
        L.simpo_loss(**batch(), gamma=-1.0)
    with pytest.raises(ValueError, match=r"^sepo_loss: margin must be a finite number >= 0"):
        L.sepo_loss(**batch(), margin=-1.0)


# ----------------------------------------------------------------------------------------- declarations

# Each built-in loss and its declaration: (reference, pairwise, unit, selection, token_weights, params, pair_inputs).
# The registry is open: a loss added by docs/contributing.md's recipe joins it, and every test here still holds.
BUILT_IN = {
    "sft": ("none", False, "token", "none", False, {}, ()),
    "dpo": ("cached", True, "pair", "none", True, {"beta": "beta"}, ()),
    "ipo": ("cached", True, "pair", "none", True, {"beta": "beta"}, ()),
    "cdpo": ("cached", True, "pair", "none", True, {"beta": "beta", "label_smoothing": "label_smoothing"}, ()),
    "robust": ("cached", True, "pair", "none", True, {"beta": "beta", "label_smoothing": "label_smoothing"}, ()),
    "hinge": ("cached", True, "pair", "none", True, {"beta": "beta"}, ()),
    "simpo": ("none", True, "pair", "none", True, {"beta": "beta", "simpo_gamma": "gamma"}, ()),
    "rrhf": ("none", True, "pair", "none", True, {"rrhf_sft_weight": "sft_weight"}, ()),
    "tdpo": ("live", True, "pair", "none", False, {"beta": "beta", "tdpo_alpha": "alpha", "tdpo_variant": "variant"},
             ()),
    "sepo": ("none", True, "pair", "required", True, {"sepo_gamma": "gamma", "sepo_margin": "margin"}, ()),
    "tso": ("cached", True, "pair", "none", True,
            {"beta": "beta", "clip_chosen": "clip_chosen", "clip_rejected": "clip_rejected", "clip_mode": "mode",
             "clip_margin_low": "clip_margin_low", "clip_margin_high": "clip_margin_high"}, ("target_margin",)),
    "sigmoid_norm": ("cached", True, "pair", "none", True, {"beta": "beta"}, ()),
    "exo_pair": ("cached", True, "pair", "none", True, {"beta": "beta", "label_smoothing": "epsilon"}, ()),
    "discopop": ("cached", True, "pair", "none", True, {"beta": "beta", "discopop_tau": "tau"}, ()),
    "aot": ("cached", True, "pair", "none", True, {"beta": "beta", "label_smoothing": "label_smoothing"}, ()),
    "aot_unpaired": ("cached", True, "pair", "none", True, {"beta": "beta", "label_smoothing": "label_smoothing"},
                     ()),
    "orpo": ("none", True, "pair", "none", True, {"beta": "beta"}, ()),
    "cpo": ("none", True, "pair", "none", True,
            {"beta": "beta", "cpo_alpha": "alpha", "label_smoothing": "label_smoothing"}, ()),
    "nca_pair": ("cached", True, "pair", "none", True, {"beta": "beta"}, ()),
    "bco_pair": ("cached", True, "pair", "none", True, {"beta": "beta"}, ()),
    "sppo_hard": ("cached", True, "pair", "none", True, {"beta": "beta"}, ()),
    "apo_zero": ("cached", True, "pair", "none", True, {"beta": "beta"}, ()),
    "apo_down": ("cached", True, "pair", "none", True, {"beta": "beta"}, ()),
    "kto": ("cached", True, "pair", "none", True, {"beta": "beta", "desirable_weight": "desirable_weight",
                                                   "undesirable_weight": "undesirable_weight"}, ("label",)),
    "bco": ("cached", True, "pair", "none", True, {"beta": "beta", "desirable_weight": "desirable_weight",
                                                   "undesirable_weight": "undesirable_weight"}, ("label",)),
    "apo_zero_unpaired": ("cached", True, "pair", "none", True,
                          {"beta": "beta", "desirable_weight": "desirable_weight",
                           "undesirable_weight": "undesirable_weight"}, ("label",)),
}


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_built_in_declarations(name):
    spec = L.LOSSES[name]
    declared = (spec.reference, spec.pairwise, spec.unit, spec.selection, spec.token_weights, spec.params,
                spec.pair_inputs)
    assert declared == BUILT_IN[name]
    assert (name in L.REFERENCE_FREE) == (spec.pairwise and spec.reference == "none")
    assert (name in L.NEEDS_REFERENCE) == (spec.reference != "none")


def test_derived_name_tuples_cover_every_loss():
    """Derived from LOSSES, whatever it holds: pairwise reference-free losses, and losses with a reference."""
    assert L.REFERENCE_FREE == tuple(n for n, s in L.LOSSES.items() if s.pairwise and not s.needs_reference)
    assert L.NEEDS_REFERENCE == tuple(n for n, s in L.LOSSES.items() if s.needs_reference)


def test_every_setting_a_loss_reads_is_a_training_setting():
    """params name TrainConfig fields (docs/contributing.md: a new setting is a field with read_by(...))."""
    import dataclasses

    from tokensift.train.config import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for name, spec in L.LOSSES.items():
        assert set(spec.params) <= fields, (name, set(spec.params) - fields)


def plain(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, beta: float = 0.1):
    return None


def cached(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps, ref_rejected_logps,
           beta: float = 0.1, target_margin=None):
    return None


def no_default(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, beta):
    return None


def chosen_only(*, logps, mask, scale: float = 1.0):
    return None


@pytest.mark.parametrize("function, options, message", [
    (cached, dict(reference="cache"), "reference must be one of none, cached, live, got 'cache'"),
    (plain, dict(selection="require"), "selection must be one of none, required, got 'require'"),
    (chosen_only, dict(pairwise=False, unit="tokens"), "unit must be one of pair, token, got 'tokens'"),
    (plain, dict(pairwise="no"), "pairwise must be True or False, got 'no'"),
    (plain, dict(token_weights=1), "token_weights must be True or False, got 1"),
    (plain, dict(refrence="none"), "unknown option refrence; the options are reference, params, pairwise, unit, "
                                   "selection, token_weights, pair_inputs"),
    (plain, dict(params=["beta"]), "params must map training settings to the function's keywords"),
    (plain, dict(params={"beta": "betta"}), "plain does not take the keyword 'betta', which params['beta'] names; "
                                            "its keywords: chosen_logps, chosen_mask"),
    (no_default, dict(params={"beta": "beta"}), "no_default's keyword 'beta' (params['beta']) needs a default: an "
                                                "unset setting (None) is not passed"),
    (plain, dict(params={"beta": "chosen_mask"}), "params['beta'] names 'chosen_mask', which the engine passes to a "
                                                  "pairwise loss with reference='none' already"),
    (cached, dict(reference="cached", pair_inputs="target_margin"), "pair_inputs must be a tuple of keyword names"),
    (plain, dict(pair_inputs=("target_margin",)), "plain does not take the keyword 'target_margin', which "
                                                  "pair_inputs names"),
    (cached, dict(reference="live"), "cached does not take the keyword 'chosen_kl', which the engine passes to a "
                                     "pairwise loss with reference='live'"),
    (cached, dict(), "cached requires 'ref_chosen_logps', which nothing passes (reference='cached' or 'live' "
                     "passes the reference's sums)"),
    (no_default, dict(), "no_default requires 'beta', which nothing passes: the engine passes chosen_logps, "
                         "chosen_mask, rejected_logps, rejected_mask to a pairwise loss with reference='none'"),
    (plain, dict(pairwise=False), "plain does not take the keyword 'logps', which the engine passes to a "
                                  "pairwise=False loss"),
    (chosen_only, dict(pairwise=False, reference="cached"), "a pairwise=False loss gets logps and mask only: "
                                                            "reference must be 'none', got 'cached'"),
    (chosen_only, dict(pairwise=False, selection="required"), "selection must be 'none', got 'required'"),
])
def test_a_declaration_is_checked_when_the_loss_registers(function, options, message):
    """Every option of @register, checked at import against the function's own signature: the error names the
    loss, the option and what it may be, and the loss does not join the registry."""
    before = dict(L.LOSSES)
    with pytest.raises(ValueError) as info:
        L.register("mine", "a loss under test", **options)(function)
    assert str(info.value).startswith("loss 'mine': ") and message in str(info.value), str(info.value)
    assert L.LOSSES == before


def test_a_summary_is_required_and_a_good_declaration_registers():
    with pytest.raises(ValueError, match="loss 'mine': the summary .* must be a non-empty string"):
        L.register("mine", " ")(plain)
    try:
        L.register("mine", "a loss under test", reference="cached", params={"beta": "beta"},
                   pair_inputs=("target_margin",))(cached)
        L.register("mine_sft", "chosen only", pairwise=False, unit="token", params={"beta": "scale"})(chosen_only)
        assert L.LOSSES["mine"].pair_inputs == ("target_margin",) and not L.LOSSES["mine_sft"].pairwise
        with pytest.raises(ValueError, match="loss 'mine' is declared twice"):
            L.register("mine", "again")(plain)
    finally:
        L.LOSSES.pop("mine", None)
        L.LOSSES.pop("mine_sft", None)
