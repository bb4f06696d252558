"""Hand-computed checks of the losses added for TRL users (TRL's loss types, ORPO, CPO), RPO's NLL term and loss
mixtures, on the shared batch of tests/test_losses.py (its docstring has the numbers):

    chosen sums c = [-3.0, -2.0] over n_c = [2, 2] tokens (means [-1.5, -1.0]);
    rejected sums r = [-6.0, -4.0] over n_r = [3, 1] tokens (means [-2.0, -4.0]);
    log-ratios lc = [-0.5, 1.0], lr = [-1.0, 2.0]; h = lc - lr = [0.5, -1.0]; reference margins [2.5, 3.0].

Expected values come from `math` on those floats, never from the code under test. Parity with TRL's own code on
the same inputs is in tests/test_trl_parity.py (DPOTrainer's loss types, mixtures) and
tests/test_trl_parity_losses.py (ORPO, CPO).
"""

from __future__ import annotations

import math

import pytest
import torch

from test_losses import batch, close, nls, ref_batch, sigmoid
from tokensift import losses as L

LC, LR = [-0.5, 1.0], [-1.0, 2.0]
C, R = [-3.0, -2.0], [-6.0, -4.0]
MEAN_C, MEAN_R = [-1.5, -1.0], [-2.0, -4.0]


def mean(values):
    return sum(values) / len(values)


def test_sigmoid_norm_divides_each_side_by_its_length():
    # beta 1: lc / n_c - lr / n_r = [-0.25 + 1/3, 0.5 - 2.0]
    out = L.sigmoid_norm_loss(**ref_batch(), beta=1.0)
    assert close(out.loss, mean([nls(-0.25 + 1 / 3), nls(0.5 - 2.0)]))
    assert close(out.metrics["rewards/chosen"], LC)


def test_exo_pair_is_the_kl_to_the_smoothed_labels():
    # beta 1, eps 0.1: q = sigmoid(h); KL = q log(q / 0.9) + (1 - q) log((1 - q) / 0.1)
    def kl(h):
        q = sigmoid(h)
        return q * math.log(q / 0.9) + (1 - q) * math.log((1 - q) / 0.1)

    out = L.exo_pair_loss(**ref_batch(), beta=1.0, epsilon=0.1)
    assert close(out.loss, mean([kl(0.5), kl(-1.0)]))
    with pytest.raises(ValueError, match=r"epsilon\) must lie in \(0, 1\)"):
        L.exo_pair_loss(**ref_batch(), epsilon=0.0)


def test_discopop_mixes_logistic_and_exponential():
    # beta 1, tau 0.5: m = sigmoid(h / 0.5); L = (1 - m) * nls(h) + m * exp(-h)
    def disco(h):
        m = sigmoid(h / 0.5)
        return (1 - m) * nls(h) + m * math.exp(-h)

    out = L.discopop_loss(**ref_batch(), beta=1.0, tau=0.5)
    assert close(out.loss, mean([disco(0.5), disco(-1.0)]))
    with pytest.raises(ValueError, match="tau must be a finite number > 0"):
        L.discopop_loss(**ref_batch(), tau=0.0)


def test_aot_sorts_policy_and_reference_margins_separately():
    # policy margins c - r = [3, 2] -> sorted [2, 3]; reference margins [2.5, 3.0] sorted; d = [-0.5, 0.0]
    # eps 0.25: L_k = 0.75 nls(d) + 0.25 nls(-d)
    out = L.aot_loss(**ref_batch(), beta=1.0, label_smoothing=0.25)
    assert close(out.loss, mean([0.75 * nls(d) + 0.25 * nls(-d) for d in (-0.5, 0.0)]))
    # unsorted it would be smoothed DPO on h = [0.5, -1.0]: the sorting matters here
    assert not close(out.loss, mean([0.75 * nls(h) + 0.25 * nls(-h) for h in (0.5, -1.0)]))


