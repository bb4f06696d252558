"""Visualisation of token-level scores (``tokensift show``).

Standard library only, so importing :mod:`tokensift.viz` never pulls in
torch/transformers: a heatmap can be written from scores saved by another run.
"""

from .heatmap import DEFAULT_SCALE_QUANTILE, render_heatmap, robust_scale

__all__ = ["render_heatmap", "robust_scale", "DEFAULT_SCALE_QUANTILE"]
