"""`tokensift data inspect PATH`: rows, detected formats, token-length percentiles and every problem found."""

from __future__ import annotations

import json
import os
import textwrap

import numpy as np

from tokensift.data.load import load_preferences, reason_label
from tokensift.errors import UserError
from tokensift.models import DEFAULT_MODEL


def add_inspect_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "inspect", help="Validate a preference file and print its formats, lengths and problems.",
        description="Reads every row, reports each bad row (file, row, field, problem) and, with a tokenizer, "
        "the token-length percentiles and how many pairs the length limits would truncate.",
    )
    p.add_argument("path", help="A .jsonl/.json/.parquet/.csv file (or .gz), a save_to_disk folder, or a hub id.")
    p.add_argument("--columns", help="Column mapping, e.g. prompt=instruction,chosen=good,rejected=bad.")
    p.add_argument("--split", default="train", help="Split of a dataset folder or hub dataset. [default: train]")
    p.add_argument("--rejects", help="Write every bad row with its reason to this JSONL file.")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"Tokenizer for the length report. [default: {DEFAULT_MODEL}]")
    p.add_argument("--no-tokenize", action="store_true", help="Skip the token-length report (no model needed).")
    p.add_argument("--max-length", type=int, default=1024, help="Prompt+response limit to count truncations against.")
    p.add_argument("--max-prompt-length", type=int, default=512, help="Prompt limit to count truncations against.")
    p.add_argument("--show", type=int, default=2, help="How many valid rows to print. [default: 2]")
    p.add_argument("--max-problems", type=int, default=20, help="How many bad rows to list in full. [default: 20]")
    p.add_argument("--json", dest="json_out", help="Also write the report as JSON to this file.")
    p.set_defaults(func=run_inspect)


def percentiles(values) -> dict:
    if not len(values):
        return {}
    arr = np.asarray(values)
    return {f"p{q}": int(np.percentile(arr, q)) for q in (50, 90, 99)} | {"max": int(arr.max()), "mean": round(float(arr.mean()), 1)}


def run_inspect(args) -> int:
    if _first_row_unpaired(args):
        return inspect_unpaired(args)
    # Inspect lists every problem instead of stopping at the first; a rejects file only when asked for.
    result = load_preferences(args.path, columns=args.columns, skip_invalid=True,
                              rejects_path=args.rejects or os.devnull, split=args.split)
    if not args.rejects:
        result.rejects_path = None
    if result.total_rows == 0:
        raise UserError(f"{args.path}: no rows (the file is empty or holds only blank lines)")
    report: dict = {"source": args.path, "rows": result.total_rows, "valid": result.valid,
                    "invalid": len(result.rejected), "formats": dict(result.formats)}
    print(result.summary())
    for ex in result.examples[: args.show]:
        print(f"\n--- row {ex.row} ---")
        print("prompt:  ", _short(json.dumps(ex.prompt, ensure_ascii=False)))
        print("chosen:  ", _short(ex.chosen))
        print("rejected:", _short(ex.rejected))
        if ex.metadata:
            print("metadata:", _short(json.dumps(ex.metadata, ensure_ascii=False, default=str)))
    if result.rejected:
        print(f"\nproblems ({len(result.rejected)}):")
        for item in result.rejected[: args.max_problems]:
            where = f"row {item.row}" + (f", field '{item.field}'" if item.field else "")
            print(f"  {where}: {item.problem}")
        if len(result.rejected) > args.max_problems:
            print(f"  ... and {len(result.rejected) - args.max_problems} more (see the rejects file)")
        report["problems"] = [{"row": r.row, "field": r.field, "problem": r.problem} for r in result.rejected]
        report["problem_counts"] = _count(result.rejected)
    if not args.no_tokenize and result.examples:
        report["tokens"] = token_report(args, result.examples)
    print(f"\n{result.valid:,} valid pairs" + (f", {len(result.rejected):,} invalid rows" if result.rejected else ""))
    write_report(args.json_out, report)
    return 0 if not result.rejected else 1


