"""Parity with TRL's ORPO and CPO trainers (trl.experimental), on the same logits: their loss functions and their
log-prob and NLL code, called on the inputs we give our pure functions, with the gradients back to the logits.

TRL's ORPOTrainer and CPOTrainer need a model and a dataset to construct; the parts that make the loss do not use
them, so they are called on a stand-in holding the settings they read (`beta`, `alpha`, `loss_type`,
`label_smoothing`, `simpo_gamma`, `accelerator.device`). Everything else is TRL's own code: `get_batch_logps`
(label -100 outside the response, mean or sum over it), `odds_ratio_loss`, `cpo_loss`, and the NLL as their
`concatenated_forward` computes it (`nn.CrossEntropyLoss` over the chosen labels).

The NLL term: ours is each chosen response's mean NLL averaged over pairs (the papers' form, exact under
gradient accumulation); TRL's is the mean over every chosen token of the batch. Chosen responses of equal length
make the two the same number, so the chosen side has one length here and the rejected side is ragged. (TRL's ORPO
also counts the prompt's tokens in its NLL; that part is not comparable and not compared: both sides get
response-only labels.)
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tokensift import losses as L

pytest.importorskip("trl")
orpo_module = pytest.importorskip("trl.experimental.orpo.orpo_trainer")
cpo_module = pytest.importorskip("trl.experimental.cpo.cpo_trainer")

B, T, V = 4, 7, 11
CHOSEN_LENGTH = 5
REJECTED_LENGTHS = [2, 6, 4, 7]


def logits_and_labels(seed):
    """Random logits [2B, T, V] (chosen rows first) and labels with -100 outside each response."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2 * B, T, V, generator=generator, dtype=torch.float64).float().requires_grad_(True)
    labels = torch.randint(0, V, (2 * B, T), generator=generator)
    for n, length in enumerate([CHOSEN_LENGTH] * B + REJECTED_LENGTHS):
        labels[n, :T - length] = -100  # the prompt part: TRL masks it with -100
    return logits, labels


def our_inputs(logits, labels):
    """Per-token log-probs in label space and masks, as the engine hands them to a loss (chosen, rejected)."""
    # TRL's get_batch_logps shifts: logits at t predict labels at t + 1
    shifted_logits, shifted_labels = logits[:, :-1], labels[:, 1:]
    mask = shifted_labels != -100
    token_logps = torch.log_softmax(shifted_logits, -1).gather(-1, shifted_labels.clamp(min=0)[..., None])[..., 0]
    return dict(chosen_logps=token_logps[:B], chosen_mask=mask[:B], rejected_logps=token_logps[B:],
                rejected_mask=mask[B:])


def trl_nll(logits, labels):
    """TRL's concatenated_forward NLL: cross entropy over the chosen rows' labels (shifted, -100 ignored)."""
    chosen_logits, chosen_labels = logits[:B, :-1, :].contiguous(), labels[:B, 1:].contiguous()
    return torch.nn.CrossEntropyLoss()(chosen_logits.view(-1, V), chosen_labels.view(-1))


def stand_in(**settings):
    return SimpleNamespace(accelerator=SimpleNamespace(device=torch.device("cpu")), **settings)


@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
def test_orpo_matches_trl(beta):
    trainer = orpo_module.ORPOTrainer
    logits, labels = logits_and_labels(seed=int(beta * 10))
    mean_logps = trainer.get_batch_logps(logits, labels, average_log_prob=True)
    ratio_losses, chosen_rewards, rejected_rewards, mean_ratio, mean_log_odds = trainer.odds_ratio_loss(
        stand_in(beta=beta), mean_logps[:B], mean_logps[B:])
    trl_loss = trl_nll(logits, labels) - ratio_losses.mean()
    trl_loss.backward()
    trl_grad = logits.grad.clone()

    logits.grad = None
    out = L.orpo_loss(**our_inputs(logits, labels), beta=beta)
    out.loss.backward()
    torch.testing.assert_close(out.loss, trl_loss, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(logits.grad, trl_grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out.metrics["rewards/chosen"], chosen_rewards, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out.metrics["rewards/rejected"], rejected_rewards, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out.metrics["log_odds_ratio"].mean(), mean_log_odds, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out.metrics["log_odds_chosen"].mean(), mean_ratio, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("beta, alpha, label_smoothing", [(0.1, 1.0, 0.0), (0.5, 0.3, 0.2), (2.0, 0.0, 0.1)])
def test_cpo_matches_trl(beta, alpha, label_smoothing):
    trainer = cpo_module.CPOTrainer
    logits, labels = logits_and_labels(seed=3)
    sums = trainer.get_batch_logps(logits, labels, average_log_prob=False)
    settings = stand_in(beta=beta, alpha=0.0, loss_type="sigmoid", label_smoothing=label_smoothing, simpo_gamma=0.5)
    losses, chosen_rewards, rejected_rewards = trainer.cpo_loss(settings, sums[:B], sums[B:])
    trl_loss = losses.mean() + alpha * trl_nll(logits, labels)
    trl_loss.backward()
    trl_grad = logits.grad.clone()

    logits.grad = None
    out = L.cpo_loss(**our_inputs(logits, labels), beta=beta, alpha=alpha, label_smoothing=label_smoothing)
    out.loss.backward()
    torch.testing.assert_close(out.loss, trl_loss, atol=1e-5 * max(1.0, beta), rtol=1e-6)
    torch.testing.assert_close(logits.grad, trl_grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out.metrics["rewards/chosen"], chosen_rewards, atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(out.metrics["rewards/rejected"], rejected_rewards, atol=1e-5, rtol=1e-6)


def test_the_nll_terms_differ_from_trls_when_chosen_lengths_differ():
    """The documented difference, shown: with ragged chosen lengths the per-pair mean and TRL's batch token mean
    are different numbers (so the equal-length setup above is what makes the comparison exact)."""
    logits, labels = logits_and_labels(seed=5)
    labels[0, :T - 2] = -100  # the first chosen response now has 2 tokens, the others 5
    ours = L.nll_term(our_inputs(logits, labels)["chosen_logps"], our_inputs(logits, labels)["chosen_mask"]).mean()
    assert abs(ours.item() - trl_nll(logits, labels).item()) > 1e-3
