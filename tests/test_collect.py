"""`sgm-export collect`: the model's own continuations of toxic prompts, labelled by a judge."""

import json

import pytest

from tests.cli_helpers import assert_clean_usage_error, sgm
from tests.conftest import write_jsonl

# Deterministic judge: the score depends only on the text, so the test can recompute every label.
JUDGE = """
def by_length(texts):
    return [(1.0, 0.0, 0.3)[len(t) % 3] for t in texts]

def never_toxic(texts):
    return [0.0 for t in texts]
"""
PROMPTS = [{"text": f"prompt number {i} says that", "label": 1} for i in range(6)]


def _setup(tmp_path):
    (tmp_path / "judges_for_collect.py").write_text(JUDGE, encoding="utf-8")
    data = write_jsonl(tmp_path / "prompts.jsonl", PROMPTS)
    return data, {"SGM_EXPORT_CACHE": str(tmp_path / "cache")}


def _expected_label(text: str) -> int | None:
    return {0: 1, 1: 0, 2: None}[len(text) % 3]


def test_collect_labels_continuations_by_the_judge_and_reuses_the_cache(tmp_path, tiny_llama):
    data, env = _setup(tmp_path)
    args = ["collect", tiny_llama, "--data", data, "--judge", "judges_for_collect:by_length", "--samples", "3", "--max-new-tokens", "6"]
    first = sgm(*args, "--out", tmp_path / "c1", cwd=tmp_path, env=env)
    assert first.code == 0, first.stderr
    rows = [json.loads(line) for line in (tmp_path / "c1" / "continuations.jsonl").read_text().splitlines()]
    summary = json.loads((tmp_path / "c1" / "collect.json").read_text())
    continuations = [row for row in rows if row["source"] == "continuation"]
    clean_prompts = [row for row in rows if row["source"] == "prompt"]
    assert continuations, rows
    for row in continuations:
        assert row["prompt"] in {p["text"] for p in PROMPTS}
        assert row["label"] == _expected_label(row["text"])  # ambiguous ones (score 0.3) are dropped
    assert {row["text"] for row in clean_prompts} == {p["text"] for p in PROMPTS if _expected_label(p["text"]) == 0}
    assert summary["n_continuations"] == 18
    assert summary["rows"]["toxic"] == sum(row["label"] == 1 for row in rows)
    assert summary["dropped_ambiguous"] == 18 - len(continuations)

    second = sgm(*args, "--out", tmp_path / "c2", cwd=tmp_path, env=env)
    assert second.code == 0 and "reused from the cache" in second.stdout, second.stdout + second.stderr
    assert (tmp_path / "c2" / "continuations.jsonl").read_bytes() == (tmp_path / "c1" / "continuations.jsonl").read_bytes()

    scored = sgm("score", tiny_llama, "--data", tmp_path / "c1" / "continuations.jsonl", "--out", tmp_path / "scores", env=env)
    assert scored.code == 0, scored.stderr


def test_collect_refuses_a_judge_that_finds_no_toxic_continuation(tmp_path, tiny_llama):
    data, env = _setup(tmp_path)
    result = sgm(
        "collect",
        tiny_llama,
        "--data",
        data,
        "--judge",
        "judges_for_collect:never_toxic",
        "--samples",
        "2",
        "--max-new-tokens",
        "4",
        "--out",
        tmp_path / "out",
        cwd=tmp_path,
        env=env,
    )
    assert_clean_usage_error(result, "rated none of the 12 continuations toxic")
    assert not (tmp_path / "out").exists()
    assert not list((tmp_path / "cache").glob("collect/*"))


def test_collect_refuses_thresholds_that_overlap(tmp_path, tiny_llama):
    data, env = _setup(tmp_path)
    result = sgm("collect", tiny_llama, "--data", data, "--toxic-at", "0.3", "--clean-at", "0.4", "--out", tmp_path / "out", env=env)
    assert_clean_usage_error(result, "clean_at (0.4) must be below toxic_at (0.3)")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("with_data", [True, False])
def test_run_recipe_with_a_collect_section_scores_on_the_continuations(tmp_path, tiny_llama, labelled_jsonl, with_data):
    data, env = _setup(tmp_path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"model: {tiny_llama}\ndata: [{labelled_jsonl if with_data else ''}]\nout: {tmp_path / 'run'}\n"
        f"collect:\n  prompts: [{data}]\n  judge: judges_for_collect:by_length\n  samples: 3\n  max_new_tokens: 6\n",
        encoding="utf-8",
    )
    result = sgm("run", recipe, cwd=tmp_path, env=env)
    assert result.code == 0, result.stderr
    rows = (tmp_path / "run" / "collect" / "continuations.jsonl").read_text().splitlines()
    scores_summary = json.loads((tmp_path / "run" / "scores" / "scores.json").read_text())
    n_labelled = len((labelled_jsonl).read_text().splitlines()) if with_data else 0
    metadata = scores_summary["metadata"]
    assert metadata["n_toxic"] + metadata["n_neutral"] == n_labelled + len(rows)
    assert metadata["data"][-1].endswith("collect/continuations.jsonl")


def test_collect_continues_image_prompts_of_a_vision_language_model(tmp_path):
    from sgm_export.data.images import neutral_image_paths
    from tests.tiny_vlm import build_tiny_vlm

    base = build_tiny_vlm("llava", tmp_path / "llava")
    photo = neutral_image_paths()[0]
    (tmp_path / "judges_for_collect.py").write_text(JUDGE, encoding="utf-8")
    rows = [{"text": f"about this picture, number {i} says", "label": 1, "image": str(photo)} for i in range(4)]
    data = write_jsonl(tmp_path / "prompts.jsonl", rows)
    env = {"SGM_EXPORT_CACHE": str(tmp_path / "cache")}
    args = ["--judge", "judges_for_collect:by_length", "--samples", "2", "--max-new-tokens", "5", "--no-clean-prompts"]
    result = sgm("collect", base, "--data", data, *args, "--out", tmp_path / "c", cwd=tmp_path, env=env)
    assert result.code == 0, result.stderr
    collected = [json.loads(line) for line in (tmp_path / "c" / "continuations.jsonl").read_text().splitlines()]
    assert collected and all(row["image"] == str(photo.resolve()) for row in collected)
    scored = sgm("score", base, "--data", tmp_path / "c" / "continuations.jsonl", "--out", tmp_path / "s", env=env)
    assert scored.code == 0, scored.stderr
