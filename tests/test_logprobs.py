"""The LM-head-at-selected-positions path equals the full-logits path, values and gradients."""

import numpy as np
import pytest
import torch

from conftest import build_model
from tokensift.data.collate import collate_pairs
from tokensift.data.example import PreferenceExample
from tokensift.data.tokenize import tokenize_examples
from tokensift.head import ChunkedHeadLogProbs, blocks
from tokensift.logprobs import full_logits_logps, needed_length, token_logps
import tokensift.head as head_module


def make_batch(tokenizer):
    examples = [
        PreferenceExample([{"role": "user", "content": "What is the capital of France?"}], "Paris.", "I hate it.", 0),
        PreferenceExample([{"role": "user", "content": "hi"}], "Happy joyful excellent good nice", "bad", 1),
        PreferenceExample([{"role": "user", "content": "Numbers: 0 1 2 3 4 5"}], "6 7 8", "9 10 100 1000 fine", 2),
    ]
    pairs, _ = tokenize_examples(tokenizer, examples)
    return collate_pairs(pairs, tokenizer.pad_token_id)


def test_selected_positions_equal_full_logits(tokenizer):
    model = build_model(len(tokenizer), seed=1)
    batch = make_batch(tokenizer)
    for mask in (batch.response_mask, batch.response_mask & (torch.rand(batch.response_mask.shape) < 0.4)):
        fast = token_logps(model, batch.input_ids, batch.prompt_lens, mask).logps
        slow = full_logits_logps(model, batch.input_ids, batch.prompt_lens, mask)
        assert torch.allclose(fast, slow, atol=1e-5), (fast - slow).abs().max()
        assert (fast[~mask] == 0).all()


def test_gradients_equal_full_logits(tokenizer):
    batch = make_batch(tokenizer)
    mask = batch.response_mask
    weights = torch.randn(mask.shape)
    grads = []
    for fn in (token_logps, full_logits_logps):
        model = build_model(len(tokenizer), seed=2)
        out = fn(model, batch.input_ids, batch.prompt_lens, mask)
        out = out.logps if hasattr(out, "logps") else out
        (out * weights).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-5), name


def test_small_chunks_give_same_result(tokenizer, monkeypatch):
    model = build_model(len(tokenizer), seed=3)
    batch = make_batch(tokenizer)
    ref = token_logps(model, batch.input_ids, batch.prompt_lens, batch.response_mask).logps
    monkeypatch.setattr(head_module, "ROW_BLOCK", 5)
    monkeypatch.setattr(head_module, "CHUNK_ELEMENTS", 5 * 150)  # blocks of 5 positions x slices of 150 ids
    assert blocks(int(batch.response_mask.sum()), len(tokenizer)) == (5, 150) and len(tokenizer) > 2 * 150
    chunked = token_logps(model, batch.input_ids, batch.prompt_lens, batch.response_mask).logps
    assert torch.allclose(ref, chunked, atol=1e-5)


def test_needed_length_cuts_after_last_read_label():
    prompt_lens = torch.tensor([3, 5])
    mask = torch.tensor([[True, False, True, False], [True, False, False, False]])
    # row 0 reads label 2 -> hidden position 4 -> run 5 positions; row 1 reads label 0 -> position 4 -> 5
    assert needed_length(prompt_lens, mask) == 5


def capped_log_softmax(hidden, weight, bias, scale, softcap):
    z = (hidden @ weight.t() + bias) * scale
    return torch.log_softmax(torch.tanh(z / softcap) * softcap, -1)


