"""Start-up time of the command line: `--help` and argument errors, wall time per call (median of N fresh
processes), this checkout against another one side by side.

    python benchmarks/cli_startup.py                                  # this checkout only
    python benchmarks/cli_startup.py --baseline /path/to/old/src      # and an older checkout's src/, as ratios

Each call is a new Python process running `tokensift.cli.main(argv)` with the checkout's `src/` first on the path,
as the `tokensift` console script does; the numbers include interpreter start-up. Warm file cache: every command
runs once before it is timed. Issue 23's target: under 1.5 s on the 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
COMMANDS = [
    ["--help"],
    ["train", "--help"],
    ["sepo", "--help"],
    ["tso", "run", "--help"],
    ["eval", "winrate", "--help"],
    ["dpo", "per_device_train_batch_sise=8", "data=pairs.jsonl"],  # an unknown key: exit 2
]
CALL = "import sys; from tokensift.cli import main; sys.exit(main(sys.argv[1:]))"


def seconds(src: Path, argv: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", CALL, *argv], env=env, capture_output=True, timeout=300)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", type=Path, help="src/ of another checkout to compare with")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    sources = {"this": SRC, **({"baseline": args.baseline} if args.baseline else {})}
    print(f"{'command':44s} " + " ".join(f"{name + ' (s)':>14s}" for name in sources)
          + ("       ratio" if args.baseline else ""))
    for argv in COMMANDS:
        medians = {}
        for name, src in sources.items():
            seconds(src, argv)  # warm the file cache
            medians[name] = statistics.median(seconds(src, argv) for _ in range(args.repeats))
        ratio = f"  {medians['baseline'] / medians['this']:9.1f}x" if args.baseline else ""
        label = "tokensift " + " ".join(argv)
        print(f"{label[:44]:44s} " + " ".join(f"{v:14.2f}" for v in medians.values()) + ratio)


if __name__ == "__main__":
    main()
