"""Row widths of padding-free pairs (data/collate.py): first-fit decreasing and dense attention's cost model,
against layouts worked out by hand."""

from __future__ import annotations

import numpy as np

from tokensift.data.collate import cheapest_width, first_fit, pack_pairs
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
