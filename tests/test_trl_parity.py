"""Parity with a peer: tokensift vs TRL's `DPOTrainer` on the same tiny model and the same token ids.

What is compared (float32, CPU, tiny Llama from `conftest.build_model`, ChatML tokenizer from
`conftest.build_tokenizer`, a batch of 6 pairs with ragged prompt and response lengths):

1. Tokenisation of conversational data (`test_tokenisation_matches_trl_up_to_template_suffix`): TRL tokenises
   `prompt` with `add_generation_prompt=True` and `prompt + [assistant reply]` through the chat template; we
   render the prompt the same way, tokenise `prompt_text + reply` and append the EOS.
   **Convention difference (legitimate, documented here):** the prompts are identical, but TRL's completion is
   the chat template's rendering of the assistant turn, so with ChatML it ends with `<|im_end|>` *and the
   template's trailing "\\n"* (one more token, id of "Ċ"). Ours ends at the EOS `<|im_end|>`. So
   `trl_ids == our_ids + [newline]` for every response; TRL trains the model to emit one token after the
   end-of-turn token that is never generated at inference. Because of this, every numeric comparison below feeds
   **our** token ids to both sides (TRL's collator accepts pre-tokenised `prompt_ids` / `chosen_ids` /
   `rejected_ids` dicts; its `_prepare_dataset` does not, it always re-tokenises strings/conversations, so the
   ids are handed to `trainer.data_collator` directly).
2. Collation (`test_collator_layout_matches_ours`): TRL's `DataCollatorForPreference` and our `collate_pairs`
   both lay a batch out as [chosen_1..B, rejected_1..B], right-padded with the pad id, and mark the same
   response tokens (TRL: `completion_mask` in sequence space; ours: `response_mask` in label space,
   shifted by the prompt length).
3. Policy log-probs (`test_policy_logps_match_trl`): per token (TRL's fused LM head output `log_probs`,
   captured with a forward hook during `DPOTrainer.compute_loss`, in shifted sequence space; ours from
   `token_logps`, in label space), per sequence (TRL's `compute_ref_log_probs` run on the policy model vs our
   masked sums), and TRL's logged metrics `logps/chosen`, `logps/rejected` (batch means) vs the means of our
   `LossOutput.metrics`. TRL runs the model with a padding attention mask and sums its per-token log-probs
   over the whole shifted row (zeros outside the completion); we run without a mask (right padding under causal
   attention makes it unnecessary), cut the batch after the last label and sum over the label-space mask.
4. Losses and gradients (`test_loss_and_gradients_match_trl`): every loss type of TRL's DPOTrainer but sft
   (`TRL_LOSS_TYPES`: sigmoid is our `dpo`; robust, aot and aot_unpaired at label_smoothing 0.2, exo_pair at 1e-3,
   discopop at both sides' default tau 0.05), each at beta 0.1, 1.0 and 3.0 (at 3.0 the hinge is active on some pairs and
   flat on others, both branches checked), with a live reference model (`build_model(seed=1)`)
   that differs from the policy (`build_model(seed=0)`). TRL: `DPOTrainer.training_step` (model.train(),
   `compute_loss`, `accelerator.backward`) with gradient accumulation 1 (`current_gradient_accumulation_steps`,
   which `train()` sets per step, is set to 1 by hand). Ours: what `train/loop.py` does,
   `LabelLogps(model)` forward, `objective.compute_loss(TrainConfig(...), batch, logps)`, `backward()`,
   with the reference sums from the engine's `ReferenceLogpCache` (float32 per-token log-probs in Parquet,
   summed in float64). Each side gets its own freshly built policy; the loss value and every parameter's
   `.grad` must agree. TRL's logged `rewards/*` metrics (batch means) are compared with ours as well
   (metric names differ: TRL `rewards/margins`, `rewards/accuracies`; ours `rewards/margin`,
   `rewards/accuracy`, per pair).
5. Precomputed reference (`test_precomputed_reference_matches_trl`): TRL with `precompute_ref_log_probs=True`
   reads `ref_chosen_logps` / `ref_rejected_logps` from the batch; we give it the values TRL's own
   `compute_ref_log_probs` produces for the reference model, compare them with our cached reference sums, and
   compare the resulting losses and gradients.

Truncation is off on both sides (`max_length=None`): the conventions differ (TRL cuts prompt+completion to
`max_length` keeping the start and drops pairs whose prompt fills it; tokensift keeps the prompt's end within
`max_prompt_length` and each response's start within the rest), so truncated pairs are not comparable.

Tolerances (measured worst differences in brackets, torch 2.13 CPU, trl 1.16):
- per-token log-probs: atol 1e-5 [0.0: TRL's fused head and ours give bit-identical values here];
- sequence log-prob *sums* (magnitude 24-174 nats, where one float32 ulp is 2e-6 to 1.5e-5): atol 1e-5 plus
  rtol 1e-6 [policy sums 3.8e-6; reference sums, TRL's float32 sum vs the cache's float64 sum, 1.5e-5 = 1 ulp];
- losses: atol 1e-5 * max(1, beta) [beta 0.1: 1.9e-6; beta 1: 1.9e-6; beta 3: 5.7e-6]. The loss is a function of
  beta * h, so the 1-ulp disagreement of the float32 sums is multiplied by beta; at beta <= 1 this is plain 1e-5;
- gradients: atol 1e-5 at beta <= 1 [2.7e-6]; at beta = 3 atol 1e-5 with rtol 1e-4 [1.8e-5 on gradients of
  magnitude up to 5.6, i.e. a relative 4e-6], for the same beta-amplified rounding reason; plus, per parameter
  tensor, 2e-4 of its largest |gradient| (GRAD_SCALE_RTOL). The brackets were measured on an AMD EPYC; on an Intel
  Xeon (other float32 kernels, other summation order) the same tests differ by up to 5.0e-5 of the tensor's
  largest gradient (EXO at beta 3; DiscoPOP, APO, BCO and SPPO 2-4e-5), 4.8e-5 absolute on the tied embedding.
  A wrong gradient (a missing term, a factor of beta) differs by 1e-2 of it or more.
"""

