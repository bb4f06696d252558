"""Visualisation of token-level scores (``tokensift show``).

Standard library only, so importing :mod:`tokensift.viz` never pulls in
torch/transformers: a heatmap can be written from scores saved by another run.
"""

from .heatmap import (
    DEFAULT_SCALE_QUANTILE,
    SCALE_MODES,
    heatmap_html,
    notebook_html,
    oracle_margin,
    render_heatmap,
    robust_scale,
)

__all__ = ["render_heatmap", "heatmap_html", "notebook_html", "oracle_margin", "robust_scale",
           "DEFAULT_SCALE_QUANTILE", "SCALE_MODES"]
