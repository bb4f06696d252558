"""Right on every model family: each log-prob path equals the model's own forward over its template's rendering.

The yardstick is computed without tokensift: the chat template renders prompt + reply, the tokenizer encodes it,
the model runs its own forward (its own masks: sliding windows, alternating local/global layers, soft-capping),
and the response is every token after the prompt's through the first turn-end token (families.template_ids).
Every path tokensift computes response log-probs by must give the same per-token values (fp32: 1e-5):
the training forward packed as [prompt | chosen | rejected] and unpacked (with gradients), the no-grad pass behind
the reference cache and `eval pairs` (with and without share_prompt), SePO scoring, TDPO's per-position KL, and
`tokensift eval pairs` from a saved model folder. bf16 within the tolerance documented in docs/data.md.
"""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np
import pytest
import torch
from families import (FAMILIES, FAMILY_PAIRS, build_family_model, build_family_tokenizer, family_examples,
                      own_forward_kl, own_forward_logps, template_ids)

from tokensift.attention import PackingRefused, own_attention
from tokensift.data.collate import collate_pairs
from tokensift.data.positions import packed_layout
from tokensift.data.tokenize import PairTokenizer, TokenizeSettings
from tokensift.generate import SamplingSettings, sample_answers
from tokensift.logprobs import LabelLogps, can_pack, token_logps
from tokensift.sepo.score import score_pairs
from tokensift.train.ref_cache import iter_pair_logps

NAMES = list(FAMILIES)
FP32 = 1e-5
BF16 = 2e-2  # per token, nats: the model's own head rounds its logits to bf16, ours takes log-softmax in fp32


@lru_cache(maxsize=None)
def family(name: str, dtype: torch.dtype = torch.float32):
    fam = FAMILIES[name]
    tokenizer = build_family_tokenizer(fam)
    policy = build_family_model(fam, len(tokenizer), seed=0, dtype=dtype)
    reference = build_family_model(fam, len(tokenizer), seed=1, dtype=dtype)
    return tokenizer, policy, reference


@lru_cache(maxsize=None)
def truth(name: str, dtype: torch.dtype = torch.float32) -> dict:
    """(row, side) -> template response ids and the models' own per-token log-probs and KL."""
    tokenizer, policy, reference = family(name, dtype)
    out = {}
    for ex in family_examples():
        for side, reply in (("chosen", ex.chosen), ("rejected", ex.rejected)):
            prompt_ids, ids = template_ids(tokenizer, ex.prompt, reply, FAMILIES[name].turn_end)
            out[ex.row, side] = dict(prompt=prompt_ids, ids=ids, policy=own_forward_logps(policy, prompt_ids, ids),
                                     reference=own_forward_logps(reference, prompt_ids, ids),
                                     kl=own_forward_kl(policy, reference, prompt_ids, ids))
    return out


def tokenized(name: str):
    tokenizer = family(name)[0]
    tok = PairTokenizer(tokenizer, TokenizeSettings(max_length=None, max_prompt_length=None))
    return tok.tokenize_batch(family_examples()), tok.report


def rows_of(pairs, values: torch.Tensor) -> dict:
    """[2B, R] values of a PairBatch -> (row, side) -> [len] values."""
    n = len(pairs)
    out = {}
    for i, p in enumerate(pairs):
        out[p.row, "chosen"] = values[i, : len(p.chosen_ids)]
        out[p.row, "rejected"] = values[n + i, : len(p.rejected_ids)]
    return out


def assert_close(got: dict, name: str, key: str, tol: float, dtype=torch.float32, minus: str | None = None):
    for (row, side), want in truth(name, dtype).items():
        expected = want[key] - (want[minus] if minus else 0)
        value = torch.as_tensor(np.asarray(got[row, side].detach().float())).double()
        assert value.shape == expected.shape, (name, row, side)
        err = (value - expected.double()).abs().max().item()
        assert err <= tol, f"{name} row {row} {side}: max |delta| {err:.3g} > {tol}"


