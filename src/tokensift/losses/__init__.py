"""Preference-optimisation losses as pure functions over per-token log-probs and masks, each declared once with
`@register` beside its function (core.py: the registry, the contract with the engine and the shared helpers).

Modules, one family each (importing them registers their losses, in this order):
    supervised      sft
    dpo             dpo, ipo, cdpo, robust, hinge, sigmoid_norm, exo_pair, discopop, aot, aot_unpaired
    reference_free  simpo, rrhf, sepo, orpo, cpo
    constrained     tdpo, tso
    anchored        nca_pair, bco_pair, sppo_hard, apo_zero, apo_down
    unpaired        kto, bco, apo_zero_unpaired (unpaired data: prompt, completion, label)
    combine         mixtures of the above (loss=a,b with loss_weights) and RPO's NLL term (rpo_alpha)

docs/losses.md has the table of every loss; docs/contributing.md says how to add one.
"""

from tokensift.losses.core import (CHOICES, LOSSES, LossOutput, LossSpec, check_declaration, engine_inputs,  # noqa: F401
                                   register)
from tokensift.losses.supervised import sft_loss  # noqa: F401
from tokensift.losses.dpo import (aot_loss, aot_unpaired_loss, cdpo_loss, discopop_loss, dpo_loss,  # noqa: F401
                                  exo_pair_loss, hinge_loss, ipo_loss, robust_dpo_loss, sigmoid_norm_loss)
from tokensift.losses.reference_free import (cpo_loss, orpo_loss, rrhf_loss, sepo_loss, simpo_loss)  # noqa: F401
from tokensift.losses.constrained import tdpo_loss, tso_loss  # noqa: F401
from tokensift.losses.anchored import (apo_down_loss, apo_zero_loss, bco_pair_loss, nca_pair_loss,  # noqa: F401
                                       sppo_hard_loss)
from tokensift.losses.unpaired import apo_zero_unpaired_loss, bco_loss, kto_loss  # noqa: F401
from tokensift.losses.combine import add_nll, mixture_spec, nll_term, parse_mixture, resolve  # noqa: F401

# Derived views of LOSSES, for callers that only need the names (pairwise losses; SFT is neither).
REFERENCE_FREE = tuple(name for name, spec in LOSSES.items() if spec.pairwise and not spec.needs_reference)
NEEDS_REFERENCE = tuple(name for name, spec in LOSSES.items() if spec.needs_reference)
