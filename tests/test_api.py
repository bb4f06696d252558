"""The Python API's notebook flow: model objects in, selections with their text out, pages shown inline, quiet
progress, and a fresh output folder per call (issue 23). Tiny in-process models only."""

from __future__ import annotations

import copy
import html
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import tokensift
from conftest import build_model, write_pairs
from tokensift.errors import UserError
from tokensift.train.metrics import read_metrics

FAST = dict(learning_rate=1e-3, batch_size=8, max_steps=1, save_every=0, warmup_ratio=0.0, progress=False,
            max_length=64, max_prompt_length=32)
SCRIPT_ROW = {"prompt": "Show me markup.", "chosen": "Sure: <script>alert(1)</script> is a tag.",
              "rejected": "No."}


def rows(n: int = 6) -> list[dict]:
    good = ["I love this movie, it is wonderful and great!", "Happy joyful excellent good nice.",
            "Paris is the capital of France."]
    bad = ["This is terrible, awful and sad.", "bad worse worst", "I hate it."]
    return [{"prompt": f"Question {i}: how was it?", "chosen": good[i % 3], "rejected": bad[i % 3]} for i in range(n)]


@pytest.fixture(scope="module")
def scored(tmp_path_factory, tokenizer):
    """Token scores of an oracle (seed 0) against another tiny model (seed 1) as its reference, through the API:
    what score_tokens returns, and the folders."""
    root = tmp_path_factory.mktemp("scored")
    folders = {}
    for name, seed in (("oracle", 0), ("reference", 1)):
        folders[name] = root / name
        build_model(len(tokenizer), seed=seed).save_pretrained(folders[name], safe_serialization=True)
        tokenizer.save_pretrained(folders[name])
    result = tokensift.score_tokens(oracle=str(folders["oracle"]), reference=str(folders["reference"]),
                                    dataset=[SCRIPT_ROW] + rows(5), output_dir=str(root / "scores"), progress=False,
                                    max_length=64, max_prompt_length=32)
    return result


def summed_logps(model, pair) -> tuple[float, float]:
    """Plain full-logits forward (no packing, no cache): log pi of each response given the prompt, summed."""
    out = []
    for response in (pair.chosen_ids, pair.rejected_ids):
        ids = torch.tensor([list(pair.prompt_ids) + list(response)])
        with torch.no_grad():
            logp = model(input_ids=ids).logits[0, :-1].float().log_softmax(-1)
        token = logp.gather(-1, ids[0, 1:, None])[:, 0]
        out.append(float(token[len(pair.prompt_ids) - 1:].sum()))
    return out[0], out[1]


def tokenized(tokenizer, data: Path):
    from tokensift.train.config import TrainConfig
    from tokensift.train.data import load_pairs

    return load_pairs(str(data), TrainConfig(max_length=64, max_prompt_length=32), tokenizer).pairs


# ------------------------------------------------------------------------------------------- select_tokens
def test_select_tokens_takes_a_score_result_or_the_pair_and_carries_the_text(scored, tokenizer):
    result, records = scored
    from_folder = tokensift.select_tokens(str(result.output_dir), k_chosen=0.3, k_rejected=0.3)
    from_result = tokensift.select_tokens(result, k_chosen=0.3, k_rejected=0.3)
    from_pair = tokensift.select_tokens(scored, k_chosen=0.3, k_rejected=0.3)
    assert sorted(from_folder) == sorted(from_result) == sorted(from_pair) == sorted(records) == list(range(6))
    for row, rec in records.items():
        chosen_mask, rejected_mask = from_pair[row]  # still the (chosen mask, rejected mask) tuple
        assert chosen_mask.dtype == bool and len(chosen_mask) == len(rec["chosen_ids"])
        for other in (from_folder[row], from_result[row]):
            assert np.array_equal(other[0], chosen_mask) and np.array_equal(other[1], rejected_mask)
        selection = from_pair[row]
        assert selection.chosen.mask is selection[0] and selection.rejected.mask is selection[1]
        for side, mask in (("chosen", chosen_mask), ("rejected", rejected_mask)):
            part = getattr(selection, side)
            ids = rec[f"{side}_ids"]
            assert np.array_equal(part.scores, rec[f"{side}_scores"])
            assert part.text == tokenizer.decode([int(i) for i in ids[mask]])
            assert part.selected_tokens() == [tokenizer.decode([int(i)]) for i in ids[mask]]
            assert part.tokens == [tokenizer.decode([int(i)]) for i in ids]
    # top 30% of the chosen scores: the selected ones score at least as high as every unselected one
    chosen = from_pair[0].chosen
    assert chosen.scores[chosen.mask].min() >= chosen.scores[~chosen.mask].max()
    first = from_pair[0]
    assert "<script>" in first.chosen.response  # the whole response decodes back to the row's text
    assert "row=0" in repr(first) and "&lt;" in first._repr_html_() and "<script>" not in first._repr_html_()


