"""Run by the distributed tests under `accelerate launch` (or plain python): one training or scoring job."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import train_config  # noqa: E402


def main():
    job = json.loads(sys.argv[1])
    if job["kind"] == "cli":  # a tokensift command line, e.g. the whole sepo pipeline
        from tokensift.cli import main as cli_main

        sys.exit(cli_main(job["args"]))
    if job["kind"] == "score":
        from tokensift.sepo.config import ScoreConfig
        from tokensift.sepo.score import score_tokens

        config = ScoreConfig(**job["config"])
        config.validate()
        score_tokens(config)
        from tokensift.distributed import close_process_group

        close_process_group()
        return
    from tokensift.api import train_model as train

    tmp = Path(job["tmp"])
    config = train_config(tmp, Path(job["model"]), Path(job["data"]), **job["config"])
    train(config)
    from tokensift.distributed import close_process_group

    close_process_group()  # as the command line does: the processes leave together, not at interpreter exit


if __name__ == "__main__":
    main()
