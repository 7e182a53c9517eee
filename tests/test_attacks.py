"""A downloaded folder that looks like an sgm export must never run code the user did not trust.

Each attack plants `evil.py` in a module export (or a base model) and names it in the `auto_map`
of one config file that transformers reads, with the manifest left alone or rewritten to match
(as a careful attacker would). `evil.py` writes a marker file when it is imported: no command may
create it, and every command stops with one line naming the file and key, exit code 2.

The commands run in this process (`cli.main`), so that 64 of them take seconds: each is refused
before anything is loaded.
"""

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from sgm_export.cli import main
from sgm_export.export import export_checkpoint
from sgm_export.export.files import recorded_files
from sgm_export.score.files import save_scores
from tests.test_export import random_glasses, widths_of

EVIL_CODE = """
import pathlib

pathlib.Path({marker!r}).write_text("evil.py ran")

from transformers import LlamaForCausalLM, PretrainedConfig, PreTrainedTokenizerFast, ProcessorMixin


class EvilModel(LlamaForCausalLM):
    pass


class EvilTokenizer(PreTrainedTokenizerFast):
    pass


class EvilProcessor(ProcessorMixin):
    pass
"""

# Where the attacker names evil.py: the config file, and the auto_map entry it plants there.
PLANTS = {
    "config.json": ("AutoModelForCausalLM", "evil.EvilModel"),
    "tokenizer_config.json": ("AutoTokenizer", ["evil.EvilTokenizer", "evil.EvilTokenizer"]),
    "processor_config.json": ("AutoProcessor", "evil.EvilProcessor"),
    "preprocessor_config.json": ("AutoImageProcessor", "evil.EvilProcessor"),
}


@pytest.fixture(scope="module")
def clean_export(tiny_llama, tmp_path_factory) -> Path:
    return export_checkpoint(str(tiny_llama), random_glasses(widths_of(tiny_llama)), tmp_path_factory.mktemp("attacks") / "export")


@pytest.fixture(scope="module")
def scores_dir(tiny_glasses, tiny_llama, tmp_path_factory) -> Path:
    """A scores folder for `sweep` (which reads it before it opens the model)."""
    import torch

    from sgm_export.score.files import Scores

    widths = widths_of(tiny_llama)
    auroc = [torch.rand(width, generator=torch.Generator().manual_seed(layer)) for layer, width in enumerate(widths)]
    scores = Scores(auroc, [torch.zeros(w) for w in widths], [torch.zeros(w) for w in widths], {"model": str(tiny_llama), "pool": "mean"})
    return save_scores(scores, tmp_path_factory.mktemp("attack-scores") / "scores")


def plant(folder: Path, config_file: str, marker: Path, rewrite_manifest: bool) -> Path:
    """Add evil.py and name it in `config_file`'s auto_map; optionally make the manifest agree."""
    (folder / "evil.py").write_text(EVIL_CODE.format(marker=str(marker)))
    path = folder / config_file
    content = json.loads(path.read_text()) if path.is_file() else {}
    key, value = PLANTS[config_file]
    content.setdefault("auto_map", {})[key] = value
    path.write_text(json.dumps(content))
    manifest_path = folder / "sgm_export.json"
    if rewrite_manifest and manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        manifest["files"] = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in recorded_files(folder)}
        manifest_path.write_text(json.dumps(manifest))
    return folder


def command_line(command: str, folder: Path, base: Path, data: Path, scores: Path, out: Path) -> list[str]:
    """The command as a user would type it, opening `folder` as its model folder."""
    return {
        "score": ["score", folder, "--data", data, "--out", out],
        "export": ["export", folder, "--glasses", base / "glasses.safetensors", "--out", out],
        "onnx": ["onnx", folder, "--out", out],
        "eval": ["eval", folder, "--base", base, "--out", out, "--limit", "2", "--neutral-limit", "2"],
        "sweep": ["sweep", folder, "--scores", scores, "--out", out, "--limit", "2", "--neutral-limit", "2"],
        "verify": ["verify", folder, "--base", base],
        "card": ["card", folder],
        "push": ["push", folder, "acme/evil", "--dry-run"],
    }[command]


COMMANDS = ["score", "export", "onnx", "eval", "sweep", "verify", "card", "push"]


@pytest.mark.parametrize("rewrite_manifest", [False, True], ids=["manifest-as-is", "manifest-rewritten"])
@pytest.mark.parametrize("config_file", list(PLANTS))
@pytest.mark.parametrize("command", COMMANDS)
def test_a_planted_auto_map_never_runs(
    command, config_file, rewrite_manifest, clean_export, tiny_llama, labelled_jsonl, scores_dir, tmp_path, capsys
):
    marker = tmp_path / "evil-code-ran"
    if command == "export":  # export opens a base model: the attack is a base folder with a planted auto_map
        folder = shutil.copytree(tiny_llama, tmp_path / "base")
        glasses_base = tmp_path / "glasses-home"
        glasses_base.mkdir()
        from sgm_export.glasses import save_glasses

        save_glasses(random_glasses(widths_of(tiny_llama)), glasses_base / "glasses.safetensors")
        base = glasses_base
    else:
        folder = shutil.copytree(clean_export, tmp_path / "export")
        base = tiny_llama
    plant(folder, config_file, marker, rewrite_manifest)
    argv = [str(part) for part in command_line(command, folder, base, labelled_jsonl, scores_dir, tmp_path / "out")]
    capsys.readouterr()  # what building the folders printed
    code = main(argv)
    err = capsys.readouterr().err
    assert not marker.exists(), f"{command} ran evil.py"
    assert code == 2, (code, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and config_file in lines[0] and "auto_map" in lines[0] and PLANTS[config_file][0] in lines[0], err
    assert not (tmp_path / "out").exists()
