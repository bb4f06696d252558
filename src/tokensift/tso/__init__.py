"""TSO: self-training with scaled preference optimization (model matrix, judges, pair correction, iterative DPO).

Submodules are imported directly (e.g. `from tokensift.tso.judges import build_judge`) so that importing the
package stays cheap.
"""
