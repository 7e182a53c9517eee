"""The model card and manifest of every export: metadata that round-trips through huggingface_hub,
numbers that match the glasses on disk, loading snippets that work, the evaluation report and the
ONNX section when present, and re-rendering that refuses a changed export."""

import hashlib
import json
import re

import pytest
import torch
from huggingface_hub import ModelCard
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from sgm_export.artifacts import read_export_manifest
from sgm_export.errors import CheckpointError
from sgm_export.export import export_checkpoint
from sgm_export.models.manifest import manifest_problems, read_manifest
from sgm_export.models.resolve import ModelSource
from sgm_export.publish.card import PLACEHOLDER_ID, render_card
from sgm_export.publish.checks import publish_problems
from sgm_export.publish.refresh import refresh_card


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)\n```", text, re.S)


@pytest.fixture
def module_export(licensed_llama, tiny_glasses, tmp_path):
    return export_checkpoint(str(licensed_llama), tiny_glasses, tmp_path / "module", format="module")


def test_card_metadata_round_trips_and_matches_the_glasses(module_export):
    path = module_export / "README.md"
    card = ModelCard.load(path)
    assert str(card) == path.read_text(encoding="utf-8")  # load + dump gives the file back, byte for byte
    metadata = card.data.to_dict()
    assert metadata["license"] == "other" and metadata["license_name"] == "tiny-license" and metadata["license_link"] == "LICENSE"
    assert metadata["tags"] == ["sgm-export", "safety", "detoxification"]
    assert metadata["library_name"] == "transformers" and metadata["pipeline_tag"] == "text-generation"
    assert "base_model" not in metadata and "base_model_relation" not in metadata  # a local folder has no Hub id
    block = metadata["sgm_export"]
    scales = load_file(module_export / "sgm_glasses.safetensors")
    assert block["glasses_sha256"] == sha256(module_export / "sgm_glasses.safetensors")
    assert block["experts"] == sum(int((scale < 1).sum()) for scale in scales.values()) > 0
    assert block["neurons"] == sum(scale.numel() for scale in scales.values())
    assert (block["format"], block["mode"], block["threshold"], block["strength"]) == ("module", "aura", 0.6, 1.5)
    text = card.text
    assert (
        f"{block['experts']} MLP neurons" in text
        and "| data | `data.jsonl`, `builtin:neutral` (4 toxic and 4 non-toxic examples) |" in text
    )
    assert "[`tiny-license`](LICENSE)" in text and (module_export / "LICENSE").is_file()


def test_card_names_the_hub_base_model(tiny_llama, tiny_glasses, tmp_path, monkeypatch):
    import sgm_export.export.source as source

    monkeypatch.setattr(source, "resolve_model", lambda name: ModelSource(tiny_llama, name, "acme/tiny-llama", "apache-2.0"))
    out = export_checkpoint("acme/tiny-llama", tiny_glasses, tmp_path / "folded", format="folded")
    metadata = ModelCard.load(out / "README.md").data.to_dict()
    assert metadata["base_model"] == "acme/tiny-llama" and metadata["base_model_relation"] == "finetune"
    assert metadata["license"] == "apache-2.0"  # no card in the folder: the license the source knows
    assert metadata["sgm_export"]["glasses_file"] == "glasses.safetensors"
    assert "[acme/tiny-llama](https://huggingface.co/acme/tiny-llama)" in ModelCard.load(out / "README.md").text


def test_card_says_what_the_multimodal_demo_is(tiny_llama, tiny_glasses, tmp_path, monkeypatch):
    import sgm_export.export.source as source

    monkeypatch.setattr(source, "resolve_model", lambda name: ModelSource(tiny_llama, name, None, "gemma"))
    out = export_checkpoint("demo-llava", tiny_glasses, tmp_path / "folded", format="folded")
    card = ModelCard.load(out / "README.md")
    assert "base_model" not in card.data.to_dict()  # assembled here: no Hub model to link as its base
    assert "random vision tower around [google/gemma-3-270m](https://huggingface.co/google/gemma-3-270m)" in card.text


def test_manifest_records_settings_sources_and_every_file(module_export):
    manifest = read_manifest(module_export)
    on_disk = sorted(p.relative_to(module_export).as_posix() for p in module_export.rglob("*") if p.is_file())
    assert sorted(manifest["files"]) == [name for name in on_disk if name != "sgm_export.json"]
    assert all(manifest["files"][name] == sha256(module_export / name) for name in manifest["files"])
    assert "README.md" in manifest["files"]
    assert (
        manifest["sgm_export_version"] and manifest["glasses"]["mode"] == "aura" and manifest["glasses"]["threshold"] == 0.6
    )  # numbers as numbers (issue 13)
    assert manifest["data_sources"] == ["data.jsonl", "builtin:neutral"]
    assert manifest["base_license"] == {"license": "other", "license_name": "tiny-license", "license_link": "LICENSE"}
    assert manifest_problems(module_export) == [] and publish_problems(module_export) == []


@pytest.mark.parametrize("fmt", ["module", "folded"])
def test_the_cards_loading_snippet_loads_the_export(licensed_llama, tiny_glasses, tmp_path, fmt):
    out = export_checkpoint(str(licensed_llama), tiny_glasses, tmp_path / fmt, format=fmt)
    text = (out / "README.md").read_text()
    usage = text.split("## How to use")[1].split("\n## ")[0]
    (snippet,) = code_blocks(usage, "python")
    scope: dict = {}
    exec(snippet.replace(PLACEHOLDER_ID, str(out)), scope)
    reference = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=fmt == "module")
    batch = AutoTokenizer.from_pretrained(licensed_llama)(["the garden in the morning"], return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(scope["model"](**batch).logits, reference(**batch).logits)
    assert scope["tokenizer"]("the garden in the morning")["input_ids"] == batch["input_ids"][0].tolist()


def test_the_recipe_is_embedded_verbatim_and_the_repo_named(licensed_llama, tiny_glasses, tmp_path):
    recipe = "model: tiny\ndata:\n- data.jsonl\nglasses:\n  mode: aura\n  threshold: 0.6\npush:\n  repo_id: acme/safe-tiny\n"
    out = export_checkpoint(str(licensed_llama), tiny_glasses, tmp_path / "m", recipe=recipe, hub_repo_id="acme/safe-tiny")
    text = (out / "README.md").read_text()
    assert code_blocks(text, "yaml") == [recipe.rstrip("\n")]
    assert 'from_pretrained("acme/safe-tiny", trust_remote_code=True)' in text and PLACEHOLDER_ID not in text
    assert read_manifest(out)["recipe"] == recipe


def test_without_a_recipe_the_card_gives_the_commands(module_export):
    (commands,) = code_blocks((module_export / "README.md").read_text(), "bash")
    assert "--data data.jsonl --data builtin:neutral --pool mean --max-length 64" in commands
    assert "--mode aura --threshold 0.6 --strength 1.5" in commands and "--format module" in commands


def write_report(folder, sections: dict) -> None:
    folder.mkdir()
    report = {**sections, "judge": "alt-profanity-check", "settings": {"max_new_tokens": 24}}
    (folder / "report.json").write_text(json.dumps(report), encoding="utf-8")
    (folder / "report.md").write_text("# report\n", encoding="utf-8")
    Image.new("RGB", (4, 3), (200, 30, 30)).save(folder / "harmful_rate.png")
    Image.new("RGB", (4, 3), (30, 30, 200)).save(folder / "perplexity.png")


def test_an_attached_report_renders_every_section_and_its_plots(module_export, tmp_path):
    sections = {
        "base": {"harmful_rate": 0.258, "perplexity": 91.0, "n_prompts": 60, "by_category": {"insult": 0.3}},
        "glasses": {"harmful_rate": 0.05, "perplexity": 95.0, "n_prompts": 60},
        "glasses_preprompt": {"harmful_rate": 0.0, "perplexity": 97.5, "n_prompts": 60, "refusal_rate": 0.125},
    }
    write_report(tmp_path / "eval-out", sections)
    refresh_card(module_export, report_dir=tmp_path / "eval-out")

    text = (module_export / "README.md").read_text()
    table = [line for line in text.split("## Evaluation")[1].splitlines() if line.startswith("| ")]
    assert table[0] == "| model | harmful rate | perplexity | prompts | refusal rate | harmful vs base | perplexity vs base |"
    assert table[1] == "| base | 25.8% | 91.00 | 60 |  |  |  |"
    assert table[2] == f"| glasses | 5.0% | 95.00 | 60 |  | {0.258 / 0.05:.1f}x less | {100 * (95 / 91 - 1):+.1f}% |"
    assert table[3] == f"| glasses_preprompt | 0.0% | 97.50 | 60 | 0.125 | none left | {100 * (97.5 / 91 - 1):+.1f}% |"
    assert "judged by `alt-profanity-check`" in text
    for plot in ("harmful_rate.png", "perplexity.png"):
        assert f"(eval/{plot})" in text
        assert (module_export / "eval" / plot).read_bytes() == (tmp_path / "eval-out" / plot).read_bytes()
    manifest = read_manifest(module_export)
    assert {"eval/report.json", "eval/report.md", "eval/harmful_rate.png"} <= set(manifest["files"])
    assert manifest["files"]["README.md"] == sha256(module_export / "README.md")
    assert publish_problems(module_export) == []

    write_report(tmp_path / "eval-again", {"base": {"harmful_rate": 0.3}, "glasses": {"harmful_rate": 0.1}})
    (tmp_path / "eval-again" / "perplexity.png").unlink()
    refresh_card(module_export, report_dir=tmp_path / "eval-again")  # a new report replaces the old one wholesale
    assert not (module_export / "eval" / "perplexity.png").exists() and publish_problems(module_export) == []
    assert "| glasses | 10.0% | 3.0x less |" in (module_export / "README.md").read_text()


def test_the_onnx_section_appears_with_an_onnx_folder(module_export):
    manifest = read_export_manifest(module_export)
    assert "### ONNX" not in render_card(module_export, manifest).text
    (module_export / "onnx").mkdir()
    (module_export / "onnx" / "sgm_onnx.json").write_text("{}", encoding="utf-8")
    assert publish_problems(module_export) == ["onnx/sgm_onnx.json is not recorded in sgm_export.json"]
    refresh_card(module_export)
    text = (module_export / "README.md").read_text()
    assert "### ONNX" in text and 'InferenceSession(f"{folder}/onnx/model.onnx")' in text and "trust_remote_code=True)\ninput_ids" in text
    assert "onnx/sgm_onnx.json" in read_manifest(module_export)["files"] and publish_problems(module_export) == []


def test_rendering_again_refuses_a_changed_export(module_export):
    card_before = (module_export / "README.md").read_bytes()
    weights = load_file(module_export / "model.sgm.safetensors")
    weights["model.layers.0.mlp.up_proj.weight"] *= 1.01
    from safetensors.torch import save_file

    save_file(weights, module_export / "model.sgm.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="model.sgm.safetensors differs"):
        refresh_card(module_export, hub_repo_id="acme/x")
    assert (module_export / "README.md").read_bytes() == card_before


def test_a_card_rendered_again_is_the_same_card(module_export):
    before = (module_export / "README.md").read_text()
    refresh_card(module_export)
    assert (module_export / "README.md").read_text() == before
    refresh_card(module_export, hub_repo_id="acme/renamed")
    assert 'from_pretrained("acme/renamed"' in (module_export / "README.md").read_text()
    assert publish_problems(module_export) == []
