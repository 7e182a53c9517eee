"""The typed artifact layer: files written by sgm-export 0.1.0 (tests/data/v0_1_0, made with that
version's command line: score, glasses, export module and folded, onnx from the module export)
read as typed settings, render the very card 0.1.0 wrote, and are written anew with numbers as
numbers; the safetensors encoding round-trips."""

import json
import shutil
from pathlib import Path

import pytest
from safetensors import safe_open

from sgm_export.artifacts import ExportManifest, GlassesMetadata, ScoresMetadata, read_export_manifest
from sgm_export.errors import CheckpointError
from sgm_export.glasses import load_glasses, save_glasses
from sgm_export.options import GlassesOptions
from sgm_export.publish.card import render_card
from sgm_export.publish.refresh import refresh_card
from sgm_export.score.files import load_scores

V010 = Path(__file__).parent / "data" / "v0_1_0"


def test_scores_of_0_1_0_read_as_typed_provenance():
    scores = load_scores(V010 / "scores")
    assert scores.metadata == ScoresMetadata(
        sgm_export_version="0.1.0",
        model="tiny-llama",
        model_type="llama",
        family="gated",
        pool="mean",
        max_length=128,
        limit=None,
        data=["data.jsonl"],
        n_toxic=4,
        n_neutral=4,
        n_images=0,
        vocabulary="2 toxic words (profanity-check >= 0.8)",
    )


def test_glasses_of_0_1_0_read_as_typed_settings_and_write_back_the_same_strings(tmp_path):
    glasses = load_glasses(V010 / "glasses.safetensors")
    assert glasses.metadata.settings == GlassesOptions(strength=1.5, top_k=40, amplify=1.25, shift=True, guard=3.0)
    assert (glasses.metadata.n_experts, glasses.metadata.n_guarded, glasses.metadata.base_model) == (40, 4, "tiny-llama")
    assert glasses.metadata.provenance.data == ["data.jsonl"] and glasses.metadata.provenance.max_length == 128
    damp = load_glasses(V010 / "damp.safetensors").metadata.settings
    assert (damp.mode, damp.alpha, damp.threshold, damp.top_k, damp.shift) == ("damp", 0.3, 0.6, None, False)
    again = load_glasses(save_glasses(glasses, tmp_path / "again.safetensors"))
    assert again.metadata == glasses.metadata
    with safe_open(V010 / "glasses.safetensors", "np") as old, safe_open(tmp_path / "again.safetensors", "np") as new:
        before, after = old.metadata(), new.metadata()
    assert {key for key, value in before.items() if after.get(key) != value} == {"shift"}
    assert after["shift"] == "true"  # 0.1.0 wrote a phrase, which reads as on


@pytest.mark.parametrize("kind", ["module", "folded", "onnx"])
def test_a_0_1_0_manifest_renders_the_card_0_1_0_wrote(kind):
    manifest = read_export_manifest(V010 / kind)
    assert str(render_card(V010 / kind, manifest)) == (V010 / kind / "README.md").read_text(encoding="utf-8")


def test_the_manifest_is_written_anew_with_numbers_as_numbers(tmp_path):
    folder = shutil.copytree(V010 / "module", tmp_path / "module")
    manifest = json.loads((folder / "sgm_export.json").read_text())
    manifest["files"] = {
        name: digest for name, digest in manifest["files"].items() if (folder / name).is_file()
    }  # the weights are not kept
    del manifest["modeling_sgm_sha256"]  # 0.1.0's modeling_sgm.py is not this one's: refresh would rightly refuse
    (folder / "sgm_export.json").write_text(json.dumps(manifest))
    refresh_card(folder, hub_repo_id="acme/tiny")
    written = json.loads((folder / "sgm_export.json").read_text())
    block = written["glasses"]
    assert (block["threshold"], block["top_k"], block["strength"], block["shift"], block["data"]) == (0.5, 40, 1.5, True, ["data.jsonl"])
    assert (
        written["hub_repo_id"] == "acme/tiny" and ExportManifest.from_json(written).glasses == read_export_manifest(V010 / "module").glasses
    )
    assert "acme/tiny" in (folder / "README.md").read_text()


def test_a_bad_setting_in_a_file_is_one_line_naming_the_file():
    with pytest.raises(CheckpointError, match="glasses.safetensors: amplify: Input should be greater than or equal to 1"):
        GlassesMetadata.from_strings({"mode": "aura", "amplify": "0.5"}, "glasses.safetensors")
    with pytest.raises(CheckpointError, match="top_k"):
        GlassesMetadata.from_strings({"mode": "aura", "top_k": "many"}, "glasses.safetensors")


def test_a_report_header_reads_what_eval_writes_and_hand_written_reports():
    from sgm_export.artifacts import ReportHeader

    written = {
        "sgm_export_version": "0.1.0",
        "judge": {"name": "profanity-check", "threshold": 0.5},
        "settings": {"prompts": "builtin:rtp-toxic:heldout", "samples": 2},
        "n_prompts": 16,
        "n_image_prompts": 0,
        "sections": ["base", "glasses"],
        "base": {"harmful_rate": 0.3},
    }
    head = ReportHeader.from_json(written)
    assert head.n_prompts == 16 and head.judge["threshold"] == 0.5 and head.settings["samples"] == 2
    assert ReportHeader.from_json({"judge": "my judge", "base": {}}).judge == "my judge"  # by hand: a name only
    assert ReportHeader.from_json({}).n_prompts is None  # headline figures only: nothing to say
    with pytest.raises(CheckpointError, match="report.json: n_prompts"):
        ReportHeader.from_json({"n_prompts": "many"})
