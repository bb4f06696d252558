"""Bad inputs through the real command line: data files, configs, arguments, models and output folders.

Every case runs `tokensift ...` in-process (tokensift.cli.main, the function behind the console script) on
real files and tiny real models, and asserts the contract of cli.py: exit status 2, one paragraph on
stderr that starts with `error:` (argparse's own usage errors: `usage: ...` then `...: error: ...`) and
holds the case's specific phrase, and no traceback anywhere. The library-level corpus of ~35 malformed rows
lives in tests/data/test_load_malformed.py; this suite checks that such errors reach the user intact.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_pairs
from reliability_helpers import cli_main, other_tokenizer, report, run_cli, save_tiny_model, write_jsonl

ROW = {"prompt": "Say something nice.", "chosen": "You are wonderful.", "rejected": "Go away."}
ANNOTATION = {"instruction": "Say something nice.", "output_1": "You are wonderful.", "output_2": "Go away.",
              "generator_1": "reference", "generator_2": "model", "preference": 1.2}
COUNTS = {"tried": 0, "passed": 0}


@pytest.fixture(scope="module", autouse=True)
def count_summary(request):
    yield
    report(request.config, f"bad-input cases tried: {COUNTS['tried']}, {COUNTS['passed']} gave their specific "
                           "error (exit 2, one paragraph, no traceback)")


def assert_user_error(code, out: str, err: str, phrase: str) -> None:
    COUNTS["tried"] += 1
    text = err.strip()
    assert "Traceback" not in out + err, err[-3000:]
    assert code == 2, (code, out[-1000:], err[-2000:])
    assert phrase in text, f"expected {phrase!r} in:\n{text}"
    assert "\n\n" not in text, f"more than one paragraph:\n{text}"
    first = text.splitlines()[0]
    assert first.startswith("error: ") or first.startswith("usage: tokensift"), text
    COUNTS["passed"] += 1


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Real tiny model folders: the default tokenizer, another tokenizer, and damaged copies."""
    root = tmp_path_factory.mktemp("models")
    tiny = save_tiny_model(root / "tiny")
    other = save_tiny_model(root / "other", tokenizer=other_tokenizer())
    bad_weights = root / "bad-weights"
    shutil.copytree(tiny, bad_weights)
    (bad_weights / "model.safetensors").write_bytes(b"\x00" * 7 + b"not safetensors")
    bad_tokenizer = root / "bad-tokenizer"
    shutil.copytree(tiny, bad_tokenizer)
    (bad_tokenizer / "tokenizer.json").write_text('{"version": "1.0", "model": ')
    no_config = root / "no-config"
    no_config.mkdir()
    (no_config / "model.safetensors").write_bytes(b"")
    return {"tiny": tiny, "other": other, "bad_weights": bad_weights, "bad_tokenizer": bad_tokenizer,
            "no_config": no_config}


@pytest.fixture(scope="module")
def scores(models, tmp_path_factory):
    """A finished `tokensift score` run of the tiny oracle (its own reference): real scores of 6 pairs."""
    root = tmp_path_factory.mktemp("scores")
    data = write_pairs(root / "pairs.jsonl", n=6)
    code = cli_main(["score", "--data", str(data), "--oracle", str(models["tiny"]), "--reference",
                     str(models["tiny"]), "--output-dir", str(root / "scores"), "progress=false"])
    assert code == 0
    return root / "scores"


def fill(value: str, tmp: Path, models: dict, scores: Path | None = None) -> str:
    names = {"tmp": str(tmp), **{k: str(v) for k, v in models.items()}}
    if scores is not None:
        names["scores"] = str(scores)
    return value.format(**names)


TRAIN = ["train", "--model", "{tiny}", "--output-dir", "{tmp}/out", "--ref-cache-dir", "{tmp}/rc", "progress=false",
         "max_steps=1", "batch_size=2"]


def data(name: str, rows_or_text) -> dict:
    if isinstance(rows_or_text, (str, bytes)):
        return {name: rows_or_text}
    return {name: "".join(json.dumps(r) + "\n" for r in rows_or_text)}


UNPAIRED = {"prompt": "Say hi.", "completion": "Hello!", "label": True}
GOOD = data("data.jsonl", [ROW, {**ROW, "prompt": "Say something kind."}, {**ROW, "prompt": "Be nice."},
                           {**ROW, "prompt": "Greet me."}])

