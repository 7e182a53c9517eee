"""The command line end to end on a tiny model: score, glasses, export, verify, run."""

import json
import subprocess
import sys

import torch
from safetensors.torch import load_file

from sgm_export.glasses import save_glasses
from tests.cli_helpers import assert_clean_usage_error, cli_env, sgm


def test_stages_one_by_one(tiny_llama, labelled_jsonl, tmp_path):
    scores = tmp_path / "scores"
    result = sgm("score", tiny_llama, "--data", labelled_jsonl, "--out", scores, "--pool", "max", "--batch-size", "3")
    assert result.code == 0, result.stderr
    summary = json.loads((scores / "scores.json").read_text())
    assert summary["n_layers"] == 2 and summary["metadata"]["pool"] == "max"

    glasses = tmp_path / "g.safetensors"
    result = sgm("glasses", scores, "--out", glasses, "--mode", "det0", "--top-k", "10")
    assert result.code == 0, result.stderr
    scales = torch.cat(list(load_file(glasses).values()))
    assert int((scales == 0).sum()) == 10 and int((scales == 1).sum()) == scales.numel() - 10

    for fmt in ("module", "folded"):
        out = tmp_path / fmt
        result = sgm("export", tiny_llama, "--glasses", glasses, "--out", out, "--format", fmt)
        assert result.code == 0, result.stderr
        result = sgm("verify", out, "--base", tiny_llama)
        assert result.code == 0 and "PASS" in result.stdout, result.stdout + result.stderr

    result = sgm("export", tiny_llama, "--glasses", glasses, "--out", tmp_path / "module")
    assert_clean_usage_error(result, "already exists", "--force")


def test_module_export_imports_no_torch(tiny_llama, tiny_glasses, tmp_path):
    """A module export only copies files and writes the scales; importing torch would take longer
    than that (benchmarks/export.py), so the command never does."""
    glasses = save_glasses(tiny_glasses, tmp_path / "g.safetensors")
    script = "import sys; from sgm_export.cli import main; code = main(sys.argv[1:]); assert 'torch' not in sys.modules; sys.exit(code)"
    command = [sys.executable, "-c", script, "export", str(tiny_llama), "--glasses", str(glasses), "--out", str(tmp_path / "out")]
    done = subprocess.run(command, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "sgm_glasses.safetensors").is_file()


def test_verify_exits_1_on_mismatch(tiny_llama, tiny_models, labelled_jsonl, tmp_path):
    sgm("score", tiny_llama, "--data", labelled_jsonl, "--out", tmp_path / "s")
    sgm("glasses", tmp_path / "s", "--out", tmp_path / "g.safetensors")
    sgm("export", tiny_llama, "--glasses", tmp_path / "g.safetensors", "--out", tmp_path / "m")
    result = sgm("verify", tmp_path / "m", "--base", tiny_models["mistral"])  # another model, same shapes
    assert result.code == 1 and "FAIL" in result.stdout


def test_run_with_overrides(tiny_llama, labelled_jsonl, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: {tiny_llama}\ndata: [{labelled_jsonl}]\nglasses:\n  mode: damp\n", encoding="utf-8")
    out = tmp_path / "out"
    result = sgm("run", recipe, "--out", out, "--set", "export.formats=[module,folded]", env={"SGM_GLASSES__ALPHA": "0.25"})
    assert result.code == 0, result.stderr
    assert "verify module: passed" in result.stdout and "verify folded: passed" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "glasses.safetensors",
        "model",
        "model-folded",
        "recipe.yaml",
        "scores",
        "summary.json",
    ]
    scales = torch.cat(list(load_file(out / "glasses.safetensors").values()))
    assert set(scales.unique().tolist()) <= {0.25, 1.0}
    assert "alpha: 0.25" in (out / "recipe.yaml").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.jsonl", "out", "r.yaml"]  # no temporaries left


def test_usage_errors_are_one_line(tmp_path):
    assert_clean_usage_error(sgm("score", "demo"), "required", "--data")
    assert_clean_usage_error(sgm("glasses", tmp_path, "--out", tmp_path / "g", "--mode", "soft"), "invalid choice")
    assert_clean_usage_error(sgm("glasses", tmp_path, "--out", tmp_path / "g", "--strength", "-1"), "--strength")
