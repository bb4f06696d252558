"""How a run was started, for the model card of what it writes: the exact command line of a CLI run.

`tokensift.cli.main` records its arguments here; a run started from Python (the API) records nothing and its card
shows the settings instead. Anything shaped like a Hugging Face or OpenAI-style token is blanked out, so a secret
typed on a command line never reaches a card that may be published.
"""

from __future__ import annotations

import re
import shlex

SECRET = re.compile(r"\b(hf_[A-Za-z0-9]{16,}|sk-[A-Za-z0-9_\-]{16,})")
_argv: list[str] | None = None


def record_command(argv: list[str] | None) -> None:
    """Remember the arguments of this process's `tokensift` command (None: forget them)."""
    global _argv
    _argv = None if argv is None else [str(a) for a in argv]


def command_line() -> str | None:
    """`tokensift ARGS...` as typed (shell-quoted, secrets blanked), or None for runs started from Python."""
    if _argv is None:
        return None
    return SECRET.sub("<redacted>", shlex.join(["tokensift", *_argv]))
