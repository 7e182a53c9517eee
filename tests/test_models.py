"""Resolving and loading models: Hub ids through a local Hugging Face cache (offline), and the
refusals: pickles, corrupt safetensors, unknown architectures, missing models."""

import shutil

import pytest
import torch

from sgm_export.errors import (
    CheckpointError,
    ModelNotFoundError,
    UnsafeCheckpointError,
    UnsupportedArchitectureError,
)
from sgm_export.models.load import load_model
from sgm_export.models.resolve import resolve_model


def test_hub_id_resolves_through_the_local_hub_cache(tiny_llama, tmp_path, monkeypatch):
    snapshot = tmp_path / "hub" / "models--acme--tiny" / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_llama, snapshot)
    (tmp_path / "hub" / "models--acme--tiny" / "refs").mkdir()
    (tmp_path / "hub" / "models--acme--tiny" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    loaded = load_model("acme/tiny")
    assert loaded.source.hub_id == "acme/tiny" and loaded.source.path == snapshot
    assert loaded.model.config.model_type == "llama"


def test_hub_id_not_available_offline():
    with pytest.raises(ModelNotFoundError, match="could not download"):
        resolve_model("acme/does-not-exist")


def test_missing_path_and_bad_names(tmp_path):
    with pytest.raises(ModelNotFoundError, match="neither a directory"):
        resolve_model(str(tmp_path / "nope"))
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ModelNotFoundError, match="is a file"):
        resolve_model(str(tmp_path / "file.txt"))


def test_pickle_only_checkpoint_is_refused_unless_allowed(tiny_llama, tmp_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    (tmp_path / "pickled").mkdir()
    torch.save(model.state_dict(), tmp_path / "pickled" / "pytorch_model.bin")
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_llama / name, tmp_path / "pickled" / name)
    assert not list((tmp_path / "pickled").glob("*.safetensors"))
    with pytest.raises(UnsafeCheckpointError, match="--allow-pickle"):
        load_model(str(tmp_path / "pickled"))
    loaded = load_model(str(tmp_path / "pickled"), allow_pickle=True)
    assert torch.equal(loaded.model.lm_head.weight, model.lm_head.weight)


def test_truncated_safetensors_is_reported(tiny_llama, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_llama, broken)
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_model(str(broken))


def test_unsupported_architecture_lists_the_supported_ones(tiny_llama, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(tiny_llama, other)
    config = (other / "config.json").read_text().replace('"llama"', '"mamba"')
    (other / "config.json").write_text(config)
    with pytest.raises(UnsupportedArchitectureError, match="'mamba'.*gemma3_text.*gpt2"):
        load_model(str(other))
