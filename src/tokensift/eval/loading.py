"""Model loading for evaluation: device choice and tokenizer agreement (models.free_memory frees one before the next).

Evaluations hold one model at a time (policy, then reference, then opponent), so evaluating a 7B policy
against a 7B reference needs the memory of one 7B model, not two.
"""

from __future__ import annotations

import torch

from tokensift.errors import UserError
from tokensift.models import load_model, load_tokenizer, same_tokenizer


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device={name} but no CUDA device is available; use device=cpu")
    return torch.device(name)


def load_eval_model(name: str, config, device: torch.device):
    model = load_model(name, dtype=config.dtype, trust_remote_code=config.trust_remote_code, device=device,
                       attn_implementation=config.attn_implementation)
    model.eval()
    return model


def check_same_tokenizer(tokenizer, other_name: str, role: str, config) -> None:
    """Log-probs of the same token ids only compare when both models read them as the same text."""
    other = load_tokenizer(other_name, trust_remote_code=config.trust_remote_code)
    if not same_tokenizer(tokenizer, other):
        raise UserError(
            f"the {role} '{other_name}' uses another tokenizer (vocabulary, special tokens or chat template) "
            f"than the policy '{config.model}'; log-probs of the same tokens cannot be compared"
        )