from __future__ import annotations

import logging
import math
import warnings

import pytest
import torch

from conftest import build_model
from tokensift.data.collate import collate_pairs
from tokensift.data.example import PreferenceExample
from tokensift.data.tokenize import TokenizeSettings, tokenize_examples
from tokensift.logprobs import LabelLogps, token_logps
from tokensift.train.config import TrainConfig
from tokensift.train.objective import compute_loss as tokensift_compute_loss
from tokensift.train.ref_cache import ReferenceLogpCache
from tokensift.train.trl_names import TRL_LOSS_TYPES

datasets = pytest.importorskip("datasets")
trl = pytest.importorskip("trl")
from trl import DPOConfig, DPOTrainer  # noqa: E402

POLICY_SEED, REFERENCE_SEED = 0, 1
ATOL = 1e-5
SUM_RTOL = 1e-6
GRAD_RTOL = 1e-4
GRAD_SCALE_RTOL = 2e-4  # of a parameter tensor's largest |gradient|: float32 kernels differ between CPUs (docstring)
# losses whose gradient is not bounded by beta: the factor by which they amplify the 1-ulp rounding of the log-prob
# sums (module docstring), from the TRL loss value. SPPO's squared, unscaled log-ratios: 2 |ratio -+ 1/(2 beta)|,
# about 2 sqrt(loss); EXO's KL to a smoothed target: its gradient in z carries log((1 - eps) / eps) (6.9 at 1e-3).
AMPLIFIED = {"sppo_hard": lambda loss: 2 * math.sqrt(abs(loss)), "exo_pair": lambda loss: math.log((1 - 1e-3) / 1e-3)}
# label_smoothing per TRL loss type that reads it (EXO's epsilon must be > 0; the paper's 1e-3); others get 0
LABEL_SMOOTHING = {"robust": 0.2, "exo_pair": 1e-3, "aot": 0.2, "aot_unpaired": 0.2}
# TRL loss_type -> tokensift loss name: the table `loss_type=` reads (train/trl_names.py); each pairwise entry is
# checked against TRL below (sft is TRL's NLL term, not a preference loss)
LOSS_NAMES = {trl: ours for trl, ours in TRL_LOSS_TYPES.items() if trl != "sft"}
# transformers 5 renamed gradient_checkpointing; TRL 1.16 still reads the old name on every forward
pytestmark = pytest.mark.filterwarnings("ignore:.*gradient_checkpointing.*:FutureWarning")

