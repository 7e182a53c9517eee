"""Untrusted files: code in a model runs only when the user trusts it, pickles load only when
allowed, and an export's modeling_sgm.py is checked against the tool's own copy before it runs.

(That the Hugging Face token never appears in what a push writes is tested with the push
command, which does not exist yet.)
"""

import json
import shutil
from pathlib import Path

import pytest

from sgm_export.errors import UnsafeCheckpointError
from sgm_export.export import export_checkpoint
from sgm_export.models.load import load_model
from sgm_export.models.resolve import resolve_model
from tests.cli_helpers import sgm
from tests.test_export import random_glasses, widths_of

CUSTOM_CODE = '''
from transformers import LlamaForCausalLM


class MarkedLlama(LlamaForCausalLM):
    """Proof that the model's own code ran."""

    ran_custom_code = True
'''


def test_remote_code_runs_only_when_trusted(tiny_llama, tmp_path):
    model = tmp_path / "custom"
    shutil.copytree(tiny_llama, model)
    (model / "marked_llama.py").write_text(CUSTOM_CODE)
    config = json.loads((model / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "marked_llama.MarkedLlama"}
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsafeCheckpointError, match="auto_map.*--trust-remote-code"):
        load_model(str(model))
    trusted = load_model(str(model), trust_remote_code=True)
    assert type(trusted.model).__name__ == "MarkedLlama" and trusted.model.ran_custom_code


def tampered_export(base: Path, out: Path, marker: Path) -> Path:
    """A module export whose modeling_sgm.py still works, but also writes `marker` when run."""
    export_checkpoint(str(base), random_glasses(widths_of(base)), out)
    modeling = out / "modeling_sgm.py"
    modeling.write_text(modeling.read_text() + f"\nimport pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n")
    return out


def test_a_foreign_modeling_file_is_never_run(tiny_llama, tmp_path):
    marker = tmp_path / "foreign-code-ran"
    export = tampered_export(tiny_llama, tmp_path / "tampered-export", marker)  # a name no other test loads
    result = sgm("verify", export, "--base", tiny_llama)
    assert result.code == 1, result.stdout + result.stderr
    assert "FAIL" in result.stdout and "modeling_sgm.py differs from the copy in this sgm-export, so it was not run" in result.stdout
    assert "differs from the SHA-256 recorded" in result.stdout  # the manifest notices it too
    with pytest.raises(UnsafeCheckpointError, match="may run foreign code"):
        load_model(str(export))
    assert not marker.exists()
    load_model(str(export), trust_remote_code=True)  # the user read it and trusts it: now it runs
    assert marker.read_text() == "ran"


def test_pickles_load_only_when_allowed_from_the_command_line(tiny_llama, labelled_jsonl, tmp_path):
    import torch
    from safetensors.torch import load_file

    model = tmp_path / "pickled"
    shutil.copytree(tiny_llama, model)
    torch.save(load_file(model / "model.safetensors"), model / "pytorch_model.bin")
    (model / "model.safetensors").unlink()
    refused = sgm("score", model, "--data", labelled_jsonl, "--out", tmp_path / "s")
    assert refused.code == 2 and "--allow-pickle" in refused.stderr
    allowed = sgm("score", model, "--data", labelled_jsonl, "--out", tmp_path / "s", "--allow-pickle")
    assert allowed.code == 0, allowed.stderr
    assert (tmp_path / "s" / "scores.safetensors").is_file()


@pytest.mark.parametrize("allow_pickle", [False, True])
def test_hub_downloads_skip_pickles_unless_allowed(monkeypatch, tmp_path, allow_pickle):
    asked = {}

    def fake_snapshot_download(repo_id, revision=None, ignore_patterns=()):
        asked.update(repo_id=repo_id, ignore=set(ignore_patterns))
        return str(tmp_path)

    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_snapshot_download)
    assert resolve_model("acme/model", allow_pickle=allow_pickle).path == tmp_path
    pickles = {"*.bin", "*.pt", "*.pth", "*.pkl", "*.ckpt"}
    assert asked["repo_id"] == "acme/model" and (pickles <= asked["ignore"]) is not allow_pickle


def test_a_model_checked_with_wider_access_is_held_to_what_each_stage_allows(tiny_llama, tmp_path):
    """`run` checks MODEL once with the recipe's access and passes it on; a stage that allows less
    (export, ONNX, verify) refuses it with the same line as if it had checked MODEL itself."""
    import torch
    from safetensors.torch import load_file

    from sgm_export.models.preflight import check_model

    custom = tmp_path / "custom"
    shutil.copytree(tiny_llama, custom)
    (custom / "marked_llama.py").write_text(CUSTOM_CODE)
    config = json.loads((custom / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "marked_llama.MarkedLlama"}
    (custom / "config.json").write_text(json.dumps(config))
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_llama, pickled)
    torch.save(load_file(pickled / "model.safetensors"), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()

    for folder, access in ((custom, {"trust_remote_code": True}), (pickled, {"allow_pickle": True})):
        held = check_model(str(folder), **access)
        with pytest.raises(UnsafeCheckpointError) as afresh:
            check_model(str(folder))
        with pytest.raises(UnsafeCheckpointError) as narrowed:
            held.with_access(allow_pickle=False, trust_remote_code=False)
        assert str(narrowed.value) == str(afresh.value)
        assert held.with_access(**{"allow_pickle": False, "trust_remote_code": False, **access}) == held
    with pytest.raises(UnsafeCheckpointError, match="delete auto_map"):  # the export's own advice, as for a name
        export_checkpoint(check_model(str(custom), trust_remote_code=True), random_glasses(widths_of(custom)), tmp_path / "out")
    trusted = load_model(check_model(str(custom), trust_remote_code=True), trust_remote_code=True)  # access is asked for each time
    assert type(trusted.model).__name__ == "MarkedLlama"