def token_report(args, examples) -> dict:
    from tokensift.data.tokenize import PairTokenizer, TokenizeSettings, tokenize_examples
    from tokensift.models import load_tokenizer

    tokenizer = load_tokenizer(args.model)
    pairs, full = tokenize_examples(tokenizer, examples, TokenizeSettings(max_length=None, max_prompt_length=None))
    limits = PairTokenizer(tokenizer, TokenizeSettings(args.max_length, args.max_prompt_length))
    for pair in pairs:  # what the length limits would cut, without tokenising again
        limits.truncate(list(pair.prompt_ids), list(pair.chosen_ids), list(pair.rejected_ids))
        limits.report.pairs += 1
    cut = limits.report
    prompts = full.prompt_lengths
    chosen, rejected = full.response_lengths[0::2], full.response_lengths[1::2]
    totals = [p + max(c, r) for p, c, r in zip(prompts, chosen, rejected)]
    stats = {"prompt": percentiles(prompts), "chosen": percentiles(chosen), "rejected": percentiles(rejected),
             "prompt+longer response": percentiles(totals)}
    print(f"\ntoken lengths ({args.model} tokenizer, chat template, responses through their turn end):")
    print(f"  {'':24s}{'p50':>7s}{'p90':>7s}{'p99':>7s}{'max':>7s}{'mean':>8s}")
    for name, s in stats.items():
        print(f"  {name:24s}{s['p50']:7d}{s['p90']:7d}{s['p99']:7d}{s['max']:7d}{s['mean']:8.1f}")
    print(f"  with max_length={args.max_length}, max_prompt_length={args.max_prompt_length}: {cut.summary()}")
    return {"lengths": stats, "truncation": {"prompts": cut.prompts_truncated, "responses": cut.responses_truncated,
                                             "boundary_mismatches": full.boundary_mismatches,
                                             "template_mismatches": full.template_mismatches}}


def _count(rejected) -> dict:
    counts: dict[str, int] = {}
    for item in rejected:
        label = reason_label(item)
        counts[label] = counts.get(label, 0) + 1
    return counts


def _short(text: str, width: int = 300) -> str:
    return textwrap.shorten(text.replace("\n", " ⏎ "), width=width, placeholder=" ...")


def _first_row_unpaired(args) -> bool:
    from tokensift.data.io import iter_raw_rows
    from tokensift.data.unpaired import is_unpaired_row, parse_unpaired_columns

    try:
        mapping = parse_unpaired_columns(args.columns)
    except UserError:
        return False  # a paired mapping (chosen=..., rejected=...)
    rows = iter_raw_rows(args.path, args.split)
    try:
        first = next(rows, None)
    finally:
        rows.close()
    return first is not None and is_unpaired_row(first[1], mapping)


def inspect_unpaired(args) -> int:
    """Unpaired rows (prompt, completion, label) for KTO and BCO: every row checked (the first bad one stops it,
    named), the balance of desirable and undesirable completions, and the weights the KTO paper advises for it."""
    from tokensift.data.unpaired import load_unpaired

    result = load_unpaired(args.path, args.columns, args.split)
    print(result.summary())
    d, u = result.desirable, result.undesirable
    print(f"balance: {d} desirable / {u} undesirable = {d / u:.2f}. The KTO paper keeps desirable_weight x "
          f"{d} / (undesirable_weight x {u}) in [1, 4/3]: with undesirable_weight=1, desirable_weight in "
          f"[{u / d:.2f}, {4 * u / (3 * d):.2f}]")
    for ex in result.examples[: args.show]:
        print(f"\n--- row {ex.row} ({'desirable' if ex.metadata['label'] else 'undesirable'}) ---")
        print("prompt:    ", _short(json.dumps(ex.prompt, ensure_ascii=False)))
        print("completion:", _short(ex.chosen))
    report = {"source": args.path, "rows": d + u, "unpaired": True, "desirable": d, "undesirable": u}
    write_report(args.json_out, report)
    return 0


def write_report(path: str | None, report: dict) -> None:
    """`--json-out FILE`: the report as JSON (nothing when no file is asked for)."""
    if not path:
        return
    try:
        with open(path, "w") as f:
            json.dump(report, f, indent=2)
    except OSError as exc:
        raise UserError(f"cannot write the report {path}: {exc.strerror or exc}") from None
