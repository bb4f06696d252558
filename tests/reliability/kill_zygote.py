"""A fork server for the kill tests: import torch, transformers and tokensift once, then fork one child per run.

Each child is a real process running the real CLI (`tokensift.cli.main(argv)`) with its own stdout/stderr
file; the test kills it with a real SIGKILL. Importing torch + transformers takes 5-10 s on a loaded 2-core
machine; forking a warm process takes milliseconds, which is what makes 40+ killed runs affordable in CI.
The server does nothing but import before it forks, so a child starts from the same state a fresh
`python -m tokensift` would reach after its imports (every tokensift stage seeds its own RNGs).

Protocol (JSON lines): the test writes {"argv": [...], "log": PATH, "cwd": PATH}; the server answers
{"pid": N} once the child runs, then {"pid": N, "exit": CODE, "signal": SIG or null} when it has ended.
One child at a time. EOF on stdin ends the server.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def warm_imports() -> None:
    import accelerate  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import safetensors.torch  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM  # noqa: F401

    import tokensift.cli  # noqa: F401
    import tokensift.generate  # noqa: F401
    import tokensift.sepo.mass  # noqa: F401
    import tokensift.sepo.score  # noqa: F401
    import tokensift.train.loop  # noqa: F401
    import tokensift.tso.cli  # noqa: F401
    import tokensift.tso.loop  # noqa: F401
    from tokensift import judges

    judges.vader_sentiment([], "warm up the lexicon")  # pure Python: no threads, loaded once here


def child(request: dict) -> None:
    """Runs in the forked process: never returns."""
    code = 1
    try:
        os.chdir(request.get("cwd") or os.getcwd())
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        sys.stdin = open(0)
        from reliability_helpers import cli_main

        code = cli_main(request["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main() -> None:
    warm_imports()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            child(request)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        signal = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        exit_code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        print(json.dumps({"pid": pid, "exit": exit_code, "signal": signal}), flush=True)


if __name__ == "__main__":
    main()