def test_chunked_function_with_scale_softcap_and_kl(monkeypatch):
    torch.manual_seed(0)
    monkeypatch.setattr(head_module, "CHUNK_ELEMENTS", 2 * 11)  # 2 whole-vocabulary rows per block
    m, h, v = 7, 5, 11
    hidden = torch.randn(m, h, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(v, h, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(v, dtype=torch.float64, requires_grad=True)
    ref_hidden, ref_weight = torch.randn(m, h, dtype=torch.float64), torch.randn(v, h, dtype=torch.float64)
    targets = torch.randint(0, v, (m,))
    g1, g2 = torch.randn(m, dtype=torch.float64), torch.randn(m, dtype=torch.float64)
    logp, kl, _ = ChunkedHeadLogProbs.apply(hidden, weight, bias, targets, 1.7, 3.0, ref_hidden, ref_weight, bias.detach())
    ((logp * g1).sum() + (kl * g2).sum()).backward()
    got = [t.grad.clone() for t in (hidden, weight, bias)]
    for t in (hidden, weight, bias):
        t.grad = None
    # naive full-vocabulary version; the reference (its bias included) is a constant
    policy = capped_log_softmax(hidden, weight, bias, 1.7, 3.0)
    ref = capped_log_softmax(ref_hidden, ref_weight, bias.detach(), 1.7, 3.0)
    expected_logp = policy.gather(1, targets[:, None]).squeeze(1)
    expected_kl = (ref.exp() * (ref - policy)).sum(-1)
    assert torch.allclose(logp.double(), expected_logp, atol=1e-6)
    assert torch.allclose(kl.double(), expected_kl, atol=1e-6)
    ((expected_logp * g1).sum() + (expected_kl * g2).sum()).backward()
    for a, t in zip(got, (hidden, weight, bias)):
        assert torch.allclose(a, t.grad, atol=1e-5)


@pytest.mark.parametrize("row_block,chunk", [(3, 3 * 4), (2, 2 * 11), (100, 100 * 11)])
def test_sliced_head_with_scale_softcap_and_bias_equals_full_vocabulary(monkeypatch, row_block, chunk):
    """Blocks of positions x slices of the vocabulary (the path without KL), against log_softmax over all ids."""
    torch.manual_seed(1)
    monkeypatch.setattr(head_module, "ROW_BLOCK", row_block)
    monkeypatch.setattr(head_module, "CHUNK_ELEMENTS", chunk)
    m, h, v = 7, 5, 11
    hidden = torch.randn(m, h, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(v, h, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(v, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([0, 10, 3, 4, 10, 7, 1])  # the first and last ids of the vocabulary among them
    g = torch.randn(m, dtype=torch.float64)
    logp, kl, _ = ChunkedHeadLogProbs.apply(hidden, weight, bias, targets, 1.7, 3.0, None, None, None)
    (logp * g).sum().backward()
    got = [t.grad.clone() for t in (hidden, weight, bias)]
    for t in (hidden, weight, bias):
        t.grad = None
    expected = capped_log_softmax(hidden, weight, bias, 1.7, 3.0).gather(1, targets[:, None]).squeeze(1)
    assert torch.allclose(logp.double(), expected, atol=1e-6)
    assert torch.equal(kl, torch.zeros_like(kl))
    (expected * g).sum().backward()
    for a, t in zip(got, (hidden, weight, bias)):
        assert torch.allclose(a, t.grad, atol=1e-5)


def test_blocks_bound_the_buffer_at_any_vocabulary():
    for positions in (1, 300, 4096, 20000):
        for vocab in (49152, 151936, 262144):
            rows, width = blocks(positions, vocab)
            assert rows * width <= head_module.CHUNK_ELEMENTS
            assert rows == min(positions, head_module.ROW_BLOCK)
    assert blocks(300, 49152) == (300, 49152)  # a short batch at a small vocabulary: one slice, as before


def test_tdpo_kl_matches_explicit_distributions(tokenizer):
    policy, ref = build_model(len(tokenizer), seed=4), build_model(len(tokenizer), seed=5)
    batch = make_batch(tokenizer)
    mask = batch.response_mask
    out = token_logps(policy, batch.input_ids, batch.prompt_lens, mask, ref_model=ref)
    with torch.no_grad():
        lp = torch.log_softmax(policy(input_ids=batch.input_ids).logits, -1)
        lr = torch.log_softmax(ref(input_ids=batch.input_ids).logits, -1)
    for n in range(mask.shape[0]):
        for i in range(int(batch.response_lens[n])):
            pos = int(batch.prompt_lens[n]) - 1 + i
            expected = (lr[n, pos].exp() * (lr[n, pos] - lp[n, pos])).sum()
            assert abs(float(out.kl[n, i].detach()) - float(expected)) < 1e-5
            target = batch.input_ids[n, pos + 1]
            assert abs(float(out.ref_logps[n, i]) - float(lr[n, pos, target])) < 1e-5
    assert np.isclose(float(out.kl[~mask].abs().sum()), 0.0)


def test_packed_pairs_equal_separate_sequences(tokenizer):
    """Shared-prompt packing [prompt | chosen | rejected] gives the log-probs of the two separate sequences."""
    from tokensift.data.positions import packed_pair_indices

    batch = make_batch(tokenizer)
    pairs, _ = tokenize_examples(tokenizer, [
        PreferenceExample([{"role": "user", "content": "What is the capital of France?"}], "Paris.", "I hate it.", 0),
        PreferenceExample([{"role": "user", "content": "hi"}], "Happy joyful excellent good nice", "bad", 1),
        PreferenceExample([{"role": "user", "content": "Numbers: 0 1 2 3 4 5"}], "6 7 8", "9 10 100 1000 fine", 2),
    ])
    packed = collate_pairs(pairs, tokenizer.pad_token_id, pack=True)
    assert packed.packed is not None
    # index math by hand for pair 0: P prompt tokens, C chosen tokens
    P, C = len(pairs[0].prompt_ids), len(pairs[0].chosen_ids)
    one = torch.zeros_like(packed.response_mask)
    one[0, 1] = True  # chosen label 1
    one[3, 0] = True  # rejected label 0 of pair 0 (row B + 0)
    one[3, 2] = True  # rejected label 2
    rows, hidden, token = packed_pair_indices(packed.packed.prompt_lens, packed.packed.chosen_lens, one)
    assert rows.tolist() == [0, 0, 0]
    assert hidden.tolist() == [P, P - 1, P + C + 1] and token.tolist() == [P + 1, P + C, P + C + 2]
    for attn in ("sdpa", "eager"):
        model = build_model(len(tokenizer), seed=6)
        model.config._attn_implementation = attn
        for mask in (batch.response_mask, batch.response_mask & (torch.rand(batch.response_mask.shape) < 0.5)):
            plain = token_logps(model, batch.input_ids, batch.prompt_lens, mask).logps
            shared = token_logps(model, batch.input_ids, batch.prompt_lens, mask, packed=packed.packed).logps
            assert torch.allclose(plain, shared, atol=1e-5), (attn, (plain - shared).abs().max())


def test_packed_gradients_equal_separate_sequences(tokenizer):
    batch = make_batch(tokenizer)
    packed = collate_pairs(tokenize_examples(tokenizer, [
        PreferenceExample([{"role": "user", "content": "What is the capital of France?"}], "Paris.", "I hate it.", 0),
        PreferenceExample([{"role": "user", "content": "hi"}], "Happy joyful excellent good nice", "bad", 1),
        PreferenceExample([{"role": "user", "content": "Numbers: 0 1 2 3 4 5"}], "6 7 8", "9 10 100 1000 fine", 2),
    ])[0], tokenizer.pad_token_id, pack=True).packed
    weights = torch.randn(batch.response_mask.shape)
    grads = []
    for use in (None, packed):
        model = build_model(len(tokenizer), seed=7)
        out = token_logps(model, batch.input_ids, batch.prompt_lens, batch.response_mask, packed=use).logps
        (out * weights).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-5), name


def test_a_nan_in_one_pair_stays_in_that_pair_in_no_grad_passes():
    """A NaN embedding row read by one pair spreads through masked attention to every pair of its packed row
    (0 * nan); group_logps (the reference cache's and the scorer's pass) then runs the group one pair per row, so
    the other pairs get exactly their own log-probs, and only the poisoned pair is NaN."""
    from families import FAMILIES, build_family_model

    from tokensift.data.tokenize import TokenizedPair
    from tokensift.logprobs import group_logps

    model = build_family_model(FAMILIES["llama3"], 64, seed=0, hidden=64).eval()
    with torch.no_grad():
        model.get_input_embeddings().weight[3] = float("nan")
    rng = np.random.default_rng(0)

    def ids(n):
        return rng.integers(5, 64, n)

    pairs = [TokenizedPair(row=i, prompt_ids=ids(6), chosen_ids=ids(4 + i), rejected_ids=ids(3)) for i in range(4)]
    pairs[0].chosen_ids[1] = 3  # only pair 0 reads the NaN row
    one_row = collate_pairs(pairs, 0, pack=True, row_tokens=1 << 20)
    with torch.no_grad():
        spread = token_logps(model, one_row.input_ids, one_row.prompt_lens, one_row.response_mask,
                             packed=one_row.packed).logps
        batch, (logps,) = group_logps([model], pairs, 0, "cpu", True, "one_row")
        alone = [token_logps(model, b.input_ids, b.prompt_lens, b.response_mask, packed=b.packed).logps
                 for b in (collate_pairs([p], 0, pack=True) for p in pairs)]
    n = len(pairs)
    assert torch.isnan(spread[1, : len(pairs[1].chosen_ids)]).any()  # the failure mode itself
    assert torch.isnan(logps[0, : len(pairs[0].chosen_ids)]).any()
    for i in range(1, n):
        for side, row, length in ((0, i, len(pairs[i].chosen_ids)), (1, n + i, len(pairs[i].rejected_ids))):
            assert torch.allclose(logps[row, :length], alone[i][side, :length], atol=1e-5)