def test_select_tokens_and_show_scores_refuse_other_types(scored):
    with pytest.raises(UserError, match=r"scores= takes a folder of token scores .*ScoreResult.*got int"):
        tokensift.select_tokens(42)
    with pytest.raises(UserError, match=r"scores= takes .*got a pair whose second item is a list"):
        tokensift.select_tokens((scored[0], []))
    with pytest.raises(UserError, match=r"scores= takes .*got float"):
        tokensift.show_scores(scores=3.5)


# ------------------------------------------------------------------------------------------- show_scores
def test_show_scores_returns_a_path_that_a_notebook_shows_inline(scored, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    page = tokensift.show_scores(scores=scored, pairs=2)
    assert isinstance(page, Path) and page.path == Path(str(page)) and page.exists()
    assert re.fullmatch(r"runs/show-\d{8}-\d{6}-[0-9a-f]{4}/token-scores\.html", str(page))
    text = page.read_text(encoding="utf-8")
    markup = page._repr_html_()
    # the only real tags are the iframe's own: the page (its <script> and every token) is escaped into srcdoc
    tags = re.findall(r"<[^>]*>", markup)
    assert len(tags) == 2 and tags[0].startswith("<iframe ") and tags[1] == "</iframe>"
    assert 'sandbox="allow-scripts"' in tags[0]
    srcdoc = re.search(r'srcdoc="([^"]*)"', markup).group(1)
    assert html.unescape(srcdoc) == text
    # the token text <script>alert(1)</script> is in the page as data (JSON), and nowhere as markup
    data = json.loads(re.search(r'<script type="application/json" id="ts-data">(.*?)</script>', text, re.S).group(1))
    assert "<script>alert(1)</script>" in "".join(data["pairs"][0]["chosen"]["tokens"])
    assert "<script>alert" not in text and "<script>alert" not in markup
    # a second call writes another page; an output that is set is used as it is
    again = tokensift.show_scores(scores=scored[0], pairs=1)
    assert again.parent != page.parent
    named = tokensift.show_scores(scores=str(scored[0].output_dir), pairs=1, output="mine/page.html")
    assert str(named) == "mine/page.html" and named.exists()


# ------------------------------------------------------------------------------------------- model objects
def test_train_model_trains_a_model_object_in_place_without_loading_it(tmp_path, tokenizer, monkeypatch):
    from transformers import AutoModelForCausalLM

    from tokensift.given import weights_fingerprint

    def no_loading(*args, **kwargs):
        raise AssertionError("the model object was loaded again from disk")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", no_loading)
    data = write_pairs(tmp_path / "pairs.jsonl", n=8)
    model = build_model(len(tokenizer))  # never saved: no name_or_path
    start = copy.deepcopy(model.state_dict())
    fingerprint = weights_fingerprint(model)
    result = tokensift.train_model(model=model, processing_class=tokenizer, train_dataset=str(data), loss="dpo",
                                   output_dir=str(tmp_path / "run"), ref_cache_dir=str(tmp_path / "cache"), **FAST)
    trained = model.state_dict()
    assert any(not torch.equal(start[k], trained[k]) for k in start)  # trained in place
    saved = load_file(str(result.final_dir / "model.safetensors"))
    assert all(torch.equal(saved[k], trained[k]) for k in saved)
    card = json.loads((result.final_dir / "run_card.json").read_text())
    assert card["config"]["model"] == "<in-memory LlamaForCausalLM>"
    assert card["model_objects"]["model"]["weights_sha256"] == fingerprint != weights_fingerprint(model)
    assert "a model object handed over in Python (LlamaForCausalLM" in (result.final_dir / "README.md").read_text()


def test_model_arguments_of_the_wrong_type_are_refused_by_name(tmp_path, tokenizer):
    data = write_pairs(tmp_path / "pairs.jsonl", n=4)
    expected = r"takes a name or path \(str\), a transformers PreTrainedModel or a peft PeftModel; got "
    with pytest.raises(UserError, match=r"^model= " + expected + "int"):
        tokensift.train_model(model=42, train_dataset=str(data))
    with pytest.raises(UserError, match=r"^ref_model= " + expected + "list"):
        tokensift.train_model(ref_model=[1], train_dataset=str(data))
    with pytest.raises(UserError, match=r"^ref_model= " + expected + "dict"):
        tokensift.evaluate_pairs(reference={"a": 1}, dataset=str(data))
    with pytest.raises(UserError, match=r"^processing_class= takes a name or path \(str\) or a transformers "
                                        r"tokenizer .*; got int"):
        tokensift.train_model(model=build_model(len(tokenizer)), processing_class=3, train_dataset=str(data),
                              output_dir=str(tmp_path / "x"))
    with pytest.raises(UserError, match=r"^peft_config= takes a peft.LoraConfig; got str"):
        tokensift.train_model(peft_config="lora", train_dataset=str(data))
    with pytest.raises(UserError, match="in-memory model without a name_or_path .* pass processing_class="):
        tokensift.train_model(model=build_model(len(tokenizer)), train_dataset=str(data),
                              output_dir=str(tmp_path / "y"))
    with pytest.raises(UserError, match="model= holds float32 weights and dtype=bfloat16 is set"):
        tokensift.train_model(model=build_model(len(tokenizer)), processing_class=tokenizer, dtype="bfloat16",
                              train_dataset=str(data), output_dir=str(tmp_path / "w"))
    with pytest.raises(UserError, match="loss=simpo uses no reference model: ref_model= is not read"):
        tokensift.train_model(loss="simpo", ref_model=build_model(len(tokenizer)), processing_class=tokenizer,
                              train_dataset=str(data), output_dir=str(tmp_path / "z"))


@pytest.mark.parametrize("loss", ["dpo", "tdpo"])
def test_ref_model_object_is_the_reference(tmp_path, tokenizer, loss):
    """Step 1's rewards are beta * (log pi - log pi_ref) of the untrained policy: 0 against its own start, and
    against another reference object exactly what a plain forward of both models gives. dpo takes the reference
    from the cache's one no-grad pass, tdpo keeps it frozen beside the policy."""
    data = write_pairs(tmp_path / "pairs.jsonl", n=8)
    pairs = tokenized(tokenizer, data)
    policy, reference = build_model(len(tokenizer), seed=0), build_model(len(tokenizer), seed=1)
    reference_start = copy.deepcopy(reference.state_dict())
    logps = [(summed_logps(policy, p), summed_logps(reference, p)) for p in pairs]
    beta = 0.1
    expected_chosen = beta * np.mean([a[0] - b[0] for a, b in logps])
    expected_rejected = beta * np.mean([a[1] - b[1] for a, b in logps])
    assert abs(expected_chosen) > 1e-3  # the two models differ: the test can tell them apart
    rewards = {}
    for name, ref in (("own start", None), ("other", reference)):
        model = build_model(len(tokenizer), seed=0)
        result = tokensift.train_model(model=model, ref_model=ref, processing_class=tokenizer, loss=loss, beta=beta,
                                       train_dataset=str(data), output_dir=str(tmp_path / name.replace(" ", "-")),
                                       ref_cache_dir=str(tmp_path / "cache"), **FAST)
        first = read_metrics(result.output_dir / "metrics.jsonl")[0]
        rewards[name] = (first["rewards/chosen"], first["rewards/rejected"])
    assert max(abs(r) for r in rewards["own start"]) < 1e-5
    assert abs(rewards["other"][0] - expected_chosen) < 1e-4, (rewards, expected_chosen)
    assert abs(rewards["other"][1] - expected_rejected) < 1e-4, (rewards, expected_rejected)
    assert all(torch.equal(reference_start[k], v) for k, v in reference.state_dict().items())  # stayed frozen


def test_evaluate_pairs_and_train_oracle_take_model_objects(tmp_path, tokenizer, monkeypatch):
    """evaluate_pairs scores with the objects as they are (the log-probs of a plain forward of each); the oracle
    trains a model object and its run card records it."""
    from transformers import AutoModelForCausalLM

    def no_loading(*args, **kwargs):
        raise AssertionError("a model object was loaded again from disk")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", no_loading)
    data = write_pairs(tmp_path / "pairs.jsonl", n=6)
    pairs = tokenized(tokenizer, data)
    policy, reference = build_model(len(tokenizer), seed=0), build_model(len(tokenizer), seed=1)
    results = tokensift.evaluate_pairs(model=policy, ref_model=reference, processing_class=tokenizer,
                                       dataset=str(data), max_length=64, max_prompt_length=32, progress=False)
    items = {item["row"]: item for item in results["items"]}
    for pair in pairs:
        policy_c, policy_r = summed_logps(policy, pair)
        ref_c, ref_r = summed_logps(reference, pair)
        item = items[pair.row]
        assert abs(item["policy_chosen_logp"] - policy_c) < 1e-4 and abs(item["policy_rejected_logp"] - policy_r) < 1e-4
        assert abs(item["reference_chosen_logp"] - ref_c) < 1e-4
        assert abs(item["reference_rejected_logp"] - ref_r) < 1e-4
    oracle = build_model(len(tokenizer), seed=2)
    result = tokensift.train_oracle(model=oracle, processing_class=tokenizer, train_dataset=str(data),
                                    output_dir=str(tmp_path / "oracle"), ref_cache_dir=str(tmp_path / "cache"),
                                    fraction=0.5, **FAST)
    card = json.loads((result.final_dir / "run_card.json").read_text())
    assert card["model_objects"]["model"]["class"] == "LlamaForCausalLM" and card["data"]["train_pairs"] == 3
    with pytest.raises(UserError, match="the oracle starts from its reference"):
        tokensift.train_oracle(model=oracle, reference=reference, processing_class=tokenizer, train_dataset=str(data),
                               output_dir=str(tmp_path / "oracle2"), **FAST)


def test_two_in_memory_models_of_one_name_never_share_the_reference_cache(tmp_path, tokenizer, model_dir):
    """A model loaded from model_dir and then changed keeps model_dir as its name_or_path: its reference
    log-probs must be its own, not those cached for the files in model_dir (step 1's rewards stay 0)."""
    from transformers import AutoModelForCausalLM

    data = write_pairs(tmp_path / "pairs.jsonl", n=8)
    cache = tmp_path / "cache"
    on_disk = tokensift.train_model(model=str(model_dir), train_dataset=str(data), output_dir=str(tmp_path / "disk"),
                                    ref_cache_dir=str(cache), **FAST)
    changed = AutoModelForCausalLM.from_pretrained(model_dir)
    assert changed.name_or_path == str(model_dir)
    with torch.no_grad():
        for param in changed.parameters():
            param.mul_(1.5)
    in_memory = tokensift.train_model(model=changed, train_dataset=str(data), output_dir=str(tmp_path / "memory"),
                                      ref_cache_dir=str(cache), **FAST)
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 2
    for result in (on_disk, in_memory):
        first = read_metrics(result.output_dir / "metrics.jsonl")[0]
        assert abs(first["rewards/chosen"]) < 1e-5 and abs(first["rewards/rejected"]) < 1e-5
    card = json.loads((in_memory.final_dir / "run_card.json").read_text())
    assert card["config"]["model"] == str(model_dir) and card["model_objects"]["model"]["name_or_path"] == str(model_dir)


def test_a_run_folder_remembers_the_model_object_it_started_from(tmp_path, tokenizer, capsys):
    """Two objects can share a name_or_path (the config's `model`): a run in output_dir is kept (same settings)
    only when it started from the same weights; from other weights it is refused, as other settings are."""
    data = write_pairs(tmp_path / "pairs.jsonl", n=8)
    settings = dict(processing_class=tokenizer, train_dataset=str(data), output_dir=str(tmp_path / "run"),
                    ref_cache_dir=str(tmp_path / "cache"), **FAST)
    model = build_model(len(tokenizer), seed=0)
    first = tokensift.train_model(model=model, **settings)
    card = (first.final_dir / "run_card.json").read_text()
    again = tokensift.train_model(model=build_model(len(tokenizer), seed=0), **settings)  # the same start
    assert again.final_dir == first.final_dir and "finished already with these settings" in capsys.readouterr().out
    assert (first.final_dir / "run_card.json").read_text() == card  # kept, not trained again
    with pytest.raises(UserError, match=r"holds a run that started from other model objects \(model [0-9a-f]{12}; "
                                        r"this run: model [0-9a-f]{12}\); a model object is trained in place"):
        tokensift.train_model(model=model, **settings)  # trained in place since: another start


def test_peft_config_trains_only_its_adapters(tmp_path, tokenizer):
    from peft import LoraConfig

    data = write_pairs(tmp_path / "pairs.jsonl", n=8)
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    with pytest.raises(UserError, match=r"peft_config= and lora=true disagree \(lora_r=16 but peft_config has 4; "
                                        r"lora_alpha=32 but peft_config has 8; lora_targets=q_proj,k_proj,v_proj,"
                                        r"o_proj but peft_config has q_proj,v_proj\)"):
        tokensift.train_model(model=build_model(len(tokenizer)), processing_class=tokenizer, peft_config=lora,
                              lora=True, train_dataset=str(data), output_dir=str(tmp_path / "refused"))
    model = build_model(len(tokenizer))
    start = {k: v.clone() for k, v in model.state_dict().items()}
    result = tokensift.train_model(model=model, processing_class=tokenizer, peft_config=lora, train_dataset=str(data),
                                   output_dir=str(tmp_path / "run"), ref_cache_dir=str(tmp_path / "cache"), **FAST)
    merged = load_file(str(result.final_dir / "model.safetensors"))
    assert set(merged) == set(start)
    adapted = {k for k in start if not torch.equal(merged[k], start[k])}
    assert adapted and all(".q_proj." in k or ".v_proj." in k for k in adapted)  # nothing else moved
    adapter = json.loads((result.final_dir / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and adapter["lora_alpha"] == 8 and set(adapter["target_modules"]) == {"q_proj", "v_proj"}
    config = json.loads((result.final_dir / "run_card.json").read_text())["config"]
    assert (config["lora"], config["lora_r"], config["lora_alpha"], config["lora_targets"]) == (True, 4, 8,
                                                                                                "q_proj,v_proj")


# ------------------------------------------------------------------------------------------- folders and bars
def test_calls_without_output_dir_write_fresh_folders(tmp_path, model_dir, monkeypatch):
    from tokensift.api import fresh_folder

    monkeypatch.chdir(tmp_path)
    data = write_pairs(tmp_path / "pairs.jsonl", n=8)
    config = tokensift.TrainConfig(model=str(model_dir), data=str(data), ref_cache_dir=str(tmp_path / "cache"), **FAST)
    assert config.output_dir == "runs/train"  # the field's default: treated as not set
    first = tokensift.train_model(config)
    card = (first.final_dir / "run_card.json").read_text()
    second = tokensift.train_model(config)
    assert first.output_dir != second.output_dir
    for result in (first, second):
        assert re.fullmatch(r"runs/train-\d{8}-\d{6}-[0-9a-f]{4}", str(result.output_dir))
        assert (result.final_dir / "model.safetensors").exists()
    assert (first.final_dir / "run_card.json").read_text() == card  # the second call left the first alone
    assert not Path("runs/train").exists()
    assert len({fresh_folder("x") for _ in range(20)}) == 20  # within one second too


def test_progress_false_prints_no_bars(tmp_path, model_dir, capfd):
    from huggingface_hub.utils import are_progress_bars_disabled
    from transformers.utils import logging as transformers_logging

    from huggingface_hub.utils import enable_progress_bars

    data = write_pairs(tmp_path / "pairs.jsonl", n=8)
    transformers_logging.enable_progress_bar()  # as in a fresh notebook (an earlier test may have run the CLI,
    enable_progress_bars()                      # whose main() turns the libraries' bars off for its process)
    capfd.readouterr()
    before = transformers_logging.is_progress_bar_enabled(), are_progress_bars_disabled()
    result = tokensift.train_model(model=str(model_dir), train_dataset=str(data), output_dir=str(tmp_path / "run"),
                                   ref_cache_dir=str(tmp_path / "cache"), **FAST)
    err = capfd.readouterr().err
    assert (result.final_dir / "model.safetensors").exists()
    assert before == (True, False)  # bars were on: the call had bars to silence
    for bar in ("\r", "it/s", "%|", "Loading weights", "reference log-probs"):
        assert bar not in err, err
    assert (transformers_logging.is_progress_bar_enabled(), are_progress_bars_disabled()) == before  # restored
