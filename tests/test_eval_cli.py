"""`sgm-export eval`, `sweep` and `run` with an eval section: the report files exist, parse and
agree with each other; the plots are valid PNGs; bad input is one line."""

import json
import math

import pytest
from PIL import Image

from tests.cli_helpers import assert_clean_usage_error, sgm
from tests.conftest import write_jsonl

SMALL = ["--limit", "4", "--samples", "2", "--max-new-tokens", "5", "--neutral-limit", "3", "--batch-size", "8"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def scored(tiny_models, tmp_path_factory):
    """Scores and glasses of the tiny llama, and a module export carrying them."""
    folder = tmp_path_factory.mktemp("scored")
    model = tiny_models["llama"]
    assert (
        sgm("score", model, "--data", "builtin:rtp-toxic", "--data", "builtin:neutral", "--limit", "20", "--out", folder / "scores").code
        == 0
    )
    assert sgm("glasses", folder / "scores", "--out", folder / "glasses.safetensors", "--threshold", "0.55").code == 0
    assert sgm("export", model, "--glasses", folder / "glasses.safetensors", "--out", folder / "export").code == 0
    return {"model": model, "scores": folder / "scores", "glasses": folder / "glasses.safetensors", "export": folder / "export"}


def assert_valid_png(path):
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as image:
        image.verify()
        assert image.size[0] > 100 and image.size[1] > 100


def test_eval_with_hooked_glasses_and_preprompt_writes_a_complete_report(scored, tmp_path):
    out = tmp_path / "eval"
    result = sgm(
        "eval",
        scored["model"],
        "--glasses",
        scored["glasses"],
        "--scores",
        scored["scores"],
        "--out",
        out,
        "--preprompt",
        "Be kind.",
        *SMALL,
    )
    assert result.code == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["sections"] == ["base", "glasses", "preprompt", "glasses+preprompt"]
    assert report["judge"] == {"name": "profanity-check", "threshold": 0.5}
    assert (
        report["settings"]["samples"] == 2 and report["n_prompts"] == 4 and report["glasses_settings"]["threshold"] == 0.55
    )  # numbers as numbers (issue 13)
    for name in report["sections"]:
        section = report[name]
        assert {"harmful_rate", "perplexity", "n_prompts", "kl_from_base", "perplexity_generations_base"} <= set(section)
        assert section["n_prompts"] == 4 and section["n_continuations"] == 8
        assert set(section["standard"]) >= {"overall", "per_category", "by_modality"} and "adversarial" in section
    assert report["base"]["kl_from_base"] == pytest.approx(0.0, abs=1e-6)
    assert report["preprompt"]["preprompt"] == "Be kind." and report["base"]["preprompt"] is None
    rows = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert len(rows) == 4 * 2 * 2 * 4  # variants x prompt sets x prompts x samples
    harmful = [row["score"] >= 0.5 for row in rows if row["variant"] == "glasses" and row["set"] == "standard"]
    assert report["glasses"]["harmful_rate"] == pytest.approx(sum(harmful) / len(harmful))
    markdown = (out / "report.md").read_text()
    assert "| glasses+preprompt |" in markdown and "profanity-check" in markdown
    for name in report["sections"][1:]:  # each row shows its paired difference from the base model, with the interval
        row = next(line for line in markdown.splitlines() if line.startswith(f"| {name} |"))
        for prompt_set in ("standard", "adversarial"):
            paired = report[name][prompt_set]["vs_base"]
            low, high = paired["ci95"]
            assert f"| {100 * paired['difference']:+.1f} pp [{100 * low:+.1f}, {100 * high:+.1f}] |" in row
            noise = f"On the {prompt_set} prompts, `{name}` is within noise of the base model"
            assert (noise in markdown) == (low <= 0 <= high)
    for name in ("harmful_per_category.png", "harmful_per_category_adversarial.png", "auroc.png", "experts_per_layer.png"):
        assert_valid_png(out / name)
    assert not (out / "harmful_by_modality.png").exists()  # text prompts only: no modality plot


def test_eval_of_an_export_equals_eval_of_hooked_glasses(scored, tmp_path):
    """The module export and the base model with hooked glasses sample the very same continuations."""
    flags = [*SMALL, "--no-adversarial"]
    exported = sgm("eval", scored["export"], "--base", scored["model"], "--out", tmp_path / "a", *flags)
    hooked = sgm("eval", scored["model"], "--glasses", scored["glasses"], "--out", tmp_path / "b", *flags)
    assert exported.code == 0 and hooked.code == 0, exported.stderr + hooked.stderr

    def texts(folder):
        return [row["continuation"] for row in map(json.loads, (folder / "generations.jsonl").read_text().splitlines())]

    assert texts(tmp_path / "a") == texts(tmp_path / "b")
    a, b = (json.loads((tmp_path / f / "report.json").read_text()) for f in "ab")
    assert a["glasses"]["perplexity"] == pytest.approx(b["glasses"]["perplexity"], rel=1e-9)


def test_eval_with_two_judges_and_two_neutral_sources_reports_each(scored, tmp_path):
    texts = ("The game takes place during the war.", "It rained.")
    extra = write_jsonl(tmp_path / "extra.jsonl", [{"text": text, "label": 0} for text in texts])
    out = tmp_path / "eval"
    flags = ["--judge", "profanity-check", "--judge", "hatesonar", "--neutral-extra", str(extra), "--no-adversarial"]
    result = sgm("eval", scored["model"], "--glasses", scored["glasses"], "--out", out, *SMALL, *flags)
    assert result.code == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["judge"]["name"] == "profanity-check" and [j["name"] for j in report["judges"]] == ["profanity-check", "hatesonar"]
    assert report["neutral_sources"] == {"builtin:neutral:heldout": 3, str(extra): 2} and report["n_neutral_texts"] == 5
    rows = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    for name in report["sections"]:
        section = report[name]
        assert section["standard"] == section["by_judge"]["profanity-check"]["standard"]
        for judge in ("profanity-check", "hatesonar"):
            harmful = [row["scores"][judge] >= 0.5 for row in rows if row["variant"] == name]
            overall = section["by_judge"][judge]["standard"]["overall"]
            assert overall["harmful_rate"] == pytest.approx(sum(harmful) / len(harmful)) and len(overall["harmful_rate_ci95"]) == 2
            assert len(section["by_judge"][judge]["standard"]["vs_base"]["ci95"]) == 2
        by_source = section["fluency_by_source"]
        n = sum(figures["n_tokens"] for figures in by_source.values())
        nll = sum(math.log(figures["perplexity"]) * figures["n_tokens"] for figures in by_source.values())
        assert set(by_source) == set(report["neutral_sources"]) and section["perplexity"] == pytest.approx(math.exp(nll / n))
    markdown = (out / "report.md").read_text()
    assert "## Judges side by side" in markdown and "| hatesonar: harmful |" in markdown and "## Fluency per neutral source" in markdown


@pytest.mark.parametrize(
    "extra, fragments",
    [
        ([], ["--base is missing"]),
        (["--glasses", "GLASSES", "--base", "MODEL"], ["--glasses and --base"]),
        (["--glasses", "GLASSES", "--judge", "nonsense"], ["unknown judge"]),
        (["--glasses", "GLASSES", "--prompts", "missing.jsonl"], ["missing.jsonl", "does not exist"]),
        (["--glasses", "GLASSES", "--samples", "0"], ["--samples"]),
        (["--glasses", "GLASSES", "--judge", "hatesonar", "--judge", "hatesonar"], ["--judge", "only once"]),
        (["--glasses", "GLASSES", "--neutral-extra", "builtin:neutral:heldout"], ["--neutral-extra repeats --neutral"]),
        (["--glasses", "GLASSES", "--prompts", "builtin:rtp-toxic:heldout-half"], ["no split 'heldout-half'", ":heldout-select"]),
    ],
)
def test_eval_bad_input_is_one_line(scored, tmp_path, extra, fragments):
    extra = [str(scored["glasses"]) if a == "GLASSES" else str(scored["model"]) if a == "MODEL" else a for a in extra]
    result = sgm("eval", scored["model"], "--out", tmp_path / "out", *SMALL, *extra)
    assert_clean_usage_error(result, *fragments)
    assert not (tmp_path / "out").exists()


def test_sweep_marks_the_pareto_front(scored, tmp_path):
    out = tmp_path / "sweep"
    settings = ["--setting", "mode=det0,top_k=5", "--setting", "mode=aura,strength=2", "--setting", "mode=damp,alpha=0.9"]
    judges = ["--judge", "profanity-check", "hatesonar", "--prompts", "builtin:rtp-toxic:heldout-select"]
    result = sgm("sweep", scored["model"], "--scores", scored["scores"], "--out", out, *settings, *SMALL, *judges, "--no-adversarial")
    assert result.code == 0, result.stderr
    document = json.loads((out / "sweep.json").read_text())
    rows = document["rows"]
    assert document["settings"]["prompts"] == "builtin:rtp-toxic:heldout-select"
    for row in rows:
        assert set(row["judges"]) == {"profanity-check", "hatesonar"}
        assert row["judges"]["profanity-check"]["harmful_rate"] == row["harmful_rate"]
        hatesonar = document["sections"][row["name"]]["by_judge"]["hatesonar"]["standard"]["overall"]
        assert row["judges"]["hatesonar"]["harmful_rate"] == hatesonar["harmful_rate"]
    assert "hatesonar: harmful" in (out / "sweep.md").read_text()
    assert [row["name"] for row in rows] == ["base", "det0 top_k=5", "aura strength=2.0", "damp alpha=0.9"]
    assert rows[1]["n_experts"] == 5 and rows[0]["n_experts"] == 0
    for row in rows:
        beaten = any(
            o["harmful_rate"] <= row["harmful_rate"]
            and o["perplexity"] <= row["perplexity"]
            and o is not row
            and (o["harmful_rate"] < row["harmful_rate"] or o["perplexity"] < row["perplexity"])
            for o in rows
        )
        assert row["pareto"] == (not beaten)
    assert "| * |" in (out / "sweep.md").read_text()
    assert_valid_png(out / "tradeoff.png")


def test_sweep_rejects_a_bad_setting(scored, tmp_path):
    result = sgm("sweep", scored["model"], "--scores", scored["scores"], "--out", tmp_path / "s", "--setting", "mode=soft", *SMALL)
    assert_clean_usage_error(result, "mode=soft")


def test_run_with_an_eval_section_writes_the_report(tiny_llama, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"model: {tiny_llama}\nout: {tmp_path / 'run'}\nscore:\n  limit: 12\nexport:\n  formats: [module]\n"
        "eval:\n  limit: 3\n  samples: 1\n  max_new_tokens: 4\n  neutral_limit: 2\n  adversarial: false\n",
        encoding="utf-8",
    )
    result = sgm("run", recipe)
    assert result.code == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert set(summary["evaluation"]) == {"base", "glasses"} and summary["evaluation"]["base"]["n_prompts"] == 3
    report = json.loads((tmp_path / "run" / "eval" / "report.json").read_text())
    assert report["glasses"]["harmful_rate"] == summary["evaluation"]["glasses"]["harmful_rate"]
    assert_valid_png(tmp_path / "run" / "eval" / "auroc.png")
