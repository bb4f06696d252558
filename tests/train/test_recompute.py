"""Selective recomputation (train/recompute.py): same log-probs and gradients on every family, less stored.

The gradients are compared bit for bit: the rewired forward runs the model's own ops in the same order, and the
recomputation in the backward pass repeats them exactly (CPU, fp32).
"""

from __future__ import annotations

import copy

import pytest
import torch
from families import FAMILIES, build_family_model, build_family_tokenizer, family_examples

from tokensift.data.collate import collate_pairs
from tokensift.data.tokenize import PairTokenizer, TokenizeSettings
from tokensift.logprobs import token_logps
from tokensift.train.recompute import enable_selective_recompute

NAMES = list(FAMILIES)


def family_batch(name: str):
    fam = FAMILIES[name]
    tokenizer = build_family_tokenizer(fam)
    pairs = PairTokenizer(tokenizer, TokenizeSettings(max_length=None, max_prompt_length=None)).tokenize_batch(
        family_examples())
    return tokenizer, collate_pairs(pairs, tokenizer.pad_token_id, pack=True, row_tokens=1)


def stored_bytes(model, batch) -> tuple[torch.Tensor, dict, int]:
    """The summed log-probs, the gradients, and the bytes the autograd graph stores (each storage counted once)."""
    storages = {}
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(tensor):
        pointer = tensor.untyped_storage().data_ptr()
        if pointer not in parameters:
            storages[pointer] = tensor.untyped_storage().nbytes()
        return tensor

    model.zero_grad()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = token_logps(model, batch.input_ids, batch.prompt_lens, batch.response_mask, packed=batch.packed)
    total = out.logps.sum()
    total.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    return total.detach(), grads, sum(storages.values())


@pytest.mark.parametrize("name", NAMES)
def test_same_gradients_and_less_stored_on_every_family(name):
    tokenizer, batch = family_batch(name)
    plain = build_family_model(FAMILIES[name], len(tokenizer), seed=0, hidden=64)
    rewired = copy.deepcopy(plain)
    counts = enable_selective_recompute(rewired)
    layers = plain.config.num_hidden_layers
    assert counts["mlps"] == layers and counts["mlps_kept"] == 0, counts  # every family's MLP is a gated MLP
    assert counts["norms"] >= 2 * layers + 1, counts  # two per layer and the final one, at least
    plain.train()
    rewired.train()
    value, grads, plain_bytes = stored_bytes(plain, batch)
    value2, grads2, rewired_bytes = stored_bytes(rewired, batch)
    assert torch.equal(value, value2)
    for key in grads:
        assert torch.equal(grads[key], grads2[key]), key
    assert rewired_bytes < 0.8 * plain_bytes, (rewired_bytes, plain_bytes)


def test_no_grad_paths_and_copies_are_untouched():
    """Generation, scoring and the reference cache run without a graph: the rewired modules call their own
    forward; a deep copy of a rewired model (a reference snapshot) stays rewired to its own modules."""
    name = "llama3"
    tokenizer, batch = family_batch(name)
    model = build_family_model(FAMILIES[name], len(tokenizer), seed=0)
    ids = batch.packed.input_ids[:, :20]
    with torch.no_grad():
        before = model(input_ids=ids).logits
    enable_selective_recompute(model)
    assert enable_selective_recompute(model) == {"norms": 0, "mlps": 0, "mlps_kept": 0}  # idempotent
    with torch.no_grad():
        assert torch.equal(before, model(input_ids=ids).logits)
    snapshot = copy.deepcopy(model)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(1.0)  # the snapshot must not read the original's weights
        assert torch.equal(before, snapshot(input_ids=ids).logits)
    snapshot.train()
    snapshot(input_ids=ids).logits.sum().backward()
    assert all(p.grad is not None for p in snapshot.parameters() if p.requires_grad)