EXAMPLES = [
    PreferenceExample([{"role": "user", "content": "What is the capital of France?"}],
                      "Paris is the capital of France.", "I hate it.", 0),
    PreferenceExample([{"role": "system", "content": "Please answer the question politely and briefly."},
                       {"role": "user", "content": "how do I bake bread?"}],
                      "Mix flour, water, salt and yeast, then bake.", "Bread is terrible, awful and sad.", 1),
    PreferenceExample([{"role": "user", "content": "What is the capital of France?"},
                       {"role": "assistant", "content": "Paris."},
                       {"role": "user", "content": "Are you sure? Please answer politely."}],
                      "Yes.", "No, I hate this question. It is terrible, awful and sad, the worst.", 2),
    PreferenceExample([{"role": "user", "content": "hi"}],
                      "Happy joyful excellent good nice fine okay.", "bad worse worst", 3),
    PreferenceExample([{"role": "user", "content": "Numbers: 0 1 2 3 4 5"}],
                      "6 7 8 9 10", "100 1000 fine", 4),
    PreferenceExample([{"role": "user", "content": "I love this movie, it is wonderful and great! The quick brown "
                                                   "fox jumps over the lazy dog. What do you think?"}],
                      "Okay.", "This is terrible, awful and sad. I hate it. The lazy dog is the worst.", 5),
]


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def pairs(tokenizer):
    pairs, report = tokenize_examples(tokenizer, EXAMPLES, TokenizeSettings(max_length=None, max_prompt_length=None))
    assert report.boundary_mismatches == 0 and report.prompts_truncated == 0 and report.responses_truncated == 0
    # the batch really is ragged on every axis
    assert len({len(p.prompt_ids) for p in pairs}) >= 4
    assert len({len(p.chosen_ids) for p in pairs}) >= 4 and len({len(p.rejected_ids) for p in pairs}) >= 4
    return pairs


def conversational_dataset(examples):
    return datasets.Dataset.from_list([
        {"prompt": ex.prompt,
         "chosen": [{"role": "assistant", "content": ex.chosen}],
         "rejected": [{"role": "assistant", "content": ex.rejected}]}
        for ex in examples
    ])


def make_trl_trainer(tmp_path, tokenizer, loss_type="sigmoid", beta=0.1, label_smoothing=0.0, precompute=False,
                     policy=None, ref_model=None, loss_weights=None):
    """A CPU, float32, offline DPOTrainer on the tiny policy/reference pair (both freshly built unless given)."""
    vocab = len(tokenizer)
    loss_types = list(loss_type) if isinstance(loss_type, (list, tuple)) else [loss_type]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the gradient_checkpointing rename (see pytestmark), TRL's advice
        args = DPOConfig(
            output_dir=str(tmp_path / f"trl-{'-'.join(loss_types)}-{beta}-{precompute}"),
            report_to=[], bf16=False, fp16=False, use_cpu=True, gradient_checkpointing=False,
            beta=beta, loss_type=loss_types, loss_weights=loss_weights, label_smoothing=label_smoothing,
            precompute_ref_log_probs=precompute, max_length=None,
            per_device_train_batch_size=len(EXAMPLES), gradient_accumulation_steps=1,
            logging_strategy="no", save_strategy="no", disable_dropout=True, seed=0,
        )
        trainer = DPOTrainer(
            model=policy if policy is not None else build_model(vocab, POLICY_SEED),
            ref_model=ref_model if ref_model is not None else build_model(vocab, REFERENCE_SEED),
            args=args,
            train_dataset=conversational_dataset(EXAMPLES),
            processing_class=tokenizer,
        )
    assert trainer.beta == beta and trainer.loss_types == loss_types
    assert trainer.precompute_ref_logps is precompute
    return trainer


