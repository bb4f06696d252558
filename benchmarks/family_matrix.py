"""Model-family matrix: how far each log-prob path of tokensift is from the model's own forward.

For every family set-up of tests/families.py (tiny random model + a tokenizer with the family's chat-template
structure) and every path that computes response log-probs (tokenisation, the packed and unpacked training
forward, the reference cache / `eval pairs` pass, SePO scoring and TDPO's per-position KL), it prints the largest
|difference| per response between the path's summed log-probs (or KLs) and the model's own forward over the
template's rendering of prompt + reply. "ids" says whether the path's response token ids are the template's.

    python benchmarks/family_matrix.py [--dtype bfloat16]
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from families import (FAMILIES, build_family_model, build_family_tokenizer, family_examples,  # noqa: E402
                      own_forward_kl, own_forward_logps, template_ids)

from tokensift.data.collate import collate_pairs  # noqa: E402
from tokensift.data.tokenize import PairTokenizer, TokenizeSettings  # noqa: E402
from tokensift.logprobs import token_logps  # noqa: E402
from tokensift.sepo.score import score_pairs  # noqa: E402
from tokensift.train.ref_cache import iter_pair_logps  # noqa: E402

PATHS = ("ids", "train packed", "train unpacked", "ref cache / eval pairs", "scoring", "tdpo kl")


def _sides(pair):
    return (("chosen", pair.chosen_ids), ("rejected", pair.rejected_ids))


def family_row(name: str, dtype: torch.dtype = torch.float32, attn: str | None = None) -> dict:
    family = FAMILIES[name]
    tokenizer = build_family_tokenizer(family)
    policy = build_family_model(family, len(tokenizer), seed=0, attn_implementation=attn, dtype=dtype)
    reference = build_family_model(family, len(tokenizer), seed=1, attn_implementation=attn, dtype=dtype)
    examples = family_examples()
    pairs = PairTokenizer(tokenizer, TokenizeSettings(max_length=None, max_prompt_length=None)).tokenize_batch(examples)
    truth = {}  # (row, side) -> (template response ids, own logps policy, own logps reference, own kl)
    for ex in examples:
        prompt_ids, _ = template_ids(tokenizer, ex.prompt, ex.chosen, family.turn_end)
        for side, reply in (("chosen", ex.chosen), ("rejected", ex.rejected)):
            _, ids = template_ids(tokenizer, ex.prompt, reply, family.turn_end)
            truth[ex.row, side] = (ids, own_forward_logps(policy, prompt_ids, ids),
                                   own_forward_logps(reference, prompt_ids, ids),
                                   own_forward_kl(policy, reference, prompt_ids, ids))
    row = {"ids": all(list(ids) == truth[p.row, side][0] for p in pairs for side, ids in _sides(p))}
    pad = tokenizer.pad_token_id

    def worst(values_of):  # max |sum(path) - sum(truth)| over responses; values_of(pair, side) -> (path, truth)
        out = 0.0
        for p in pairs:
            for side, _ in _sides(p):
                got, want = values_of(p, side)
                out = max(out, abs(float(got.double().sum()) - float(want.double().sum())))
        return out

    with torch.no_grad():
        for label, pack in (("train packed", True), ("train unpacked", False)):
            kwargs = {"pack": pack} if "pack" in inspect.signature(collate_pairs).parameters else {}
            batch = collate_pairs(pairs, pad, **kwargs)
            out = token_logps(policy, batch.input_ids, batch.prompt_lens, batch.response_mask,
                              packed=getattr(batch, "packed", None)).logps
            n = len(pairs)
            index = {p.row: i for i, p in enumerate(pairs)}
            row[label] = worst(lambda p, side: (
                out[index[p.row] + (n if side == "rejected" else 0), : len(p.chosen_ids if side == "chosen"
                                                                            else p.rejected_ids)],
                truth[p.row, side][1]))
        cached = {p.row: (c, r) for p, c, r in iter_pair_logps(policy, pairs, 8, pad, "cpu")}
        row["ref cache / eval pairs"] = worst(lambda p, side: (
            torch.from_numpy(cached[p.row][0 if side == "chosen" else 1]), truth[p.row, side][1]))
        scored = {rec["row"]: rec for rec in score_pairs(policy, reference, pairs, 8, pad, 1.0, "cpu")}
        row["scoring"] = worst(lambda p, side: (
            torch.from_numpy(scored[p.row][f"{side}_scores"]), truth[p.row, side][1] - truth[p.row, side][2]))
        batch = collate_pairs(pairs, pad, pack=True)
        tdpo = token_logps(policy, batch.input_ids, batch.prompt_lens, batch.response_mask, ref_model=reference,
                           packed=batch.packed)
        n = len(pairs)
        row["tdpo kl"] = worst(lambda p, side: (
            tdpo.kl[pairs.index(p) + (n if side == "rejected" else 0), : len(p.chosen_ids if side == "chosen"
                                                                             else p.rejected_ids)],
            truth[p.row, side][3]))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--attn", default=None, choices=("sdpa", "eager"), help="default: each family's own")
    parser.add_argument("--families", default=",".join(FAMILIES))
    args = parser.parse_args()
    torch.set_num_threads(1)
    dtype = getattr(torch, args.dtype)
    print(f"max |delta| per response (nats), {args.dtype}, attn={args.attn or 'family default'}")
    print("| family | " + " | ".join(PATHS) + " |")
    print("|---" * (len(PATHS) + 1) + "|")
    for name in args.families.split(","):
        row = family_row(name, dtype, args.attn)
        cells = ["yes" if row["ids"] else "NO"] + [f"{row[p]:.2e}" for p in PATHS[1:]]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