# (id, argv, files, phrase). `{tmp}` is the case's folder (also the working directory), `{tiny}`/`{other}`/...
# the model folders of the `models` fixture. Data files are `{tmp}/data.jsonl` unless the case says otherwise.
CASES = [
    # ---------------------------------------------------------------- data files
    ("truncated JSON line", TRAIN + ["data={tmp}/data.jsonl"],
     data("data.jsonl", json.dumps(ROW) + '\n{"prompt": "hi", "chosen": "a"\n'),
     "{tmp}/data.jsonl, row 1: truncated or invalid JSON"),
    ("invalid JSON line", TRAIN + ["data={tmp}/data.jsonl"], data("data.jsonl", "this is not json\n"),
     "{tmp}/data.jsonl, row 0: truncated or invalid JSON: Expecting value"),
    ("truncated .json array", TRAIN + ["data={tmp}/data.json"],
     data("data.json", '[{"prompt": "a", "chosen": "b", "rejected": "c"},\n'), "{tmp}/data.json: truncated or invalid JSON"),
    ("row is an array", TRAIN + ["data={tmp}/data.jsonl"], data("data.jsonl", '["a", "b", "c"]\n'),
     "row 0: row is a JSON array, not an object with fields such as prompt/chosen/rejected"),
    ("chosen is a number", TRAIN + ["data={tmp}/data.jsonl"], data("data.jsonl", [{**ROW, "chosen": 5}]),
     "row 0, field 'chosen': expected a string or a list of messages, got a number"),
    ("prompt is an object", TRAIN + ["data={tmp}/data.jsonl"], data("data.jsonl", [{**ROW, "prompt": {"text": "hi"}}]),
     "row 0, field 'prompt': expected a string or a list of messages, got an object"),
    ("empty chosen", TRAIN + ["data={tmp}/data.jsonl"], data("data.jsonl", [ROW, {**ROW, "chosen": ""}]),
     "row 1, field 'chosen': the reply is empty or whitespace-only"),
    ("whitespace rejected", TRAIN + ["data={tmp}/data.jsonl"], data("data.jsonl", [{**ROW, "rejected": " \n\t "}]),
     "row 0, field 'rejected': the reply is empty or whitespace-only"),
    ("chosen == rejected", TRAIN + ["data={tmp}/data.jsonl"], data("data.jsonl", [{**ROW, "rejected": ROW["chosen"]}]),
     "row 0, field 'rejected': chosen and rejected replies are identical; an identical pair teaches nothing"),
    ("chosen == rejected but for spaces", TRAIN + ["data={tmp}/data.jsonl"],
     data("data.jsonl", [{**ROW, "rejected": "  " + ROW["chosen"] + "\n"}]), "chosen and rejected replies are identical"),
    ("identical message replies", TRAIN + ["data={tmp}/data.jsonl"],
     data("data.jsonl", [{"prompt": [{"role": "user", "content": "hi"}],
                          "chosen": [{"role": "assistant", "content": "same"}],
                          "rejected": [{"role": "assistant", "content": "same"}]}]),
     "field 'rejected': chosen and rejected replies are identical"),
    ("missing field with a near name", TRAIN + ["data={tmp}/data.jsonl"],
     data("data.jsonl", [{"prompt": "hi", "chosen": "a", "rejeced": "b"}]),
     "row 0, field 'rejected': missing field 'rejected'; the row has columns: 'prompt', 'chosen', 'rejeced'; "
     "did you mean 'rejeced'?"),
    ("lone surrogate escape", TRAIN + ["data={tmp}/data.jsonl"],
     data("data.jsonl", '{"prompt": "hi \\ud800", "chosen": "a", "rejected": "b"}\n'),
     "row 0, field 'prompt': holds an unpaired UTF-16 surrogate (\\ud800 at character 3)"),
    ("inspect an empty file", ["data", "inspect", "{tmp}/data.jsonl", "--no-tokenize"], data("data.jsonl", ""),
     "{tmp}/data.jsonl: no rows (the file is empty or holds only blank lines)"),
    ("inspect a file of blank lines", ["data", "inspect", "{tmp}/data.jsonl", "--no-tokenize"],
     data("data.jsonl", "\n  \n\n"), "{tmp}/data.jsonl: no rows (the file is empty or holds only blank lines)"),
    (".gguf that is not GGUF", ["data", "inspect", "{tmp}/data.jsonl", "--model", "{tmp}/model.gguf"],
     {**GOOD, "model.gguf": "not a gguf file\n"},
     "{tmp}/model.gguf is not a GGUF file (it does not start with the GGUF magic bytes)"),
    ("null prompt", TRAIN + ["data={tmp}/data.jsonl"], data("data.jsonl", [{**ROW, "prompt": None}]),
     "field 'prompt': missing value (null); a prompt is required"),
    ("message without a role", TRAIN + ["data={tmp}/data.jsonl"],
     data("data.jsonl", [{**ROW, "prompt": [{"content": "hi"}]}]),
     "row 0, field 'prompt[0]': message has no 'role' key (its keys: content)"),
    ("unknown chat role", TRAIN + ["data={tmp}/data.jsonl"],
     data("data.jsonl", [{**ROW, "prompt": [{"role": "robot", "content": "hi"}]}]),
     "field 'prompt[0]': unknown role 'robot'; valid roles:"),
    ("prompt ends with the assistant", TRAIN + ["data={tmp}/data.jsonl"],
     data("data.jsonl", [{**ROW, "prompt": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}]),
     "field 'prompt': the prompt ends with an assistant turn"),
    ("reply is not an assistant message", TRAIN + ["data={tmp}/data.jsonl"],
     data("data.jsonl", [{"prompt": "hi", "chosen": [{"role": "user", "content": "a"}],
                          "rejected": [{"role": "assistant", "content": "b"}]}]),
     "field 'chosen[0]': the final message must be an assistant reply, got role 'user'"),
    ("empty message list", TRAIN + ["data={tmp}/data.jsonl"], data("data.jsonl", [{**ROW, "prompt": []}]),
     "field 'prompt': the message list is empty"),
    ("invalid UTF-8", TRAIN + ["data={tmp}/data.jsonl"],
     data("data.jsonl", b'{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}\n'),
     "row 0: invalid UTF-8 (byte 0xe9 at byte 15 of the line)"),
    ("CSV row with a missing cell", TRAIN + ["data={tmp}/data.csv"],
     data("data.csv", "prompt,chosen,rejected\nhi,good,bad\nhello,good\n"),
     "{tmp}/data.csv, row 1: row has 2 cells but the header has 3 columns"),
    ("damaged Parquet", TRAIN + ["data={tmp}/data.parquet"], data("data.parquet", b"PAR1 garbage"),
     "{tmp}/data.parquet: not a readable Parquet file"),
    ("empty data file", TRAIN + ["data={tmp}/data.jsonl"], data("data.jsonl", ""),
     "{tmp}/data.jsonl: no valid preference pairs to train on"),
    ("every row skipped", TRAIN + ["data={tmp}/data.jsonl", "skip_invalid=true"],
     data("data.jsonl", [{**ROW, "chosen": ""}, {**ROW, "rejected": ROW["chosen"]}]),
     "{tmp}/data.jsonl: no valid preference pairs to train on"),
    ("unsupported file type", TRAIN + ["data={tmp}/data.txt"], data("data.txt", "prompt chosen rejected\n"),
     "{tmp}/data.txt: unsupported file type; supported: .jsonl, .json, .parquet, .csv"),
    ("missing data file", TRAIN + ["data={tmp}/nope.jsonl"], {}, "{tmp}/nope.jsonl: no such file"),
    ("folder that is no dataset", TRAIN + ["data={tmp}"], {},
     "a folder, but not one written by datasets' save_to_disk (no state.json or dataset_dict.json)"),
    ("hub dataset while offline", TRAIN + ["data=nobody/no-such-dataset"], {},
     "nobody/no-such-dataset: no such local file or folder, and the Hugging Face hub could not be reached"),
    ("hub dataset id with '..'", TRAIN + ["data=nobody/.."], {}, "nobody/..: no such file"),
    ("no data at all", TRAIN, {}, "no data given: set data=PATH"),
    ("column mapping without a column", TRAIN + ["data={tmp}/data.jsonl", "--columns", "prompt=q,chosen"], GOOD,
     "--columns: 'chosen' is not FIELD=COLUMN"),
    ("column mapping with a typo", TRAIN + ["data={tmp}/data.jsonl", "--columns", "promt=q"], GOOD,
     "--columns: unknown field 'promt'; did you mean 'prompt'?"),
    # ---------------------------------------------------------------- lengths
    ("prompt limit not below the length limit", TRAIN + ["data={tmp}/data.jsonl", "max_length=64",
                                                          "max_prompt_length=64"], GOOD,
     "max_prompt_length (64) must be smaller than max_length (64) so every response keeps at least one token"),
    ("length limit of one token", TRAIN + ["data={tmp}/data.jsonl", "max_length=1"], GOOD,
     "max_length must be at least 2 tokens, got 1"),
    # ---------------------------------------------------------------- configs and overrides
    ("unknown YAML key", TRAIN + ["data={tmp}/data.jsonl", "--config", "{tmp}/c.yaml"],
     {**GOOD, "c.yaml": "learning_rat: 1.0e-3\n"}, "unknown config key 'learning_rat' (did you mean 'learning_rate'?)"),
    ("unknown override", TRAIN + ["data={tmp}/data.jsonl", "batch_sise=4"], GOOD,
     "unknown config key 'batch_sise' (did you mean 'batch_size'?)"),
    ("unknown nested key", ["sepo", "--data", "{tmp}/data.jsonl", "oracle.fractoin=0.3"], GOOD,
     "unknown config key 'oracle.fractoin' (did you mean 'oracle.fraction'?)"),
    ("bad YAML", TRAIN + ["--config", "{tmp}/c.yaml"], {"c.yaml": "batch_size: [1, 2\nloss: dpo\n"},
     "config file {tmp}/c.yaml is not valid YAML"),
    ("YAML list instead of a mapping", TRAIN + ["--config", "{tmp}/c.yaml"], {"c.yaml": "- loss: dpo\n- beta: 0.1\n"},
     "config file {tmp}/c.yaml must hold a mapping of keys, not a list"),
    ("YAML that is not UTF-8", TRAIN + ["--config", "{tmp}/c.yaml"], {"c.yaml": b"loss: \xff\xfe\n"},
     "config file {tmp}/c.yaml is not UTF-8 text"),
    ("missing config file", TRAIN + ["--config", "{tmp}/nope.yaml"], {}, "config file {tmp}/nope.yaml does not exist"),
    ("batch_size=abc", TRAIN + ["data={tmp}/data.jsonl", "batch_size=abc"], GOOD,
     "config key 'batch_size': cannot use 'abc': expected a whole number such as 8"),
    ("learning rate as a word", TRAIN + ["data={tmp}/data.jsonl", "learning_rate=fast"], GOOD,
     "config key 'learning_rate': cannot use 'fast': expected a number such as 0.1 or 5e-6"),
    ("a word for an integer in YAML", TRAIN + ["--config", "{tmp}/c.yaml"],
     {**GOOD, "c.yaml": "data: data.jsonl\ngrad_accum: eight\n"},
     "config key 'grad_accum': cannot use 'eight': expected a whole number such as 8"),
    ("list for an integer in YAML", TRAIN + ["--config", "{tmp}/c.yaml"],
     {**GOOD, "c.yaml": "data: data.jsonl\nseed: [4]\n"}, "config key 'seed': cannot use [4]: expected a whole number"),
    ("fractional step count", TRAIN + ["data={tmp}/data.jsonl", "max_steps=1.5"], GOOD,
     "config key 'max_steps': cannot use '1.5'"),
    ("boolean that is neither", TRAIN + ["data={tmp}/data.jsonl", "lora=maybe"], GOOD,
     "config key 'lora': cannot use 'maybe': expected true or false"),
    ("override without '='", TRAIN + ["data={tmp}/data.jsonl", "batch_size"], GOOD, "expected key=value, got 'batch_size'"),
    ("dotted override into a plain key", TRAIN + ["data={tmp}/data.jsonl", "model.revision=main"], GOOD,
     "override 'model.revision': 'model' is not a section"),
    ("unknown loss", TRAIN + ["data={tmp}/data.jsonl", "loss=dpoo"], GOOD,
     "unknown loss 'dpoo'; choose one of sft, dpo, ipo"),
    ("pairwise stage with sft", ["dpo", "--data", "{tmp}/data.jsonl", "loss=sft"], GOOD,
     "`tokensift dpo` trains pairwise losses; use `tokensift train loss=sft` instead"),
    ("pairwise stage with kto", ["dpo", "--data", "{tmp}/data.jsonl", "loss=kto", "split_pairs=true"], GOOD,
     "`tokensift dpo` trains pairwise losses; use `tokensift train loss=kto` instead"),
    ("unpaired label that is not true/false", TRAIN + ["data={tmp}/u.jsonl", "loss=kto"],
     data("u.jsonl", [UNPAIRED, {**UNPAIRED, "prompt": "Be nice.", "label": "no"}]),
     "u.jsonl, row 1, field 'label': label must be true or false (true: a desirable completion), got 'no' (str)"),
    ("unpaired file with one class", TRAIN + ["data={tmp}/u.jsonl", "loss=bco"],
     data("u.jsonl", [UNPAIRED, {**UNPAIRED, "prompt": "Be nice."}]),
     "u.jsonl, row 0, field 'label': every one of the 2 rows is labelled desirable (true); KTO and BCO need both"),
    ("paired file for kto", TRAIN + ["data={tmp}/data.jsonl", "loss=kto"], GOOD,
     "data.jsonl: paired rows (prompt, chosen, rejected); KTO and BCO train on unpaired rows (prompt, completion, "
     "label): set split_pairs=true"),
    ("mixture weights that do not fit", TRAIN + ["data={tmp}/data.jsonl", "loss=dpo,ipo", "loss_weights=1"], GOOD,
     "loss=dpo,ipo: loss_weights has 1 weight(s) for 2 loss(es)"),
    ("k_chosen above 1", TRAIN + ["data={tmp}/data.jsonl", "k_chosen=1.5"], GOOD,
     "k_chosen must lie in (0, 1] (a share of tokens), got 1.5"),
    ("negative k_rejected", TRAIN + ["data={tmp}/data.jsonl", "k_rejected=-0.1"], GOOD,
     "k_rejected must lie in (0, 1] (a share of tokens), got -0.1"),
    ("zero k_chosen", TRAIN + ["data={tmp}/data.jsonl", "k_chosen=0"], GOOD, "k_chosen must lie in (0, 1]"),
    ("oracle fraction 0", ["oracle", "--data", "{tmp}/data.jsonl", "fraction=0"], GOOD,
     "fraction must lie in (0, 1], got 0.0"),
    ("oracle fraction above 1", ["oracle", "--data", "{tmp}/data.jsonl", "fraction=1.2"], GOOD,
     "fraction must lie in (0, 1], got 1.2"),
    ("eval_fraction 1", TRAIN + ["data={tmp}/data.jsonl", "eval_fraction=1"], GOOD,
     "eval_fraction must lie in [0, 1), got 1.0"),
    ("negative eval_fraction", TRAIN + ["data={tmp}/data.jsonl", "eval_fraction=-0.2"], GOOD,
     "eval_fraction must lie in [0, 1), got -0.2"),
    ("eval_fraction leaving nothing to train", TRAIN + ["data={tmp}/data.jsonl", "eval_fraction=0.9"], GOOD,
     "eval_fraction=0.9 leaves no training pairs out of 4"),
    ("negative beta", TRAIN + ["data={tmp}/data.jsonl", "beta=-1"], GOOD, "beta must be positive, got -1.0"),
    ("zero limit", TRAIN + ["data={tmp}/data.jsonl", "limit=0"], GOOD, "limit must be a positive number of pairs, got 0"),
    ("unknown nan policy", TRAIN + ["data={tmp}/data.jsonl", "nan_policy=ignore"], GOOD,
     "nan_policy must be stop or skip, got 'ignore'"),
    ("unknown tracker", TRAIN + ["data={tmp}/data.jsonl", "trackers=tensorbord"], GOOD,
     "unknown tracker 'tensorbord' in trackers; choose from tensorboard, wandb"),
    ("unknown dtype", TRAIN + ["data={tmp}/data.jsonl", "dtype=float8"], GOOD,
     "unknown dtype 'float8'; use one of float32, bfloat16, float16"),
    ("LoRA targets that match nothing", TRAIN + ["data={tmp}/data.jsonl", "lora=true", "lora_targets=qkv"], GOOD,
     "lora_targets qkv: Target modules {{'qkv'}} not found in the base model"),
    ("sepo without scores", TRAIN + ["loss=sepo"], {}, "loss=sepo needs scores=DIR from `tokensift score`"),
    ("sepo with a folder of no scores", TRAIN + ["loss=sepo", "scores={tmp}"], {},
     "{tmp} holds no token scores (no meta.json); run `tokensift score` first"),
    ("sepo with an unfinished scoring run", TRAIN + ["loss=sepo", "scores={tmp}/s"],
     {"s/meta.json": json.dumps({"fingerprint": "x", "inputs": {}, "complete": False})},
     "the scoring run in {tmp}/s did not finish; rerun `tokensift score` to complete it"),
    ("scoring without an oracle", ["score", "--data", "{tmp}/data.jsonl"], GOOD,
     "scoring needs oracle=MODEL and reference=MODEL"),
    ("scoring chunk of 0 pairs", ["score", "--data", "{tmp}/data.jsonl", "--oracle", "{tiny}", "--reference", "{tiny}",
                                  "chunk_pairs=0"], GOOD, "batch_size and chunk_pairs must be at least 1"),
    # ---------------------------------------------------------------- models
    ("missing model path", ["train", "--data", "{tmp}/data.jsonl", "--model", "{tmp}/no-model"], GOOD,
     "model '{tmp}/no-model' is neither a local path, a GGUF file, a hub id (owner/name) nor an alias"),
    ("model folder without config.json", ["train", "--data", "{tmp}/data.jsonl", "--model", "{no_config}"], GOOD,
     "model folder {no_config} has no config.json; is it a saved model?"),
    ("missing GGUF file", ["train", "--data", "{tmp}/data.jsonl", "--model", "{tmp}/model.gguf"], GOOD,
     "GGUF file {tmp}/model.gguf does not exist"),
    ("damaged weights", TRAIN[:1] + ["--model", "{bad_weights}"] + TRAIN[3:] + ["data={tmp}/data.jsonl"], GOOD,
     "could not load model '{bad_weights}': SafetensorError"),
    ("damaged tokenizer", TRAIN[:1] + ["--model", "{bad_tokenizer}"] + TRAIN[3:] + ["data={tmp}/data.jsonl"], GOOD,
     "could not load the tokenizer of '{bad_tokenizer}'"),
    ("hub model while offline", ["train", "--data", "{tmp}/data.jsonl", "--model", "nobody/no-such-model",
                                 "--output-dir", "{tmp}/out"], GOOD,
     "could not load the tokenizer of 'nobody/no-such-model'"),
    ("hub model id with '..'", ["train", "--data", "{tmp}/data.jsonl", "--model", "nobody/..", "--output-dir",
                                "{tmp}/out"], GOOD, "could not load the tokenizer of 'nobody/..': Repo id must"),
    # ---------------------------------------------------------------- incompatible tokenizers
    ("reference with another tokenizer", TRAIN + ["data={tmp}/data.jsonl", "reference={other}"], GOOD,
     "the reference '{other}' uses another tokenizer (vocabulary, special tokens or chat template) than the policy"),
    ("oracle and reference with other tokenizers", ["score", "--data", "{tmp}/data.jsonl", "--oracle", "{tiny}",
                                                    "--reference", "{other}", "--output-dir", "{tmp}/s"], GOOD,
     "the oracle and its reference use different tokenizers; token scores need one vocabulary"),
    # ---------------------------------------------------------------- output folders
    ("output_dir is a file", TRAIN + ["data={tmp}/data.jsonl", "output_dir={tmp}/data.jsonl"], GOOD,
     "output_dir {tmp}/data.jsonl exists and is a file, not a folder"),
    ("output_dir inside a file", TRAIN + ["data={tmp}/data.jsonl", "output_dir={tmp}/data.jsonl/run"], GOOD,
     "cannot create output_dir {tmp}/data.jsonl/run: Not a directory"),
    ("scoring output_dir is a file", ["score", "--data", "{tmp}/data.jsonl", "--oracle", "{tiny}", "--reference",
                                      "{tiny}", "--output-dir", "{tmp}/data.jsonl"], GOOD,
     "output_dir {tmp}/data.jsonl exists and is a file, not a folder"),
    ("TSO output_dir is a file", ["tso", "generate", "prompts=builtin:quickstart", "--output-dir", "{tmp}/f",
                                  "--config", "{tmp}/g.yaml"],
     {"f": "", "g.yaml": "generators: [{name: a, model: x, size: 1}]\n"}, "output_dir {tmp}/f exists and is a file"),
    ("inspect report inside a file", ["data", "inspect", "{tmp}/data.jsonl", "--no-tokenize", "--json",
                                      "{tmp}/data.jsonl/report.json"], GOOD,
     "cannot write the report {tmp}/data.jsonl/report.json: Not a directory"),
    # ---------------------------------------------------------------- arguments
    ("unknown stage", ["trian", "--data", "x"], {}, "invalid choice: 'trian'"),
    ("unknown option", ["train", "--lerning-rate", "1"], {}, "unrecognized arguments: --lerning-rate"),
    ("option without its value", ["train", "--batch-size"], {}, "argument --batch-size: expected one argument"),
    # ---------------------------------------------------------------- TSO settings
    ("TSO without prompts", ["tso", "run", "--output-dir", "{tmp}/t"], {},
     "no prompts: set prompts=FILE (or builtin:quickstart), or matrix_file=FILE"),
    ("TSO generator key typo", ["tso", "generate", "--config", "{tmp}/g.yaml"],
     {"g.yaml": "prompts: builtin:quickstart\ngenerators:\n  - {name: hot, model: x, temprature: 1.2, size: 1}\n"},
     "generators[0] ('hot'): unknown key 'temprature' (did you mean 'temperature'?)"),
    ("TSO zero rounds", ["tso", "run", "prompts=builtin:quickstart", "rounds=0"], {},
     "rounds must be at least 1, got 0"),
    ("TSO round-owned training key", ["tso", "run", "prompts=builtin:quickstart", "--config", "{tmp}/g.yaml"],
     {"g.yaml": "generators: [{name: p, policy: true, size: 1}]\ntrain: {output_dir: /tmp/elsewhere}\n"},
     "train.output_dir is set by each TSO round and cannot be given"),
    ("TSO flag threshold", ["tso", "run", "prompts=builtin:quickstart", "flag_threshold=0.4"], {},
     "flag_threshold must lie in (0.5, 1], got 0.4"),
    # ---------------------------------------------------------------- publishing and QLoRA (refused before training)
    ("push_to_hub without a repository id", TRAIN + ["data={tmp}/data.jsonl", "push_to_hub=true"], GOOD,
     "push_to_hub=true needs hub_model_id=NAME or OWNER/NAME"),
    ("hub id with two slashes", TRAIN + ["data={tmp}/data.jsonl", "push_to_hub=true", "hub_model_id=a/b/c"], GOOD,
     "hub_model_id 'a/b/c' is not a repository id: use NAME or OWNER/NAME"),
    ("hub id with a space", TRAIN + ["data={tmp}/data.jsonl", "push_to_hub=true", "hub_model_id=me/bad name"], GOOD,
     "hub_model_id 'me/bad name' is not a valid repository id"),
    ("adapter upload of a full fine-tune", TRAIN + ["data={tmp}/data.jsonl", "push_to_hub=true",
                                                     "hub_model_id=me/x", "hub_upload=adapter"], GOOD,
     "hub_upload=adapter uploads a LoRA adapter, but this run trains all weights (lora=false)"),
    ("unknown hub_upload", TRAIN + ["data={tmp}/data.jsonl", "hub_upload=weights"], GOOD,
     "hub_upload must be one of auto, merged, adapter, both, got 'weights'"),
    ("TSO round that pushes", ["tso", "run", "prompts=builtin:quickstart", "--config", "{tmp}/g.yaml"],
     {"g.yaml": "generators: [{name: p, policy: true, size: 1}]\ntrain: {push_to_hub: true}\n"},
     "train.push_to_hub: a TSO run publishes its final model, not each round's"),
    ("QLoRA without LoRA", TRAIN + ["data={tmp}/data.jsonl", "qlora=true"], GOOD,
     "qlora=true trains LoRA adapters on a 4-bit base: set lora=true as well"),
    # ---------------------------------------------------------------- evaluation
    ("eval on a missing file", ["eval", "pairs", "--data", "{tmp}/nope.jsonl", "--model", "{tiny}"], {},
     "{tmp}/nope.jsonl: no such file"),
    ("eval with an unknown judge type", ["eval", "generate", "--prompts", "{tmp}/p.txt", "--model", "{tiny}",
                                         "judge.type=oracle"], {"p.txt": "hi\n"},
     "judge.type must be one of reward_model, local_llm, http, callable"),  # then any judge a contributor adds
    ("win rates without files", ["eval", "winrate"], {}, "no annotation files: tokensift eval winrate FILE"),
    ("win rates from a missing file", ["eval", "winrate", "{tmp}/nope.json"], {}, "{tmp}/nope.json: no such file"),
    ("win rates from an empty file", ["eval", "winrate", "{tmp}/e.jsonl"], {"e.jsonl": ""}, "{tmp}/e.jsonl: no rows"),
    ("win rates from preference pairs", ["eval", "winrate", "{tmp}/data.jsonl"], GOOD,
     "{tmp}/data.jsonl: unknown format (first row's keys: chosen, prompt, rejected); expected AlpacaEval annotations"),
    ("win rates with a missing preference", ["eval", "winrate", "{tmp}/a.json"], {"a.json": json.dumps([ANNOTATION, {
        **ANNOTATION, "preference": None}])}, "{tmp}/a.json, row 1, field 'preference': missing preference"),
    ("win rates with a preference out of range", ["eval", "winrate", "{tmp}/a.json"],
     {"a.json": json.dumps([{**ANNOTATION, "preference": 3}])}, "{tmp}/a.json, row 0, field 'preference': must lie in [1, 2]"),
    ("win rates with a text preference", ["eval", "winrate", "{tmp}/a.json"],
     {"a.json": json.dumps([{**ANNOTATION, "preference": "b"}])}, "field 'preference': expected a number, got 'b'"),
    ("annotation without output_1", ["eval", "winrate", "{tmp}/a.json"],
     {"a.json": json.dumps([{k: v for k, v in ANNOTATION.items() if k != "output_1"}])},
     "{tmp}/a.json, row 0, field 'output_1': missing"),
    ("compare with one run", ["eval", "compare", "{tmp}/a.json"], {"a.json": json.dumps([ANNOTATION])},
     "eval compare needs at least two runs, got 1"),
    ("compare with zero bootstrap draws", ["eval", "compare", "{tmp}/a.json", "{tmp}/a.json", "bootstrap_samples=0"],
     {"a.json": json.dumps([ANNOTATION])}, "bootstrap_samples must be at least 1, got 0"),
]