def trl_batch(trainer, pairs, ref_sums=None):
    """TRL's own collator run on our token ids (plus precomputed reference sums when given)."""
    features = []
    for p in pairs:
        feature = {"prompt_ids": p.prompt_ids.tolist(), "chosen_ids": p.chosen_ids.tolist(),
                   "rejected_ids": p.rejected_ids.tolist()}
        if ref_sums is not None:
            feature["ref_chosen_logps"], feature["ref_rejected_logps"] = ref_sums[p.row]
        features.append(feature)
    return trainer.data_collator(features)


def trl_training_step(trainer, batch):
    """`Trainer.training_step` as `train()` calls it with gradient accumulation 1: returns the detached loss."""
    trainer.current_gradient_accumulation_steps = 1  # set by `train()` per step; 1 = no accumulation
    trainer.model.zero_grad(set_to_none=True)
    trainer._metrics["train"].clear()
    return trainer.training_step(trainer.model, batch)


def trl_metric(trainer, name):
    values = trainer._metrics["train"][name]
    assert len(values) == 1, (name, values)
    return values[0]


def cached_reference_sums(tmp_path, tokenizer, pairs, ref_model):
    """The engine's reference path: per-token log-probs in the Parquet cache, summed per response."""
    cache = ReferenceLogpCache({"test": "trl-parity"}, folder=tmp_path / "ref-cache")
    assert cache.fill(ref_model, pairs, batch_size=4, pad_id=tokenizer.pad_token_id, device="cpu") == len(pairs)
    return cache.sums(pairs)


def tokensift_step(pairs, tokenizer, config: TrainConfig, ref_sums, policy):
    """One micro-step as `train/loop.py` runs it (one process, one micro-batch): forward, loss, backward."""
    batch = collate_pairs(pairs, tokenizer.pad_token_id, ref_sums)
    wrapper = LabelLogps(policy)
    wrapper.train()
    policy.zero_grad(set_to_none=True)
    out = wrapper(batch.input_ids, batch.prompt_lens, batch.response_mask)
    result = tokensift_compute_loss(config, batch, out.logps)
    # loop.py scales by weight * count / global_units * processes = 1 for a single full micro-batch
    result.loss.backward()
    return result


def grads(model):
    return {name: p.grad for name, p in model.named_parameters()}


def assert_grads_close(ours, theirs, rtol=0.0, atol=ATOL):
    assert ours.keys() == theirs.keys()
    worst = 0.0
    for name in ours:
        a, b = ours[name], theirs[name]
        assert a is not None and b is not None, f"{name}: missing gradient (ours {a is None}, TRL {b is None})"
        assert b.abs().max() > 0, f"{name}: TRL's gradient is zero, nothing is compared"
        diff = (a - b).abs().max().item()
        worst = max(worst, diff)
        scale = b.abs().max().item()
        assert torch.allclose(a, b, atol=atol + GRAD_SCALE_RTOL * scale, rtol=rtol), \
            f"{name}: max |diff| {diff:.3e}, largest |gradient| {scale:.3e}"
    return worst


# ------------------------------------------------------------------------------------------------ tests


