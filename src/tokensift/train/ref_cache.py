"""Teacher-forced per-token log-probs over many pairs, and the on-disk reference log-prob cache.

DPO-family training needs log pi_ref of every response. Computing it once, in a no-grad pass, and reading it
from disk afterwards means training holds one model in memory and never runs the reference forward again.
The cache is keyed by a fingerprint of (data, reference model, tokenizer, tokenisation settings), stored as
Parquet shards of per-token log-probs in label space (so SePO scoring can reuse it), filled resumably, and
shared by every later run on the same inputs.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from tokensift.data.collate import length_buckets
from tokensift.data.io import fingerprint
from tokensift.data.tokenize import TokenizedPair
from tokensift.logprobs import group_logps
from tokensift.models import cache_root
from tokensift.shards import ShardStore

log = logging.getLogger(__name__)


@torch.no_grad()
def iter_pair_logps(model, pairs: list[TokenizedPair], batch_size: int, pad_id: int, device, desc: str | None = None,
                    share_prompt: bool = True, packing: str = "auto"):
    """Yield (pair, chosen log-probs [Rc], rejected log-probs [Rr]) as float32 numpy, in length-bucketed order.

    share_prompt: run each pair as one [prompt | chosen | rejected] sequence where the model allows it, laid out
    in rows as `packing` says (logprobs.packed_row_tokens).
    """
    batches = length_buckets(pairs, batch_size)
    bar = tqdm(total=len(pairs), desc=desc, unit="pair", disable=desc is None, leave=False)
    for group in batches:
        logps = group_logps([model], group, pad_id, device, share_prompt, packing)[1][0].float().cpu()
        n = len(group)
        for i, pair in enumerate(group):
            yield (
                pair,
                logps[i, : len(pair.chosen_ids)].numpy().copy(),
                logps[n + i, : len(pair.rejected_ids)].numpy().copy(),
            )
        bar.update(n)
    bar.close()


class ReferenceLogpCache:
    """Per-token reference log-probs of a set of pairs, computed once and read back from Parquet shards."""

    def __init__(self, meta: dict, folder: str | Path | None = None, rank: int = 0, world: int = 1):
        self.meta = meta
        self.key = fingerprint(meta)
        root = Path(folder) if folder else cache_root() / "ref_logps"
        self.store = ShardStore(root / self.key[:32], rank=rank)
        self.rank, self.world = rank, world

    def missing(self, pairs: list[TokenizedPair]) -> list[TokenizedPair]:
        done = self.store.done_rows()
        return [p for p in pairs if p.row not in done]

    def fill(self, model, pairs: list[TokenizedPair], batch_size: int, pad_id: int, device, shard_pairs: int = 512,
             share_prompt: bool = True, packing: str = "auto", progress: bool = True):
        """Compute this process's share (by row) of `pairs`, the missing ones, and write them shard by shard
        (with a progress bar on the main process when `progress`)."""
        todo = [p for p in pairs if p.row % self.world == self.rank]
        if not todo:
            return 0
        if self.rank == 0:
            self.store.write_meta(self.meta)
        buffer: dict[str, list] = {"row": [], "chosen": [], "rejected": []}
        desc = "reference log-probs" if self.rank == 0 and progress else None
        for pair, chosen, rejected in iter_pair_logps(model, todo, batch_size, pad_id, device, desc, share_prompt,
                                                   packing):
            buffer["row"].append(pair.row)
            buffer["chosen"].append(chosen)
            buffer["rejected"].append(rejected)
            if len(buffer["row"]) >= shard_pairs:
                self.store.write(buffer)
                buffer = {"row": [], "chosen": [], "rejected": []}
        if buffer["row"]:
            self.store.write(buffer)
        return len(todo)

    def token_logps(self, rows: set[int] | None = None) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        table = self.store.read()
        if table is None:
            return {}
        out = {}
        for row, chosen, rejected in zip(
            table.column("row").to_pylist(), table.column("chosen").to_pylist(), table.column("rejected").to_pylist()
        ):
            if rows is None or row in rows:
                out[row] = (np.asarray(chosen, dtype=np.float32), np.asarray(rejected, dtype=np.float32))
        return out

    def sums(self, pairs: list[TokenizedPair]) -> dict[int, tuple[float, float]]:
        """row -> (sum over chosen tokens, sum over rejected tokens); checks that the lengths still match."""
        wanted = {p.row for p in pairs}
        cached = self.token_logps(wanted)
        out = {}
        for pair in pairs:
            if pair.row not in cached:
                raise RuntimeError(f"reference log-probs for row {pair.row} are missing from {self.store.folder}")
            chosen, rejected = cached[pair.row]
            if len(chosen) != len(pair.chosen_ids) or len(rejected) != len(pair.rejected_ids):
                raise RuntimeError(
                    f"cached reference log-probs of row {pair.row} do not match its tokenisation; delete "
                    f"{self.store.folder} and rerun"
                )
            out[pair.row] = (float(chosen.sum(dtype=np.float64)), float(rejected.sum(dtype=np.float64)))
        return out