@pytest.mark.parametrize("name", NAMES)
def test_tokenisation_is_the_templates_own(name):
    tokenizer = family(name)[0]
    pairs, report = tokenized(name)
    turn_end = tokenizer.convert_tokens_to_ids(FAMILIES[name].turn_end)
    assert report.boundary_mismatches == 0 and report.template_mismatches == 0
    for pair in pairs:
        for side, ids in (("chosen", pair.chosen_ids), ("rejected", pair.rejected_ids)):
            want = truth(name)[pair.row, side]
            assert pair.prompt_ids.tolist() == want["prompt"]
            assert ids.tolist() == want["ids"] and ids[-1] == turn_end


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("share_prompt", [True, False], ids=["packed", "unpacked"])
def test_training_forward_and_gradients(name, share_prompt):
    """LabelLogps (what accelerate wraps) over a PairBatch: log-probs equal the own forward, and the gradient of
    their sum is the same packed or not."""
    tokenizer, policy, _ = family(name)
    pairs, _ = tokenized(name)
    assert can_pack(policy)  # every family here packs; refusals are tested below
    batch = collate_pairs(pairs, tokenizer.pad_token_id, pack=share_prompt)
    policy.zero_grad()
    out = LabelLogps(policy)(batch.input_ids, batch.prompt_lens, batch.response_mask, packed=batch.packed)
    assert_close(rows_of(pairs, out.logps), name, "policy", FP32)
    out.logps.sum().backward()
    grads = {k: p.grad.clone() for k, p in policy.named_parameters()}
    policy.zero_grad()
    plain = collate_pairs(pairs, tokenizer.pad_token_id)
    token_logps(policy, plain.input_ids, plain.prompt_lens, plain.response_mask).logps.sum().backward()
    for key, param in policy.named_parameters():
        assert torch.allclose(grads[key], param.grad, atol=1e-5, rtol=1e-4), key
    policy.zero_grad()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("share_prompt", [True, False], ids=["packed", "unpacked"])
def test_reference_cache_and_eval_pass(name, share_prompt):
    tokenizer, policy, _ = family(name)
    pairs, _ = tokenized(name)
    got = {}
    for pair, chosen, rejected in iter_pair_logps(policy, pairs, 2, tokenizer.pad_token_id, "cpu",
                                                  share_prompt=share_prompt):
        got[pair.row, "chosen"], got[pair.row, "rejected"] = torch.from_numpy(chosen), torch.from_numpy(rejected)
    assert_close(got, name, "policy", FP32)


@pytest.mark.parametrize("name", NAMES)
def test_sepo_scoring(name):
    tokenizer, policy, reference = family(name)
    pairs, _ = tokenized(name)
    got = {}
    for rec in score_pairs(policy, reference, pairs, 2, tokenizer.pad_token_id, 1.0, "cpu"):
        got[rec["row"], "chosen"] = torch.from_numpy(rec["chosen_scores"])
        got[rec["row"], "rejected"] = torch.from_numpy(rec["rejected_scores"])
    assert_close(got, name, "policy", 2 * FP32, minus="reference")


@pytest.mark.parametrize("name", NAMES)
def test_tdpo_per_position_kl(name):
    tokenizer, policy, reference = family(name)
    pairs, _ = tokenized(name)
    batch = collate_pairs(pairs, tokenizer.pad_token_id, pack=True)
    with torch.no_grad():
        out = token_logps(policy, batch.input_ids, batch.prompt_lens, batch.response_mask, ref_model=reference,
                          packed=batch.packed)
    assert_close(rows_of(pairs, out.kl), name, "kl", FP32)
    assert_close(rows_of(pairs, out.ref_logps), name, "reference", FP32)


@pytest.mark.parametrize("name", NAMES)
def test_bf16_within_the_documented_tolerance(name):
    tokenizer, policy, _ = family(name, torch.bfloat16)
    pairs, _ = tokenized(name)
    with torch.no_grad():
        packed = collate_pairs(pairs, tokenizer.pad_token_id, pack=True)
        out = token_logps(policy, packed.input_ids, packed.prompt_lens, packed.response_mask, packed=packed.packed)
        plain = token_logps(policy, packed.input_ids, packed.prompt_lens, packed.response_mask)
    assert_close(rows_of(pairs, out.logps), name, "policy", BF16, torch.bfloat16)
    assert (out.logps - plain.logps).abs().max() <= BF16


