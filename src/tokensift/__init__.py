"""tokensift: token-level preference optimization (SePO, TSO) and the DPO-family baselines on one engine.

The public Python API (docs/python-api.md): the stages as functions and their typed configs.

    import tokensift
    result = tokensift.train_model(loss="dpo", train_dataset=rows, max_steps=20)

Everything named in `__all__` is public; other modules are internals that may change. Names load on first use,
so `import tokensift` (and the command line's start-up) stays fast.
"""

__version__ = "0.1.0"

_PUBLIC = {
    # stages (tokensift.api)
    "train_model": "tokensift.api", "train_oracle": "tokensift.api", "score_tokens": "tokensift.api",
    "select_tokens": "tokensift.api", "run_sepo": "tokensift.api", "run_tso": "tokensift.api",
    "evaluate_pairs": "tokensift.api", "evaluate_generation": "tokensift.api", "show_scores": "tokensift.api",
    "sweep": "tokensift.api",
    # their configs
    "TrainConfig": "tokensift.train.config", "OracleConfig": "tokensift.sepo.config",
    "ScoreConfig": "tokensift.sepo.config", "SePOConfig": "tokensift.sepo.pipeline",
    "TSOConfig": "tokensift.tso.config", "PairsEvalConfig": "tokensift.eval.config",
    "GenerateEvalConfig": "tokensift.eval.config", "ShowConfig": "tokensift.sepo.show",
    "SelectionArgs": "tokensift.selection", "SweepConfig": "tokensift.sweep",
    # results
    "TrainResult": "tokensift.train.loop", "ScoreResult": "tokensift.sepo.score",
    # callbacks for train_model (transformers' TrainerCallback protocol)
    "EarlyStopping": "tokensift.train.callbacks",
    "SelectedPair": "tokensift.sepo.selected", "HtmlPage": "tokensift.api",
    # what the engine offers, declared once each
    "LOSSES": "tokensift.losses", "SELECTORS": "tokensift.selectors", "JUDGES": "tokensift.judges", "build_judge": "tokensift.judges",
    "UserError": "tokensift.errors", "load_config": "tokensift.config",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'tokensift' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__():
    return sorted(__all__)
