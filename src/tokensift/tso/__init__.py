"""TSO: self-training with scaled preference optimization (model matrix, judges, pair correction, iterative DPO).

Submodules are imported directly (e.g. `from tokensift.tso.loop import run_tso`) so that importing the
package stays cheap.
"""
