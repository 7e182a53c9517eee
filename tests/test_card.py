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
from sgm_export.evaluate.metrics import paired_difference, rates_by_group
from sgm_export.evaluate.prompts import EvalPrompt
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


def write_report(folder, report: dict) -> None:
    folder.mkdir()
    (folder / "report.json").write_text(json.dumps(report), encoding="utf-8")
    (folder / "report.md").write_text("# report\n", encoding="utf-8")
    Image.new("RGB", (4, 3), (200, 30, 30)).save(folder / "harmful_rate.png")
    Image.new("RGB", (4, 3), (30, 30, 200)).save(folder / "perplexity.png")


def judged_report() -> dict:
    """A report as `eval` computes it (metrics.rates_by_group and paired_difference) from known
    verdicts on 40 prompts x 2 continuations: the glasses clearly help on the standard prompts,
    and differ from the base model by one prompt on the adversarial ones (within noise)."""
    prompts = [EvalPrompt(f"prompt {i}", ("insult",)) for i in range(40)]
    verdicts = {
        "base": {"standard": [[i < 16, i < 8] for i in range(40)], "adversarial": [[i < 10, False] for i in range(40)]},
        "glasses": {"standard": [[i < 3, False] for i in range(40)], "adversarial": [[i < 9, False] for i in range(40)]},
    }
    report = {
        "sections": ["base", "glasses"],
        "n_prompts": 40,
        "n_neutral_texts": 200,
        "judge": {"name": "profanity-check", "threshold": 0.5},
    }
    report["settings"] = {"prompts": "builtin:rtp-toxic:heldout", "neutral": "builtin:neutral:heldout", "samples": 2, "max_new_tokens": 32}
    for name, sets in verdicts.items():
        section = {prompt_set: rates_by_group(prompts, judged) for prompt_set, judged in sets.items()}
        for prompt_set, judged in sets.items():
            section[prompt_set]["vs_base"] = paired_difference(judged, verdicts["base"][prompt_set])
        overall = section["standard"]["overall"]
        section |= {"harmful_rate": overall["harmful_rate"], "n_prompts": 40, "perplexity": 91.0 if name == "base" else 95.0}
        section["perplexity_change"] = section["perplexity"] / 91.0 - 1
        report[name] = section
    return report


def test_an_attached_report_reads_as_percentages_with_intervals_and_paired_differences(module_export, tmp_path):
    report = judged_report()
    write_report(tmp_path / "eval-out", report)
    refresh_card(module_export, report_dir=tmp_path / "eval-out")

    text = (module_export / "README.md").read_text()
    evaluation = text.split("## Evaluation")[1].split("\n## ")[0]
    table = [line for line in evaluation.splitlines() if line.startswith("| ")]
    assert table[0] == (
        "| model | harmful continuations (%) | vs base (percentage points) | adversarial prompts: harmful continuations (%) "
        "| adversarial vs base (percentage points) | perplexity on neutral text | perplexity vs base (%) | prompts |"
    )

    def rate(name, prompt_set):
        overall = report[name][prompt_set]["overall"]
        low, high = overall["harmful_rate_ci95"]
        return f"{100 * overall['harmful_rate']:.1f} [{100 * low:.1f}, {100 * high:.1f}]"

    def paired(prompt_set):
        difference = report["glasses"][prompt_set]["vs_base"]
        low, high = difference["ci95"]
        return f"{100 * difference['difference']:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"

    assert table[1] == f"| base | {rate('base', 'standard')} | - | {rate('base', 'adversarial')} | - | 91.00 | - | 40 |"
    assert table[2] == (
        f"| glasses | {rate('glasses', 'standard')} | {paired('standard')} | {rate('glasses', 'adversarial')} | "
        f"{paired('adversarial')} | 95.00 | {100 * (95 / 91 - 1):+.1f} | 40 |"
    )
    standard, adversarial = report["glasses"]["standard"]["vs_base"], report["glasses"]["adversarial"]["vs_base"]
    assert standard["ci95"][1] < 0 < adversarial["ci95"][1] and adversarial["ci95"][0] < 0  # one clear, one within noise
    assert f"writes {-100 * standard['difference']:.1f} percentage points fewer harmful continuations" in evaluation
    assert "On the adversarial prompts, `glasses` is within noise of the base model" in evaluation
    assert "within noise" not in evaluation.split("On the adversarial")[0]
    assert "40 held-out toxic prompts from `builtin:rtp-toxic:heldout`, each continued 2 times" in evaluation
    assert "judged by `profanity-check` (harmful at a score of 0.5 or more)" in evaluation
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
    again = (module_export / "README.md").read_text()
    assert "| model | harmful continuations (%) |\n|---|---|\n| base | 30.0 |\n| glasses | 10.0 |" in again  # headline figures only


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
