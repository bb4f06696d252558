"""Key-token selection, reward-mass summary and cross-tokenizer projection, against hand-computed values."""

import numpy as np
import pytest

from conftest import CORPUS, build_tokenizer
from tokensift.sepo.mass import absolute_mass_share, pair_mass_curve
from tokensift.projection import project_scores, response_spans
from tokensift.selection import STRATEGIES, Selection, selection_masks, strategy


def test_per_response_top_and_bottom_k():
    sel = Selection("per_response", k_chosen=0.3, k_rejected=0.5)
    chosen = np.array([0.1, 2.0, -1.0, 2.0, 0.5, 0.0, 0.3, -0.2, 0.9, 1.1])  # N=10 -> floor(3.0) = 3 tokens
    assert sel.chosen(chosen).nonzero()[0].tolist() == [1, 3, 9]  # 2.0, 2.0 (tie: earlier first), 1.1
    rejected = np.array([0.4, -3.0, 0.0, -0.5, 1.0])  # N=5, k=0.5 -> floor(2.5) = 2 lowest
    assert sel.rejected(rejected).nonzero()[0].tolist() == [1, 3]
    # at least one token, and the first response token is selectable
    tiny = Selection("per_response", 0.3, 0.3)
    assert tiny.chosen(np.array([5.0, 1.0])).tolist() == [True, False]
    assert tiny.rejected(np.array([-5.0])).tolist() == [True]
    # k = 1 keeps every token
    assert Selection("per_response", 1.0, 1.0).chosen(chosen).all()


def test_ties_keep_the_earlier_token():
    sel = Selection("per_response", 0.25, 0.25)
    assert sel.chosen(np.array([1.0, 1.0, 1.0, 1.0])).tolist() == [True, False, False, False]
    assert sel.rejected(np.array([0.0, -1.0, -1.0, 3.0])).tolist() == [False, True, False, False]


def test_global_threshold_uses_dataset_quantiles():
    chosen = [np.array([0.0, 1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0, 7.0, 8.0, 9.0])]
    rejected = [np.array([-9.0, 0.0]), np.array([1.0, 2.0, 3.0])]
    sel = Selection("global_threshold", 0.3, 0.4).fit(chosen, rejected)
    # chosen scores 0..9: the 0.7 quantile (linear) = 6.3 -> tokens >= 6.3 are 7, 8, 9
    assert sel.chosen_threshold == pytest.approx(6.3)
    assert sel.chosen(chosen[0]).tolist() == [False, False, False, True]  # none pass: keep the best one
    assert sel.chosen(chosen[1]).tolist() == [False, False, False, True, True, True]
    # rejected scores [-9, 0, 1, 2, 3]: the 0.4 quantile = 0.6 -> -9 and 0
    assert sel.rejected_threshold == pytest.approx(0.6)
    assert sel.rejected(rejected[0]).tolist() == [True, True]
    assert sel.rejected(rejected[1]).tolist() == [True, False, False]  # none pass: keep the lowest one


def test_reward_mass_selection():
    sel = Selection("reward_mass", mass=0.8)
    # positive mass = 5 + 3 + 1 + 1 = 10; 80% = 8 -> 5 + 3 reaches it with 2 tokens
    assert sel.chosen(np.array([1.0, 5.0, -2.0, 3.0, 1.0])).tolist() == [False, True, False, True, False]
    # rejected: negative mass = 4 + 4 + 2 = 10 -> -4, -4 (8) is enough
    assert sel.rejected(np.array([-4.0, 1.0, -2.0, -4.0])).tolist() == [True, False, False, True]
    # no positive score: the single best token
    assert sel.chosen(np.array([-1.0, -0.5, -3.0])).tolist() == [False, True, False]


def test_built_in_strategies_and_their_fits():
    """The registry is open (docs/contributing.md adds strategies): the built-ins are there, with their fits."""
    assert {"per_response", "global_threshold", "reward_mass"} <= set(STRATEGIES)
    assert [STRATEGIES[n].fit is not None for n in ("per_response", "global_threshold", "reward_mass")] == [
        False, True, False]


def two(selection, chosen_scores):
    return 0.0, 0.0


@pytest.mark.parametrize("summary, pick, fit, message", [
    ("", lambda ranking, k, fitted, selection: None, None, "the summary (a line for the help) must be a non-empty"),
    ("ok", lambda ranking, k: None, None, "pick must be a function of (ranking, k, fitted, selection), got <lambda>"),
    ("ok", lambda ranking, k, fitted, selection: None, two,
     "fit must be a function of (selection, chosen_scores, rejected_scores), got two"),
    ("ok", lambda ranking, k, fitted, selection: None, 0.5,
     "fit must be a function of (selection, chosen_scores, rejected_scores), got 0.5"),
])
def test_a_strategy_declaration_is_checked(summary, pick, fit, message):
    before = dict(STRATEGIES)
    with pytest.raises(ValueError) as info:
        strategy("mine", summary, fit=fit)(pick)
    assert str(info.value).startswith("selection strategy 'mine': ") and message in str(info.value)
    assert STRATEGIES == before


