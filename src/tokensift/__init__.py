"""tokensift: token-level preference optimization (SePO, TSO) and the DPO-family baselines on one engine."""

__version__ = "0.1.0"