def test_aot_unpaired_sorts_chosen_and_rejected_log_ratios():
    # lc sorted [-0.5, 1.0], lr sorted [-1.0, 2.0] (already sorted); beta 2: d = 2 * [0.5, -1.0]; eps 0
    out = L.aot_unpaired_loss(**ref_batch(), beta=2.0)
    assert close(out.loss, mean([nls(1.0), nls(-2.0)]))
    # a batch whose rejected log-ratios come in the other order: sorting pairs them differently than DPO does
    b = ref_batch()
    b["ref_rejected_logps"] = torch.tensor([-9.0, -3.0])  # lr = [-6 + 9, -4 + 3] = [3, -1] -> sorted [-1, 3]
    out = L.aot_unpaired_loss(**b, beta=1.0)
    assert close(out.loss, mean([nls(-0.5 + 1.0), nls(1.0 - 3.0)]))


def test_nca_pair_value():
    out = L.nca_pair_loss(**ref_batch(), beta=1.0)
    assert close(out.loss, mean([nls(c) + 0.5 * nls(-c) + 0.5 * nls(-r) for c, r in zip(LC, LR)]))


def test_bco_pair_value():
    out = L.bco_pair_loss(**ref_batch(), beta=0.5)
    assert close(out.loss, mean([nls(0.5 * c) + nls(-0.5 * r) for c, r in zip(LC, LR)]))
    assert close(out.metrics["rewards/rejected"], [0.5 * r for r in LR])


def test_sppo_hard_value():
    # beta 1: (lc - 0.5)^2 + (lr + 0.5)^2 = [1.0 + 0.25, 0.25 + 6.25]
    out = L.sppo_hard_loss(**ref_batch(), beta=1.0)
    assert close(out.loss, mean([1.25, 6.5]))


def test_apo_zero_and_apo_down_values():
    zero = L.apo_zero_loss(**ref_batch(), beta=1.0)
    assert close(zero.loss, mean([1 - sigmoid(c) + sigmoid(r) for c, r in zip(LC, LR)]))
    down = L.apo_down_loss(**ref_batch(), beta=1.0)
    assert close(down.loss, mean([sigmoid(c) + 1 - sigmoid(c - r) for c, r in zip(LC, LR)]))


def test_orpo_value_metrics_and_gradient_on_masked_tokens_only():
    # means p_c = [-1.5, -1.0], p_r = [-2.0, -4.0]; log odds(p) = p - log(1 - e^p)
    def log_odds(p):
        return p - math.log(1 - math.exp(p))

    ratios = [log_odds(c) - log_odds(r) for c, r in zip(MEAN_C, MEAN_R)]
    b = batch(grad=True)
    out = L.orpo_loss(**b, beta=0.25)
    assert close(out.loss, mean([-c + 0.25 * nls(o) for c, o in zip(MEAN_C, ratios)]))
    assert close(out.metrics["log_odds_ratio"], ratios)
    assert close(out.metrics["loss/nll"], [1.5, 1.0])
    assert close(out.metrics["rewards/chosen"], [0.25 * c for c in MEAN_C])
    out.loss.backward()
    assert b["chosen_logps"].grad[0, 2] == 0 and b["rejected_logps"].grad[1, 1:].eq(0).all()


def test_cpo_value_with_nll_and_smoothing():
    # beta 0.1: z = 0.1 * (c - r) = [0.3, 0.2]; eps 0.1; alpha 0.5 * nll [1.5, 1.0]
    out = L.cpo_loss(**batch(), beta=0.1, alpha=0.5, label_smoothing=0.1)
    expected = [0.9 * nls(z) + 0.1 * nls(-z) + 0.5 * n for z, n in zip((0.3, 0.2), (1.5, 1.0))]
    assert close(out.loss, mean(expected))
    assert close(L.cpo_loss(**batch(), beta=0.1, alpha=0.0).loss, mean([nls(0.3), nls(0.2)]))