def test_tokenisation_matches_trl_up_to_template_suffix(tmp_path, tokenizer, pairs):
    """TRL's conversational tokenisation vs ours: identical prompts, TRL's responses carry one extra "\\n" token.

    TRL renders the chosen/rejected turn with the chat template, whose ChatML rendering of an assistant turn is
    `{reply}<|im_end|>\\n`; TRL keeps everything after the prompt, so its completion ends `<|im_end|>`, "\\n".
    We tokenise `prompt_text + reply` and append the EOS `<|im_end|>`; we stop at the EOS (the token the model
    must learn to stop on). Reply tokens and the EOS itself are the same on both sides.
    """
    trainer = make_trl_trainer(tmp_path, tokenizer)
    newline = tokenizer.convert_tokens_to_ids("Ċ")  # byte-level BPE's "\n"
    assert newline == tokenizer("\n", add_special_tokens=False)["input_ids"][0]
    assert len(trainer.train_dataset) == len(pairs)
    for pair, row in zip(pairs, trainer.train_dataset):
        assert row["prompt_ids"] == pair.prompt_ids.tolist(), f"row {pair.row}: prompts differ"
        for side in ("chosen", "rejected"):
            ours = getattr(pair, f"{side}_ids").tolist()
            theirs = row[f"{side}_ids"]
            assert ours[-1] == tokenizer.eos_token_id
            assert theirs == ours + [newline], f"row {pair.row} {side}: TRL {theirs} vs ours {ours}"


def test_collator_layout_matches_ours(tmp_path, tokenizer, pairs):
    """Same ids, same [chosen..., rejected...] order, same right padding, same response positions."""
    trainer = make_trl_trainer(tmp_path, tokenizer)
    theirs = trl_batch(trainer, pairs)
    ours = collate_pairs(pairs, tokenizer.pad_token_id)
    assert torch.equal(theirs["input_ids"], ours.input_ids)
    seq_len = ours.input_ids.shape[1]
    lengths = ours.prompt_lens + ours.response_lens
    assert torch.equal(theirs["attention_mask"].bool(), torch.arange(seq_len)[None, :] < lengths[:, None])
    # completion_mask[n, prompt_len + i] == response_mask[n, i]
    completion = theirs["completion_mask"].bool()
    for n in range(ours.input_ids.shape[0]):
        start, width = int(ours.prompt_lens[n]), int(ours.response_lens[n])
        assert not completion[n, :start].any()
        assert torch.equal(completion[n, start:start + width], ours.response_mask[n, :width])
        assert not completion[n, start + width:].any()
    assert int(completion.sum()) == int(ours.response_mask.sum())


def test_policy_logps_match_trl(tmp_path, tokenizer, pairs):
    """Per-token and per-sequence policy log-probs, and TRL's logged `logps/*` metrics, vs ours."""
    trainer = make_trl_trainer(tmp_path, tokenizer)
    batch = trl_batch(trainer, pairs)
    captured = []
    hook = trainer.model.register_forward_hook(lambda module, args, output: captured.append(output.log_probs))
    try:
        with torch.no_grad():
            trainer._metrics["train"].clear()
            trainer.model.train()
            trainer.compute_loss(trainer.model, batch)
    finally:
        hook.remove()
    assert len(captured) == 1
    trl_tokens = captured[0]  # [2B, T-1]: position t holds log p(input_ids[t+1] | input_ids[:t+1])

    ours_batch = collate_pairs(pairs, tokenizer.pad_token_id)
    policy = build_model(len(tokenizer), POLICY_SEED)
    with torch.no_grad():
        ours = token_logps(policy, ours_batch.input_ids, ours_batch.prompt_lens, ours_batch.response_mask).logps

    # per token: our label i of row n is TRL's shifted position prompt_len + i - 1
    completion = batch["completion_mask"][:, 1:].bool()
    assert (trl_tokens[~completion] == 0).all(), "TRL must zero the log-probs outside the completion"
    worst = 0.0
    for n in range(ours.shape[0]):
        start, width = int(ours_batch.prompt_lens[n]), int(ours_batch.response_lens[n])
        theirs_n = trl_tokens[n, start - 1:start - 1 + width]
        ours_n = ours[n, :width]
        worst = max(worst, (theirs_n - ours_n).abs().max().item())
        assert torch.allclose(ours_n, theirs_n, atol=ATOL, rtol=0), f"sequence {n}: {(ours_n - theirs_n).abs().max()}"
    assert worst < ATOL

    # per sequence: TRL's own summing function (compute_ref_log_probs) applied to the policy
    with torch.no_grad():
        trl_chosen, trl_rejected = trainer.compute_ref_log_probs(trainer.model, batch)
    our_sums = torch.where(ours_batch.response_mask, ours, torch.zeros_like(ours)).sum(-1)
    torch.testing.assert_close(ours_batch.chosen(our_sums), trl_chosen, atol=ATOL, rtol=SUM_RTOL)
    torch.testing.assert_close(ours_batch.rejected(our_sums), trl_rejected, atol=ATOL, rtol=SUM_RTOL)

    # logged metrics: TRL logs batch means of the per-sequence sums; ours are per pair
    result = tokensift_compute_loss(
        TrainConfig(loss="dpo", beta=0.1),
        collate_pairs(pairs, tokenizer.pad_token_id, {p.row: (0.0, 0.0) for p in pairs}),
        ours,
    )
    for name in ("logps/chosen", "logps/rejected"):
        assert math.isclose(result.metrics[name].mean().item(), trl_metric(trainer, name), abs_tol=ATOL,
                            rel_tol=SUM_RTOL), name


