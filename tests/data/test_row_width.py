"""Row widths of padding-free pairs (data/collate.py): first-fit decreasing and dense attention's cost model,
against layouts worked out by hand."""

from __future__ import annotations

import numpy as np

from tokensift.data.collate import cheapest_width, collate_pairs, first_fit, pack_pairs, sharing_pays
from tokensift.data.tokenize import TokenizedPair

LENGTHS = [100, 90, 60, 50]


def test_first_fit_decreasing_by_hand():
    # 100 opens row 0, 90 row 1; 60 fits neither (160, 150 > 100): row 2; 50 fits none (150, 140, 110): row 3
    assert first_fit(LENGTHS, 100) == ([0, 1, 2, 3], [0, 0, 0, 0], [100, 90, 60, 50])
    # at 156: 60 joins the 90 (150), 50 joins the 100 (150): two rows of 150
    assert first_fit(LENGTHS, 156) == ([0, 1, 1, 0], [0, 0, 90, 100], [150, 150])


def test_cheapest_width_by_hand():
    # Candidates 100, 108, ... 300 (step 8, up to the total). Cost = rows * width * (1 + width / scale). Layouts:
    # capacity 100-108: 4 rows of 100; 116-132: 100 | 90 | 60+50 = 3 rows of 110; 156: 100+50 | 90+60 = 2 rows of 150.
    # Attention free (huge scale): 400, 330, 300 positions: 156 (the first capacity reaching the minimum; one row
    # of 300 only ties it).
    assert cheapest_width(LENGTHS, 100, 1e12) == 156
    # scale 150: 4*100*(1+100/150) = 666.7, 3*110*(1+110/150) = 572, 2*150*(1+150/150) = 600: 116
    assert cheapest_width(LENGTHS, 100, 150.0) == 116
    # 100, 100, 100, 50: wider rows only pay more. Capacity 150: 100+50 | 100 | 100 = 3 rows of 150; capacity 200:
    # 100+100 | 100+50 = 2 rows of 200 = 400 positions, as many as 4 rows of 100, with twice the attention.
    assert cheapest_width([100, 100, 100, 50], 100, 1000.0) == 100


def test_pack_pairs_uses_the_cheapest_width():
    pairs = [TokenizedPair(row=i, prompt_ids=np.arange(n // 2), chosen_ids=np.arange(n // 4),
                           rejected_ids=np.arange(n - n // 2 - n // 4)) for i, n in enumerate(LENGTHS)]
    longest = pack_pairs(pairs, pad_id=-1, row_tokens=1)
    cheap = pack_pairs(pairs, pad_id=-1, row_tokens=1, attention_scale=1e12)
    assert tuple(longest.input_ids.shape) == (4, 100) and tuple(cheap.input_ids.shape) == (2, 150)
    assert cheap.padding == 0.0 and cheap.rows.tolist() == [0, 1, 1, 0] and cheap.offsets.tolist() == [0, 0, 90, 100]
    fourth = np.concatenate([pairs[3].prompt_ids, pairs[3].chosen_ids, pairs[3].rejected_ids])
    assert cheap.input_ids[0, 100:].tolist() == fourth.tolist()  # the 50-token pair right after the 100-token one


def _pair(row: int, prompt: int, chosen: int, rejected: int) -> TokenizedPair:
    return TokenizedPair(row=row, prompt_ids=np.arange(prompt), chosen_ids=np.arange(chosen),
                         rejected_ids=np.arange(rejected))


def test_sharing_pays_by_hand():
    # A long prompt (HH-like): [400 | 50 | 50] = one row of 500: 500 * (1 + 500/1000) = 750; two sequences of
    # 450: 2 * 450 * (1 + 450/1000) = 1305. Sharing pays.
    long_prompt = [_pair(0, 400, 50, 50)]
    assert sharing_pays(long_prompt, pack_pairs(long_prompt, -1, 1), 1000.0)
    # A short prompt, long answers (AlpacaEval at 4k-like): [10 | 1000 | 1000] = 2010 * (1 + 2.01) = 6050.1;
    # two sequences of 1010: 2 * 1010 * (1 + 1.01) = 4060.2. Two sequences cost less.
    long_answers = [_pair(0, 10, 1000, 1000)]
    assert not sharing_pays(long_answers, pack_pairs(long_answers, -1, 1), 1000.0)
    # With attention free (huge scale) only positions count: 2010 against 2020, sharing pays.
    assert sharing_pays(long_answers, pack_pairs(long_answers, -1, 1), 1e12)
    # Unpacked, every sequence pads to the batch's longest [prompt | response]. [10 | 1000 | 10] and [10 | 10 | 10]:
    # first-fit at capacity 1020 gives rows of 1020 and 30 positions, padded to 2 x 1020: 2 * 1020 * (1 + 1.02) =
    # 4120.8; unpacked, 4 sequences of 1010: 4 * 1010 * 2.01 = 8120.4. Sharing pays.
    mixed = [_pair(0, 10, 1000, 10), _pair(1, 10, 10, 10)]
    packed = pack_pairs(mixed, -1, 1)
    assert tuple(packed.input_ids.shape) == (2, 1020)
    assert sharing_pays(mixed, packed, 1000.0)


def test_collate_runs_unpacked_where_sharing_costs_more():
    long_answers = [_pair(0, 10, 1000, 1000)]
    assert collate_pairs(long_answers, -1, pack=True, row_tokens=1, attention_scale=1000.0).packed is None
    assert collate_pairs(long_answers, -1, pack=True, row_tokens=1).packed is not None  # no cost model: shared
    long_prompt = [_pair(0, 400, 50, 50)]
    assert collate_pairs(long_prompt, -1, pack=True, row_tokens=1, attention_scale=1000.0).packed is not None