def test_rpo_alpha_adds_the_per_pair_mean_nll_of_the_selected_chosen_tokens():
    dpo = L.dpo_loss(**ref_batch(), beta=1.0)
    out = L.add_nll(dpo, ref_batch()["chosen_logps"], ref_batch()["chosen_mask"], 0.4)
    assert close(out.loss, mean([nls(0.5), nls(-1.0)]) + 0.4 * mean([1.5, 1.0]))
    assert close(out.metrics["loss/nll"], [1.5, 1.0])
    assert close(out.metrics["rewards/margin"], dpo.metrics["rewards/margin"].tolist())
    # on a selection: pair 0 keeps only its first chosen token (-1.0), pair 1 only its last (-1.5)
    selected = torch.tensor([[1, 0, 0], [0, 0, 1]], dtype=torch.bool)
    out = L.add_nll(dpo, ref_batch()["chosen_logps"], selected, 1.0)
    assert close(out.loss - dpo.loss, mean([1.0, 1.5]))
    with pytest.raises(ValueError, match="rpo_alpha must be a finite number >= 0"):
        L.add_nll(dpo, ref_batch()["chosen_logps"], selected, -1.0)


def test_a_mixture_is_the_weighted_sum_of_its_terms_each_logged():
    # dpo (beta 1) + 0.5 x sft; sft is TRL's term: the mean over every chosen token of the batch,
    # -(-1 - 2 - 0.5 - 1.5) / 4 = 1.25
    spec = L.resolve("dpo,sft", "1,0.5")
    assert spec.reference == "cached" and spec.params == {"beta": "beta"}
    out = spec.function(**ref_batch(), beta=1.0)
    dpo = mean([nls(0.5), nls(-1.0)])
    assert close(out.loss, dpo + 0.5 * 1.25)
    assert close(out.metrics["loss/dpo"], [dpo, dpo]) and close(out.metrics["loss/sft"], [1.25, 1.25])
    assert close(out.metrics["rewards/chosen"], LC)
    # a reference-free term gets no reference; each term its own keywords (simpo's gamma, default beta 2.0)
    spec = L.resolve("dpo,simpo", "1,2")
    out = spec.function(**ref_batch(), beta=1.0, simpo_gamma=0.5)
    simpo = mean([nls(c - r - 0.5) for c, r in zip(MEAN_C, MEAN_R)])
    assert close(out.loss, dpo + 2 * simpo)


@pytest.mark.parametrize("loss, weights, message", [
    ("dpo,tdpo", None, "tdpo cannot be a mixture term"),
    ("dpo,sepo", None, "sepo cannot be a mixture term"),
    ("dpo,dpo", None, "appears twice"),
    ("dpo,ipo", "1", "1 weight"),
    ("dpo,ipo", "1,x", "comma list of numbers"),
    ("dpo,ipo", "1,-1", "weight of ipo must be a finite number >= 0"),
])
def test_bad_mixtures_are_refused(loss, weights, message):
    with pytest.raises(ValueError, match=message):
        L.resolve(loss, weights)
    with pytest.raises(KeyError):
        L.resolve("dpo,nope")


def test_docs_losses_table_matches_the_declarations():
    """docs/losses.md's table: one row per declared loss, with its reference, settings and selection as declared."""
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "losses.md").read_text()
    rows = {}
    for line in page.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells
    assert set(rows) == set(L.LOSSES)
    for name, spec in L.LOSSES.items():
        _, reference, data, settings, selection, _, paper = rows[name]
        assert reference == spec.reference, name
        assert data.split()[0] == spec.data and paper, name
        assert set(s.strip() for s in settings.split(",") if s.strip() != "-") == set(spec.params), name
        expected = ("required" if spec.selection == "required" else "no" if not spec.pairwise or spec.no_selection
                    else "yes" if spec.token_weights else "mask")
        assert selection.split(":")[0] == expected, name