@pytest.mark.parametrize("beta", [0.1, 1.0, 3.0])
@pytest.mark.parametrize("loss_type", sorted(LOSS_NAMES))
def test_loss_and_gradients_match_trl(tmp_path, tokenizer, pairs, loss_type, beta):
    """Loss value, every parameter gradient and the reward metrics, TRL (live reference) vs ours (cached reference).

    Both policies are `build_model(seed=0)`, built fresh per side; the reference is `build_model(seed=1)`.
    """
    label_smoothing = LABEL_SMOOTHING.get(loss_type, 0.0)
    trainer = make_trl_trainer(tmp_path, tokenizer, loss_type, beta, label_smoothing)
    trl_loss = trl_training_step(trainer, trl_batch(trainer, pairs))

    ref_sums = cached_reference_sums(tmp_path, tokenizer, pairs, build_model(len(tokenizer), REFERENCE_SEED))
    config = TrainConfig(loss=LOSS_NAMES[loss_type], beta=beta,
                         label_smoothing=label_smoothing if loss_type in LABEL_SMOOTHING else None)
    config.validate_selector(config.loss_spec, "none")
    config.check_unread_settings(config.loss_spec)  # the settings given are the ones this loss reads
    policy = build_model(len(tokenizer), POLICY_SEED)
    out = tokensift_step(pairs, tokenizer, config, ref_sums, policy)

    # float32 rounding of the log-prob sums (1 ulp, see the module docstring) reaches the loss multiplied by beta,
    # and by the loss's own factor where its gradient is not bounded (AMPLIFIED)
    factor = max(1.0, AMPLIFIED[loss_type](trl_loss.item())) if loss_type in AMPLIFIED else 1.0
    tol = ATOL * max(1.0, beta) * factor
    assert math.isfinite(out.loss.item())
    assert abs(out.loss.item() - trl_loss.item()) <= tol, (out.loss.item(), trl_loss.item())
    if loss_type == "hinge" and beta == 3.0:
        # the hinge must be active on some pairs and flat on others, or half of it is untested
        active = out.metrics["rewards/margin"] < 1
        assert active.any() and not active.all(), out.metrics["rewards/margin"]
    assert_grads_close(grads(policy), grads(trainer.model), rtol=0.0 if beta <= 1.0 else GRAD_RTOL,
                       atol=ATOL * factor)

    names = {"rewards/chosen": "rewards/chosen", "rewards/rejected": "rewards/rejected",
             "rewards/margin": "rewards/margins", "rewards/accuracy": "rewards/accuracies",
             "logps/chosen": "logps/chosen", "logps/rejected": "logps/rejected"}
    for ours_name, trl_name in names.items():
        metric_tol = tol if ours_name.startswith("rewards/") else max(ATOL, SUM_RTOL * 200)
        ours_mean, theirs_mean = out.metrics[ours_name].mean().item(), trl_metric(trainer, trl_name)
        assert math.isclose(ours_mean, theirs_mean, abs_tol=metric_tol), (ours_name, ours_mean, theirs_mean)