@pytest.mark.parametrize("name", ["mistral", "gemma2", "llama3"])
def test_eval_pairs_from_a_saved_model_folder(name, tmp_path, capsys):
    """The command line end to end: `tokensift eval pairs` reloads the model and tokenizer from disk."""
    from tokensift.cli import main

    tokenizer, policy, _ = family(name)
    folder = tmp_path / "model"
    policy.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in FAMILY_PAIRS))
    output = tmp_path / "eval.json"
    assert main(["eval", "pairs", "--data", str(data), "--model", str(folder), "--output", str(output),
                 "save_items=true", "max_length=null", "max_prompt_length=null", "progress=false"]) == 0
    for item in json.loads(output.read_text())["items"]:
        for side in ("chosen", "rejected"):
            want = truth(name)[item["row"], side]
            assert item[f"{side}_tokens"] == len(want["ids"])
            assert abs(item[f"policy_{side}_logp"] - float(want["policy"].double().sum())) <= 1e-4


@pytest.mark.parametrize("name", NAMES)
def test_sampling_stops_at_the_turn_end(name):
    """Generation stops at the template's turn end (not only at EOS): the model is pushed to emit it third."""
    tokenizer, policy, _ = family(name)
    turn_end = tokenizer.convert_tokens_to_ids(FAMILIES[name].turn_end)
    calls = []

    def push(module, inputs, output):
        calls.append(1)
        if len(calls) >= 3:
            output = output.clone()
            output[..., turn_end] += 1e4
        return output

    handle = policy.get_output_embeddings().register_forward_hook(push)
    try:
        samples, _ = sample_answers(policy, tokenizer, [FAMILY_PAIRS[0]["prompt"]],
                                    settings=SamplingSettings(max_new_tokens=12, temperature=0.0, batch_size=1))
    finally:
        handle.remove()
    answer = samples[0]
    assert answer.finished and answer.answer_ids[-1] == turn_end and len(answer.answer_ids) == 3


def test_packing_refusals_are_explained_and_exact(caplog):
    """A hybrid with short-convolution layers cannot be packed (its state runs through the packed order): the
    refusal is logged once, and the pairs run unpacked, equal to the model's own forward."""
    import transformers

    fam = FAMILIES["smollm2"]
    tokenizer = build_family_tokenizer(fam)
    config = transformers.Lfm2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                     num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                                     layer_types=["conv", "full_attention", "conv"], max_position_embeddings=256)
    torch.manual_seed(0)
    model = transformers.Lfm2ForCausalLM(config).eval()
    pairs = PairTokenizer(tokenizer, TokenizeSettings(None, None)).tokenize_batch(family_examples())
    batch = collate_pairs(pairs, tokenizer.pad_token_id, pack=True)
    with caplog.at_level("INFO", logger="tokensift.attention"):
        with torch.no_grad():
            out = token_logps(model, batch.input_ids, batch.prompt_lens, batch.response_mask, packed=batch.packed)
            token_logps(model, batch.input_ids, batch.prompt_lens, batch.response_mask, packed=batch.packed)
    refusals = [r.message for r in caplog.records if "packing is off" in r.message]
    assert len(refusals) == 1 and "layer types conv are not attention" in refusals[0]
    got = rows_of(pairs, out.logps)
    for pair in pairs:
        ex = family_examples()[pair.row]
        for side, reply in (("chosen", ex.chosen), ("rejected", ex.rejected)):
            prompt_ids, ids = template_ids(tokenizer, ex.prompt, reply, fam.turn_end)
            want = own_forward_logps(model, prompt_ids, ids)
            assert (got[pair.row, side].double() - want.double()).abs().max() <= FP32

    llama = build_family_model(fam, len(tokenizer))
    llama.config._attn_implementation = "flash_attention_2"  # what GPU users load; takes no custom mask
    assert not can_pack(llama)