def test_selection_masks_layout():
    sel = Selection("per_response", 0.5, 0.5)
    masks = selection_masks(sel, [np.array([1.0, 2.0]), np.array([3.0])], [np.array([0.0, -1.0, 5.0, -2.0]), np.array([1.0])], 5)
    assert masks.shape == (4, 5)
    assert masks.tolist() == [
        [False, True, False, False, False],
        [True, False, False, False, False],
        [False, True, False, True, False],
        [True, False, False, False, False],
    ]


def test_reward_mass_curve_by_hand():
    # contributions: chosen [3, 1] and rejected [-1, 0] -> +1, 0 ; sorted 3,1,1,0 ; gap 5 ; 80% = 4 -> 2 of 4 tokens
    share, curve = pair_mass_curve(np.array([3.0, 1.0]), np.array([-1.0, 0.0]))
    assert share == 0.5
    assert curve[0] == 0.0 and curve[-1] == pytest.approx(1.0)
    assert curve[5] == pytest.approx(3 / 5)  # 25% of tokens -> the first token, 3/5 of the gap
    assert pair_mass_curve(np.array([0.0]), np.array([1.0])) is None  # the oracle ranks the pair wrongly


def test_absolute_mass_share_by_hand():
    # |contributions| 4, 3, 2, 1 (total 10): 80% = 8 needs 4 + 3 + 2 -> 3 of 4 tokens
    assert absolute_mass_share(np.array([4.0, -2.0]), np.array([3.0, 1.0])) == 0.75
    # one token carries everything -> 1 of 5 tokens
    assert absolute_mass_share(np.array([0.0, 5.0, 0.0]), np.array([0.0, 0.0])) == 0.2
    assert absolute_mass_share(np.array([0.0]), np.array([0.0])) is None
    # signed contributions overshoot where some pull against the label: chosen [3, -2], rejected [0] -> gap 1;
    # 3 alone is 300% of the gap, so 1 of 3 tokens "carries 80%", while the absolute mass needs 2 of 3
    share, curve = pair_mass_curve(np.array([3.0, -2.0]), np.array([0.0]))
    assert share == pytest.approx(1 / 3) and max(curve) == pytest.approx(3.0)
    assert absolute_mass_share(np.array([3.0, -2.0]), np.array([0.0])) == pytest.approx(2 / 3)


def test_projection_preserves_mass_and_follows_characters():
    src = [(0, 2), (2, 5), (5, 6), (6, 6)]  # "ab" "cde" "f" EOS
    scores = [2.0, 3.0, -1.0, 0.5]
    dst = [(0, 1), (1, 3), (3, 6), (6, 6)]  # "a" "bc" "def" EOS
    out = project_scores(src, scores, dst)
    # a: 2/2 ; bc: 1 (b) + 1 (c) ; def: 1 + 1 - 1 ; EOS to EOS
    assert out.tolist() == pytest.approx([1.0, 2.0, 1.0, 0.5])
    assert out.sum() == pytest.approx(sum(scores))


def test_projection_between_two_real_tokenizers():
    oracle_tok = build_tokenizer(vocab_size=400)
    policy_tok = build_tokenizer(vocab_size=300, seed_text=CORPUS[::-1] + ["wonderfully lovely"])
    messages = [{"role": "user", "content": "How was it?"}]
    text = "I love this movie, it is wonderful and great!"
    src, dst = response_spans(oracle_tok, messages, text), response_spans(policy_tok, messages, text)
    src_ids, src_spans, dst_ids, dst_spans = src.ids, src.bytes, dst.ids, dst.bytes
    assert list(src_ids) != list(dst_ids)  # really two tokenizations
    # the oracle rewards only its tokens that touch "wonderful" (ASCII: bytes are characters)
    start, end = text.index("wonderful"), text.index("wonderful") + len("wonderful")
    scores = np.array([1.0 if a < end and b > start else 0.0 for a, b in src_spans])
    rewarded = {c for (a, b), s in zip(src_spans, scores) if s > 0 for c in range(a, b)}
    out = project_scores(src_spans, scores, dst_spans)
    assert out.sum() == pytest.approx(scores.sum(), rel=1e-5)
    for (a, b), value in zip(dst_spans, out):  # a policy token is rewarded iff it shares a rewarded character
        assert (value > 0) == bool(rewarded & set(range(a, b)))
    assert policy_tok.decode(dst_ids[:-1]) == text