@pytest.mark.parametrize("loss_types, loss_weights", [
    (["sigmoid", "sft"], [1.0, 0.2]),  # RPO as TRL writes it: DPO plus the chosen responses' token-mean NLL
    (["sigmoid", "bco_pair", "sft"], [0.8, 0.2, 1.0]),  # MPO's mixture, the example of TRL's loss_weights help
    (["apo_zero", "nca_pair"], None),  # unset weights: 1 each, on both sides
])
def test_loss_mixtures_match_trl(tmp_path, tokenizer, pairs, loss_types, loss_weights):
    """TRL's loss_type=[...] with loss_weights, read through our TRL names (loss=a,b,... loss_weights=...): the
    weighted sum, its gradients, and each term logged as loss/NAME (their weighted sum is the loss)."""
    from tokensift.train.trl_names import TRL_NAMES

    beta = 0.5
    trainer = make_trl_trainer(tmp_path, tokenizer, loss_types, beta, loss_weights=loss_weights)
    trl_loss = trl_training_step(trainer, trl_batch(trainer, pairs))

    ref_sums = cached_reference_sums(tmp_path, tokenizer, pairs, build_model(len(tokenizer), REFERENCE_SEED))
    loss = TRL_NAMES["loss_type"][1](loss_types)
    config = TrainConfig(loss=loss, loss_weights=loss_weights, beta=beta)  # TRL's loss_weights is ours too
    assert config.loss_spec.name == ",".join(TRL_LOSS_TYPES[t] for t in loss_types)
    policy = build_model(len(tokenizer), POLICY_SEED)
    out = tokensift_step(pairs, tokenizer, config, ref_sums, policy)

    assert abs(out.loss.item() - trl_loss.item()) <= ATOL, (out.loss.item(), trl_loss.item())
    assert_grads_close(grads(policy), grads(trainer.model))
    terms = [out.metrics[f"loss/{TRL_LOSS_TYPES[t]}"].mean().item() for t in loss_types]
    assert len(set(terms)) == len(terms)  # the terms are different numbers, each logged
    assert math.isclose(sum(w * t for w, t in zip(loss_weights or [1.0] * len(terms), terms)), out.loss.item(),
                        abs_tol=ATOL)


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_precomputed_reference_matches_trl(tmp_path, tokenizer, pairs, loss_type):
    """TRL with `precompute_ref_log_probs=True` (reference sums read from the batch) vs our reference cache."""
    beta = 0.1
    ref_model = build_model(len(tokenizer), REFERENCE_SEED)
    trainer = make_trl_trainer(tmp_path, tokenizer, loss_type, beta, precompute=True, ref_model=ref_model)
    with torch.no_grad():
        ref_chosen, ref_rejected = trainer.compute_ref_log_probs(trainer.ref_model, trl_batch(trainer, pairs))
    trl_ref = {p.row: (float(c), float(r)) for p, c, r in zip(pairs, ref_chosen, ref_rejected)}

    ours_ref = cached_reference_sums(tmp_path, tokenizer, pairs, build_model(len(tokenizer), REFERENCE_SEED))
    for p in pairs:
        for theirs, ours in zip(trl_ref[p.row], ours_ref[p.row]):
            assert math.isclose(ours, theirs, abs_tol=ATOL, rel_tol=SUM_RTOL), (p.row, ours, theirs)

    batch = trl_batch(trainer, pairs, trl_ref)
    assert "ref_chosen_logps" in batch and "ref_rejected_logps" in batch
    trl_loss = trl_training_step(trainer, batch)
    policy = build_model(len(tokenizer), POLICY_SEED)
    out = tokensift_step(pairs, tokenizer, TrainConfig(loss=LOSS_NAMES[loss_type], beta=beta), ours_ref, policy)
    assert abs(out.loss.item() - trl_loss.item()) <= ATOL, (out.loss.item(), trl_loss.item())
    assert_grads_close(grads(policy), grads(trainer.model))


@pytest.fixture(autouse=True)
def _quiet_trl():
    """TRL/datasets log progress bars and once-per-process warnings; keep the test output readable."""
    for name in ("trl", "datasets", "transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)
    yield