def test_a_forward_that_builds_no_mask_is_refused():
    tokenizer, policy, _ = family("smollm2")
    positions, branch, _ = packed_layout(torch.tensor([2]), torch.tensor([1]), 4)
    with pytest.raises(PackingRefused, match="built no attention mask"):
        with own_attention(policy, positions, branch):
            pass  # no forward: no mask was asked for


@pytest.mark.parametrize("name", ["mistral", "gemma2", "qwen2", "llama3"])
@pytest.mark.parametrize("row_tokens,scale", [(1, None), (150, None), (10_000, None), (1, 1e9)],
                         ids=["bins-of-longest", "bins-of-150", "one-row", "cost-model-width"])
def test_padding_free_rows_equal_the_models_own_forward(name, row_tokens, scale):
    """Pairs back to back in rows (first-fit to `row_tokens`, to the width dense attention's cost model picks, or
    all in one row): every label's log-prob and the gradient of their sum equal the one-pair-per-row layout and
    the model's own forward (sliding windows, alternating layers and soft-capping included)."""
    tokenizer, policy, _ = family(name)
    pairs, _ = tokenized(name)
    padded = collate_pairs(pairs, tokenizer.pad_token_id, pack=True)
    free = collate_pairs(pairs, tokenizer.pad_token_id, pack=True, row_tokens=row_tokens, attention_scale=scale)
    if scale:  # attention counted as free: rows at least as full as those of the longest pair
        longest = collate_pairs(pairs, tokenizer.pad_token_id, pack=True, row_tokens=1)
        assert free.packed.input_ids.numel() <= longest.packed.input_ids.numel()
    if row_tokens == 10_000:
        assert free.packed.input_ids.shape[0] == 1 and free.packed.padding == 0.0
    grads = []
    for batch in (padded, free):
        policy.zero_grad()
        out = token_logps(policy, batch.input_ids, batch.prompt_lens, batch.response_mask, packed=batch.packed)
        assert_close(rows_of(pairs, out.logps), name, "policy", FP32)
        out.logps.sum().backward()
        grads.append({k: p.grad.clone() for k, p in policy.named_parameters()})
    policy.zero_grad()
    for key in grads[0]:
        assert torch.allclose(grads[0][key], grads[1][key], atol=1e-5, rtol=1e-4), key


@pytest.mark.parametrize("name", ["mistral", "gemma2", "llama3"])
@pytest.mark.parametrize("varlen", [False, True], ids=["own-mask", "position-ids"])
def test_padding_free_sequences_equal_the_models_own_forward(name, varlen):
    """SFT sequences (prompt + chosen) back to back in rows: with the model's own mask on segments, and by
    position_ids alone (what flash-attention's varlen kernels read; transformers builds the same document mask
    from them for sdpa/eager, which is how this is checked on a CPU)."""
    from tokensift.data.collate import collate_sequences
    from tokensift.logprobs import packed_hidden

    tokenizer, policy, _ = family(name)
    pairs, _ = tokenized(name)
    batch = collate_sequences([p.prompt_ids for p in pairs], [p.chosen_ids for p in pairs], tokenizer.pad_token_id,
                              pack=True, row_tokens=10_000)
    assert batch.packed.input_ids.shape[0] == 1
    from tokensift.data.positions import packed_pair_indices

    packed = batch.packed
    rows, hidden_pos, _ = packed_pair_indices(packed.prompt_lens, packed.chosen_lens, batch.response_mask,
                                              packed.rows, packed.offsets)
    with torch.no_grad():
        out = token_logps(policy, batch.input_ids, batch.prompt_lens, batch.response_mask, packed=packed)
        if varlen:  # the same hidden states through the position_ids route
            own = packed_hidden(policy, packed, hidden_pos, rows)
            by_position = packed_hidden(policy, packed, hidden_pos, rows, varlen=True)
            assert (own - by_position).abs().max() <= FP32
    for i, pair in enumerate(pairs):
        want = truth(name)[pair.row, "chosen"]["policy"]
        assert (out.logps[i, : len(pair.chosen_ids)].double() - want.double()).abs().max() <= FP32
