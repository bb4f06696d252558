"""Outputs a user can publish: the model card's Hub metadata (parsed back with yaml.safe_load), the training summary,
generation_config.json stopping at each template family's turn end, and push_to_hub against a local fake hub
(tests/fake_hub.py: the real huggingface_hub client, only the network peer is local).
"""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml
from conftest import write_pairs
from families import FAMILIES, build_family_model, build_family_tokenizer

from tokensift.cli import main as cli_main
from tokensift.config import build
from tokensift.train.card import model_origin, training_card
from tokensift.train.config import TrainConfig
from tokensift.train.data import PairSet, TrainData
from tokensift.train.outputs import write_generation_config

TOKENS = {"hf_alice_write_token_123456": {"name": "alice", "orgs": ["acme"], "role": "write"}}


def front_matter(text: str) -> dict:
    match = re.match(r"^---\n(.*?)\n---\n", text, re.S)
    assert match, text[:200]
    return yaml.safe_load(match.group(1))


def hub_snapshot(tmp_path, model_dir, repo="acme/tiny-base", license_="mit"):
    """The tiny model where huggingface_hub would have cached `repo`, with the repository's own card."""
    owner, name = repo.split("/")
    folder = tmp_path / "hub" / f"models--{owner}--{name}" / "snapshots" / ("ab" * 20)
    shutil.copytree(model_dir, folder)
    (folder / "README.md").write_text(f"---\nlicense: {license_}\nlibrary_name: transformers\n---\n# tiny\n")
    return folder


def run(argv, capsys) -> str:
    code = cli_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, err[-2000:]
    return out


def test_card_metadata_and_summary_of_a_cli_run_and_of_a_chain(tmp_path, model_dir, capsys):
    base = hub_snapshot(tmp_path, model_dir)
    data = write_pairs(tmp_path / "pairs.jsonl", n=8)
    argv = ["dpo", "--data", data, "--model", base, "--output-dir", tmp_path / "dpo", "beta=0.2", "max_steps=2",
            "batch_size=4", "eval_fraction=0.25", "progress=false", "learning_rate=1e-3"]
    run(argv, capsys)
    card = (tmp_path / "dpo" / "final" / "README.md").read_text()
    meta = front_matter(card)
    assert meta == {"base_model": "acme/tiny-base", "library_name": "tokensift", "license": "mit",
                    "tags": ["tokensift", "dpo", "preference-optimization"], "pipeline_tag": "text-generation"}
    recorded = json.loads((tmp_path / "dpo" / "final" / "run_card.json").read_text())
    fingerprint = recorded["data"]["train_fingerprint"].replace("|", "\\|")
    assert f"| fingerprint | {fingerprint} |" in card
    assert "| training pairs | 6 |" in card and "| held-out pairs | 2 |" in card
    assert "| beta | 0.2 |" in card and "| loss | dpo (sigmoid DPO on summed log-ratios) |" in card
    assert "train rewards/accuracy (last step)" in card and "eval/rewards/accuracy" in card
    assert f"tokensift dpo --data {data} --model {base}" in card and "beta=0.2 max_steps=2" in card
    assert "Versions: tokensift 0.1.0" in card

    # A model trained from that final folder names the same base model and license (and its LoRA adapter).
    run(["train", "--data", data, "--model", tmp_path / "dpo" / "final", "--output-dir", tmp_path / "second",
         "loss=simpo", "max_steps=1", "lora=true", "progress=false"], capsys)
    chained = (tmp_path / "second" / "final" / "README.md").read_text()
    meta = front_matter(chained)
    assert (meta["base_model"], meta["license"]) == ("acme/tiny-base", "mit")
    assert meta["tags"] == ["tokensift", "simpo", "preference-optimization", "lora"]
    assert "a tokensift model fine-tuned from acme/tiny-base" in chained and "LoRA r=16" in chained


def test_card_of_a_python_run_shows_its_settings_and_hub_datasets(tmp_path, model_dir):
    config = build(TrainConfig, {"data": "Anthropic/hh-rlhf", "model": "smollm2-135m-instruct", "loss": "tso",
                                 "output_dir": str(tmp_path / "out"), "clip_chosen": 1.5})
    data = TrainData(train=PairSet("Anthropic/hh-rlhf", "fp123", []))
    card = training_card(config, data, 3, {"loss": 0.5, "rewards/accuracy": 0.75}, None, {"tokensift": "0.1.0"}, [2])
    meta = front_matter(card)
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and meta["license"] == "apache-2.0"
    assert meta["datasets"] == ["Anthropic/hh-rlhf"] and "tso" in meta["tags"]
    assert "Started from Python" in card and "clip_chosen: 1.5" in card and "| clip_chosen | 1.5 |" in card
    assert model_origin(str(tmp_path))["base_model"] is None  # a plain folder: no base model is claimed


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_generation_config_stops_at_the_template_turn_end(name, tmp_path):
    family = FAMILIES[name]
    tokenizer = build_family_tokenizer(family)
    build_family_model(family, len(tokenizer)).save_pretrained(tmp_path, safe_serialization=True)
    stop_ids = write_generation_config(tmp_path, tokenizer)
    # The yardstick from the family's definition alone: its turn-end token, then EOS when that is another token.
    expected = [tokenizer.convert_tokens_to_ids(family.turn_end)]
    if family.eos != family.turn_end:
        expected.append(tokenizer.convert_tokens_to_ids(family.eos))
    saved = json.loads((tmp_path / "generation_config.json").read_text())
    assert stop_ids == saved["eos_token_id"] == expected
    assert saved["pad_token_id"] == tokenizer.convert_tokens_to_ids(family.pad)
    from transformers import GenerationConfig

    assert GenerationConfig.from_pretrained(tmp_path).eos_token_id == expected  # what transformers will stop on


def test_push_to_hub_uploads_card_weights_and_adapter_as_chosen(tmp_path, model_dir, monkeypatch, capsys):
    from fake_hub import FakeHub, use_hub

    data = write_pairs(tmp_path / "pairs.jsonl", n=4)
    common = ["train", "--data", data, "--model", model_dir, "loss=simpo", "max_steps=1", "lora=true",
              "progress=false", "push_to_hub=true"]
    with FakeHub(TOKENS) as hub:
        use_hub(monkeypatch, hub, "hf_alice_write_token_123456", tmp_path)
        out = run(common + ["--output-dir", tmp_path / "both", "hub_model_id=acme/tiny-simpo", "hub_private=true"],
                  capsys)
        run(common + ["--output-dir", tmp_path / "adapter", "hub_model_id=tiny-adapter", "hub_upload=adapter"], capsys)
    assert f"uploaded" in out and "acme/tiny-simpo" in out
    both = hub.repos["acme/tiny-simpo"]
    assert both["private"] and len(both["commits"]) == 1
    assert {"README.md", "model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
            "run_card.json", "adapter/adapter_model.safetensors", "adapter/adapter_config.json"} <= set(both["files"])
    assert both["files"]["model.safetensors"] == (tmp_path / "both" / "final" / "model.safetensors").read_bytes()
    assert front_matter(both["files"]["README.md"].decode())["library_name"] == "tokensift"
    adapter = hub.repos["alice/tiny-adapter"]["files"]  # 'name' alone: the token's user's namespace
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md", "generation_config.json"} <= set(adapter)
    assert "model.safetensors" not in adapter and "config.json" not in adapter
    assert front_matter(adapter["README.md"].decode())["library_name"] == "tokensift"  # ours, not peft's
    assert not any(b"hf_alice_write_token" in content for content in both["files"].values())