class SwappedMLP(torch.nn.Module):
    """A gated MLP by its attributes that computes something else: down(act(up) * gate)."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.gate_proj = torch.nn.Linear(width, 2 * width, bias=False)
        self.up_proj = torch.nn.Linear(width, 2 * width, bias=False)
        self.down_proj = torch.nn.Linear(2 * width, width, bias=False)
        self.act_fn = torch.nn.SiLU()

    def forward(self, x):
        return self.down_proj(self.act_fn(self.up_proj(x)) * self.gate_proj(x))


def test_an_mlp_with_another_structure_keeps_its_own_forward():
    torch.manual_seed(0)
    model = torch.nn.Sequential(SwappedMLP(), torch.nn.LayerNorm(8))
    x = torch.randn(2, 5, 8, requires_grad=True)
    expected = model(x)
    counts = enable_selective_recompute(model)
    assert counts == {"norms": 1, "mlps": 0, "mlps_kept": 1}
    out = model(x)
    assert torch.equal(expected, out)
    assert "partial" not in type(model[0].__dict__.get("forward", model[0].forward)).__name__


def test_the_trainer_rewires_unless_everything_is_recomputed(tmp_path, model_dir):
    from tokensift.train.config import TrainConfig
    from tokensift.train.loop import Trainer
    from tokensift.data.example import PreferenceExample  # noqa: F401  (data written below as JSONL)
    import json

    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"question {i}", "chosen": "a good answer", "rejected": "no"}) + "\n"
                            for i in range(4)))
    seen = {}
    for flag, checkpointing in ((True, False), (False, False), (True, True)):
        config = TrainConfig(data=str(data), model=str(model_dir), output_dir=str(tmp_path / f"out-{flag}-{checkpointing}"),
                             loss="simpo", batch_size=2, max_steps=1, progress=False, save_every=0,
                             selective_recompute=flag, gradient_checkpointing=checkpointing)
        trainer = Trainer(config)
        seen[flag, checkpointing] = any(getattr(m, "_tokensift_recompute", False) for m in trainer.model.modules())
    assert seen == {(True, False): True, (False, False): False, (True, True): False}


def test_lora_adapters_in_the_mlp_get_the_same_gradients():
    """LoRA on every projection (the down projection runs inside the recomputed tail): same adapter gradients."""
    from peft import LoraConfig, get_peft_model

    tokenizer, batch = family_batch("qwen2")
    targets = ["q_proj", "v_proj", "gate_proj", "up_proj", "down_proj"]
    grads = []
    for rewire in (False, True):
        model = build_family_model(FAMILIES["qwen2"], len(tokenizer), seed=0, hidden=64)
        torch.manual_seed(1)
        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=targets, lora_dropout=0.0,
                                                 init_lora_weights=False))
        if rewire:
            counts = enable_selective_recompute(model)
            assert counts["mlps"] == model.config.num_hidden_layers
        model.train()
        grads.append(stored_bytes(model, batch)[1])
    adapters = [k for k in grads[0] if "lora_" in k]
    assert adapters and all(grads[0][k] is not None for k in adapters)
    for key in adapters:
        assert torch.equal(grads[0][key], grads[1][key]), key


@pytest.mark.parametrize("name", ["llama3", "gemma2", "phi3"])
def test_norm_outputs_are_recomputed_not_stored(name):
    """The projections after a norm keep a note instead of its output (module doc): no stored tensor shares a
    storage with any norm's output, where the plain model stores every one of them."""
    tokenizer, batch = family_batch(name)
    plain = build_family_model(FAMILIES[name], len(tokenizer), seed=0, hidden=64)
    rewired = copy.deepcopy(plain)
    enable_selective_recompute(rewired)
    for model, expect_stored in ((plain, True), (rewired, False)):
        kept = []  # the outputs themselves, so no later tensor can reuse their memory
        hooks = [m.register_forward_hook(lambda mod, args, out: kept.append(out))
                 for n, m in model.named_modules() if n.endswith("layernorm") and not list(m.children())]
        stored = set()

        def pack(tensor):
            stored.add(tensor.untyped_storage().data_ptr())
            return tensor

        model.train()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = token_logps(model, batch.input_ids, batch.prompt_lens, batch.response_mask, packed=batch.packed)
        for hook in hooks:
            hook.remove()
        outputs = {t.untyped_storage().data_ptr() for t in kept}
        assert len(outputs) >= 2 * model.config.num_hidden_layers
        assert bool(outputs & stored) == expect_stored
        out.logps.sum().backward()  # the recomputation runs in the backward pass


def test_a_norm_input_changed_in_place_is_detected():
    """The recomputation reads the norm's input: changed in place after the forward pass, it must raise, never
    give a silently different gradient."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Sequential(torch.nn.LayerNorm(8), torch.nn.Linear(8, 8)))
    enable_selective_recompute(model)
    x = torch.randn(2, 8, requires_grad=True)
    hidden = x * 1.0
    y = model[0](hidden)
    with torch.no_grad():
        hidden.add_(1.0)
    with pytest.raises(RuntimeError, match="selective recompute"):
        y.sum().backward()


def test_cpu_sdpa_groups_keys_and_values_during_packed_forwards():
    """On the CPU the packed layouts hand grouped keys/values to sdpa as they are (attention.grouped_keys_on_cpu);
    transformers' own choice is back in place afterwards."""
    from transformers.integrations import sdpa_attention

    from tokensift.attention import grouped_keys_on_cpu

    model = build_family_model(FAMILIES["llama3"], 64, seed=0, hidden=64)
    key = torch.zeros(1, 2, 5, 16)
    mask = torch.ones(1, 1, 5, 5, dtype=torch.bool)
    original = sdpa_attention.use_gqa_in_sdpa
    assert not original(mask, key, key)  # with a mask transformers repeats the heads
    with grouped_keys_on_cpu(model):
        assert sdpa_attention.use_gqa_in_sdpa(mask, key, key)
    assert sdpa_attention.use_gqa_in_sdpa is original


@pytest.mark.parametrize("name", ["qwen2", "llama3"])
def test_whole_layer_checkpointing_on_packed_grouped_query_rows(name):
    """Gradient checkpointing recomputes a layer outside the packed forward's contexts: the keys the forward gave
    CPU sdpa grouped would come back repeated (a CheckpointError on their shapes). Same gradients as without."""
    tokenizer, batch = family_batch(name)
    grads = []
    for checkpointing in (False, True):
        model = build_family_model(FAMILIES[name], len(tokenizer), seed=0, hidden=64)
        assert model.config.num_key_value_heads < model.config.num_attention_heads
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        token_logps(model, batch.input_ids, batch.prompt_lens, batch.response_mask,
                    packed=batch.packed).logps.sum().backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], atol=1e-5), n