@pytest.mark.parametrize("argv, files, phrase", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gives_its_error(argv, files, phrase, models, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # rejects files and default outputs land in the case's own folder
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    argv = [fill(a, tmp_path, models) for a in argv]
    code, out, err = run_cli(argv, capsys)
    assert_user_error(code, out, err, fill(phrase, tmp_path, models))


# ------------------------------------------------------------------------------------------------ cases with set-up
def test_qlora_without_bitsandbytes_or_cuda_names_what_is_missing(tmp_path, capsys):
    """On this CPU machine: neither bitsandbytes nor a CUDA device. The error names what is missing, before any
    model is loaded (the config check); where both exist QLoRA runs (tests/train/test_publish.py skips here)."""
    import importlib.util

    import torch

    if importlib.util.find_spec("bitsandbytes") is not None and torch.cuda.is_available():
        pytest.skip("bitsandbytes and a CUDA GPU are both present: QLoRA is available here")
    data = write_jsonl(tmp_path / "data.jsonl", [ROW, {**ROW, "prompt": "Be kind."}])
    code, out, err = run_cli(["train", "--data", data, "--output-dir", tmp_path / "run", "lora=true", "qlora=true",
                              "progress=false"], capsys)
    missing = [] if importlib.util.find_spec("bitsandbytes") else ["the bitsandbytes package (pip install bitsandbytes)"]
    if not torch.cuda.is_available():
        missing.append("a CUDA GPU (torch sees none")
    assert_user_error(code, out, err, f"qlora=true (a 4-bit base through bitsandbytes) needs {' and '.join(missing)}")
    assert not (tmp_path / "run").exists()


# name, token, hub ("fake" or "down"), extra argv, extra environment, phrase
HUB_CASES = [
    ("no token", None, "fake", [], {}, "push_to_hub=true, but no Hugging Face token was found: run `hf auth login`"),
    ("offline", "hf_alice_write_token_123456", "fake", [], {"HF_HUB_OFFLINE": "1"},
     "push_to_hub=true, but HF_HUB_OFFLINE is set"),
    ("no network", "hf_alice_write_token_123456", "down", [], {}, "push_to_hub=true, but the hub at "),
    ("refused token", "hf_not_a_valid_token_0000", "fake", [], {},
     "push_to_hub=true, but the hub refused the token (HTTP 401)"),
    ("read-only token", "hf_alice_read_token_1234567", "fake", [], {},
     "push_to_hub=true, but the Hugging Face token is read-only"),
    ("another namespace", "hf_alice_write_token_123456", "fake", ["hub_model_id=bob/model"], {},
     "hub_model_id 'bob/model' is in the namespace 'bob', where the token's user 'alice' cannot write"),
]


@pytest.mark.parametrize("token, hub_kind, extra, env, phrase", [c[1:] for c in HUB_CASES],
                         ids=[c[0] for c in HUB_CASES])
def test_push_to_hub_misconfiguration_fails_before_training(token, hub_kind, extra, env, phrase, models, tmp_path,
                                                            monkeypatch, capsys):
    """Checked at second 0 against a local fake hub (tests/fake_hub.py): nothing is loaded or trained."""
    import time

    from fake_hub import FakeHub, use_hub

    tokens = {"hf_alice_write_token_123456": {"name": "alice", "orgs": ["acme"], "role": "write"},
              "hf_alice_read_token_1234567": {"name": "alice", "role": "read"}}
    data = write_jsonl(tmp_path / "data.jsonl", [ROW, {**ROW, "prompt": "Be kind."}])
    with FakeHub(tokens) as hub:
        use_hub(monkeypatch, hub if hub_kind == "fake" else None, token, tmp_path)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        started = time.perf_counter()
        code, out, err = run_cli(["train", "--data", data, "--model", models["tiny"], "--output-dir",
                                  tmp_path / "run", "push_to_hub=true", "hub_model_id=alice/tiny", *extra,
                                  "progress=false"], capsys)
    assert_user_error(code, out, err, phrase)
    assert time.perf_counter() - started < 30 and not list((tmp_path / "run").glob("*"))  # nothing trained
    assert token is None or token not in out + err  # the token is never printed

def test_sepo_policy_with_another_tokenizer_needs_projection(models, scores, tmp_path, capsys):
    code, out, err = run_cli(["train", "--model", models["other"], "--output-dir", tmp_path / "p", "loss=sepo",
                              f"scores={scores}", "progress=false", "max_steps=1"], capsys)
    assert_user_error(code, out, err, f"the policy '{models['other']}' does not share the oracle's tokenizer "
                      "(vocabulary, special tokens or chat template differ), so the stored token scores do not "
                      "apply to its tokens. Use a policy of the oracle's family, or pass allow_projection=true")


def test_resume_needs_the_same_settings_model_and_an_intact_checkpoint(models, tmp_path, capsys):
    """A run folder continues only with the settings it was started with (each difference named), and only from a
    checkpoint that fits the model and can be read."""
    import shutil

    data = write_pairs(tmp_path / "pairs.jsonl", n=8)
    out = tmp_path / "run"
    model = tmp_path / "model"
    shutil.copytree(models["tiny"], model)
    common = ["train", "--data", data, "--output-dir", out, "--model", model, "loss=simpo", "batch_size=2",
              "save_every=1", "progress=false"]
    assert run_cli(common + ["max_steps=2"], capsys)[0] == 0
    code, o, err = run_cli(common + ["max_steps=3"], capsys)
    assert_user_error(code, o, err, f"{out} holds a finished run made with other settings (max_steps: 2 -> 3); "
                                    "pass overwrite=true to replace it")
    code, o, err = run_cli(common + ["max_steps=2", "lora=true"], capsys)
    assert_user_error(code, o, err, "other settings (lora: False -> True)")
    shutil.rmtree(out / "final")  # killed after its last checkpoint: the same settings continue from it
    shutil.rmtree(model)
    shutil.copytree(models["other"], model)  # ... but the model at that path was replaced by another one
    code, o, err = run_cli(common + ["max_steps=2"], capsys)
    assert_user_error(code, o, err, f"checkpoint {out}/checkpoint-00000001 does not fit this model")
    shutil.rmtree(model)
    shutil.copytree(models["tiny"], model)
    (out / "checkpoint-00000001" / "state.json").write_text('{"step": 1,')  # damaged after it was written
    code, o, err = run_cli(common + ["max_steps=2"], capsys)
    assert_user_error(code, o, err, f"checkpoint {out}/checkpoint-00000001 cannot be read (JSONDecodeError")


def test_long_prompts_are_truncated_counted_and_reported(models, tmp_path, capsys, caplog):
    """Decision: a prompt longer than the limits is not an error. It keeps its last tokens (the latest turns
    matter most) and every response keeps at least one token; the truncation is counted, printed as a warning
    and stored in the run card. Only limits that leave no room for a response are errors (cases above)."""
    long_prompt = " ".join(["Please answer the question politely and briefly."] * 30)
    data = write_jsonl(tmp_path / "long.jsonl", [ROW, {**ROW, "prompt": long_prompt}])
    code, out, err = run_cli(["train", "--data", data, "--model", models["tiny"], "--output-dir", tmp_path / "run",
                              "loss=simpo", "max_steps=1", "max_length=48", "max_prompt_length=32",
                              "progress=false"], capsys)
    # In a real process the warning goes to stderr (cli.main's logging set-up); in-process pytest captures it.
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert code == 0 and "Traceback" not in err
    assert any("2 pairs tokenised; 1 prompts truncated (" in w and "tokens dropped from their start)" in w
               for w in warned), warned
    card = json.loads((tmp_path / "run" / "final" / "run_card.json").read_text())
    assert any("1 prompts truncated" in note for note in card["data"]["notes"])
    # with no prompt limit the prompt still leaves room for one response token
    code, _, err = run_cli(["train", "--data", data, "--model", models["tiny"], "--output-dir", tmp_path / "run2",
                            "loss=simpo", "max_steps=1", "max_length=16", "max_prompt_length=none",
                            "progress=false"], capsys)
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert code == 0 and any("2 prompts truncated" in w and "4 responses truncated" in w for w in warned), warned


def test_skipped_rows_are_listed_in_a_rejects_file(models, tmp_path, monkeypatch, capsys):
    """skip_invalid=true is the one way past a bad row, and nothing is dropped silently."""
    monkeypatch.chdir(tmp_path)
    rows = [ROW, {**ROW, "chosen": ""}, {**ROW, "prompt": "Be kind."}, {**ROW, "rejected": ROW["chosen"]}]
    data = write_jsonl(tmp_path / "mixed.jsonl", rows)
    code, _, err = run_cli(["train", "--data", data, "--model", models["tiny"], "--output-dir", tmp_path / "run",
                            "loss=simpo", "max_steps=1", "skip_invalid=true", "progress=false"], capsys)
    assert code == 0, err
    rejects = [json.loads(x) for x in (tmp_path / "mixed.rejects.jsonl").read_text().splitlines()]
    assert [(r["row"], r["field"]) for r in rejects] == [(1, "chosen"), (3, "rejected")]
    card = json.loads((tmp_path / "run" / "final" / "run_card.json").read_text())
    assert "4 rows read, 2 valid, 2 skipped" in card["data"]["notes"][0]


# ------------------------------------------------------------------------------------------------ output folders
def test_full_disk_is_refused_before_training(models, tmp_path, monkeypatch, capsys):
    """Simulated: shutil.disk_usage reports 5 MiB free (the check needs 256 MiB). Nothing is loaded or trained."""
    import shutil as shutil_module
    import tokensift.train.outputs as outputs

    real = shutil_module.disk_usage
    monkeypatch.setattr(outputs.shutil, "disk_usage",
                        lambda path: real(path)._replace(free=5 << 20))
    data = write_pairs(tmp_path / "pairs.jsonl", n=4)
    for argv in (["train", "--data", data, "--model", models["tiny"], "--output-dir", tmp_path / "run"],
                 ["score", "--data", data, "--oracle", models["tiny"], "--reference", models["tiny"],
                  "--output-dir", tmp_path / "scores"]):
        code, out, err = run_cli(argv + ["progress=false"], capsys)
        assert_user_error(code, out, err, "has only 5 MiB free; at least 256 MiB are needed for checkpoints")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def mounted_tmpfs(path: Path, options: str) -> bool:
    path.mkdir()
    try:
        return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                              capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def unmount(path: Path) -> None:
    subprocess.run(["umount", str(path)], capture_output=True, timeout=10)


def test_really_full_disk_is_refused_before_training(models, tmp_path, capsys):
    """A real 1 MiB tmpfs, where the machine allows mounting (root in a VM or container with CAP_SYS_ADMIN)."""
    small = tmp_path / "small"
    if not mounted_tmpfs(small, "size=1m"):
        pytest.skip("cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN); the simulated test covers the check")
    try:
        data = write_pairs(tmp_path / "pairs.jsonl", n=4)
        code, out, err = run_cli(["train", "--data", data, "--model", models["tiny"], "--output-dir",
                                  small / "run", "progress=false"], capsys)
        assert_user_error(code, out, err, f"output_dir {small}/run has only 1 MiB free; at least 256 MiB are needed")
    finally:
        unmount(small)


def test_unwritable_output_dir_is_refused_before_training(models, tmp_path, capsys):
    """chmod 555 blocks writes for ordinary users; root ignores modes (these tests often run as root), so
    there a read-only tmpfs is used when it can be mounted, else a folder under /sys (read-only for root in
    containers). At least one of the three must apply, or the test skips saying why."""
    data = write_pairs(tmp_path / "pairs.jsonl", n=4)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        probe_blocked = not os.access(locked, os.W_OK)
        if probe_blocked:
            target, phrase = locked / "run", "cannot create output_dir"
        elif mounted_tmpfs(tmp_path / "ro", "ro,size=1m"):
            target, phrase = tmp_path / "ro", "is not writable: Read-only file system"
        elif Path("/sys").is_dir() and not os.access("/sys", os.W_OK):
            target, phrase = Path("/sys/tokensift-test-run"), "cannot create output_dir /sys/tokensift-test-run"
        else:
            pytest.skip("running as root without mount rights and with a writable /sys: no unwritable folder")
        code, out, err = run_cli(["train", "--data", data, "--model", models["tiny"], "--output-dir", target,
                                  "progress=false"], capsys)
        assert_user_error(code, out, err, phrase)
    finally:
        locked.chmod(0o755)
        if (tmp_path / "ro").exists():
            unmount(tmp_path / "ro")


def test_show_into_an_unwritable_place(scores, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    code, out, err = run_cli(["show", "--scores", scores, "--output", tmp_path / "file" / "page.html"], capsys)
    assert_user_error(code, out, err, f"cannot write {tmp_path}/file/page.html")


# ------------------------------------------------------------------------------------------------ a real process
def test_the_console_script_exits_2_without_a_traceback(tmp_path):
    """The same contract for the installed `tokensift` command in its own process (one case: each costs seconds)."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "hi", "chosen": "a", "rejected": "a"}\n')
    script = Path(sys.executable).with_name("tokensift")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "tokensift"]
    result = subprocess.run(command + ["train", "--data", str(bad), "--model", "/nonexistent/model"],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path,
                            env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert_user_error(result.returncode, result.stdout, result.stderr,
                      "model '/nonexistent/model' is neither a local path")
