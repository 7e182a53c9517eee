"""The stages as Python functions: what the commands do, without argparse, printing or exit codes.

`import sgm_export` exposes these (and the artifact types) lazily; see docs/api.md. Every
function checks its input first and raises an `SgmError` subclass with the problem and the fix,
as the command line does; outputs are written atomically.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sgm_export.options import EvalOptions, GlassesOptions, OnnxOptions, ScoreOptions

if TYPE_CHECKING:
    from huggingface_hub import CommitInfo

    from sgm_export.glasses import Glasses
    from sgm_export.score.files import Scores
    from sgm_export.verify import VerifyResult


def score(
    model: str,
    data: Sequence[str],
    out: Path | None = None,
    options: ScoreOptions | None = None,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    force: bool = False,
) -> "Scores":
    """Score every MLP neuron of MODEL (a Hub id or a folder) on labelled DATA sources (files or
    `builtin:` names, as `--data` takes them); written to `out` when given."""
    from sgm_export.data.sources import read_sources
    from sgm_export.models.preflight import check_max_length, check_model
    from sgm_export.outputs import check_outside_inputs, check_target_free

    options = options or ScoreOptions()
    if out is not None:
        check_target_free(Path(out), force)
    examples = read_sources(list(data), options.limit)
    checked = check_model(model, allow_pickle, trust_remote_code)
    check_max_length(checked, options.max_length)
    if out is not None:
        check_outside_inputs(Path(out), [checked.source.path, *map(Path, data)])

    from sgm_export.models.load import load_model
    from sgm_export.score.files import save_scores
    from sgm_export.score.runner import score_examples

    loaded = load_model(checked, options.device, options.dtype, allow_pickle, trust_remote_code, options.device_map)
    scores = score_examples(loaded, examples, options, sources=list(data))
    if out is not None:
        save_scores(scores, Path(out), force=force)
    return scores


def compute_glasses(
    scores: "Scores | Path | str", options: GlassesOptions | None = None, out: Path | None = None, force: bool = False
) -> "Glasses":
    """The glasses (a scale per neuron) from scores (or the folder `score` wrote); written to
    `out` when given."""
    from sgm_export.glasses import compute_glasses as compute
    from sgm_export.glasses import save_glasses
    from sgm_export.score.files import Scores, load_scores

    glasses = compute(scores if isinstance(scores, Scores) else load_scores(Path(scores)), options or GlassesOptions())
    if out is not None:
        save_glasses(glasses, Path(out), force=force)
    return glasses


def export(model: str, glasses: "Glasses | Path | str", out: Path, format: str = "module", force: bool = False) -> Path:
    """Write MODEL with the glasses as a `module` or `folded` checkpoint at `out`."""
    from sgm_export.export import export_checkpoint

    return export_checkpoint(model, _glasses(glasses), Path(out), format=format, force=force)


def export_onnx(
    model: str, out: Path, glasses: "Glasses | Path | str | None" = None, options: OnnxOptions | None = None, force: bool = False
) -> Path:
    """Write the ONNX folder of MODEL (a base model with `glasses`, or a module/folded export)."""
    from sgm_export.export.onnx import export_onnx as write

    return write(model, Path(out), None if glasses is None else _glasses(glasses), options, force=force)


def verify(export_dir: Path, base_model: str, device: str = "cpu") -> "VerifyResult":
    """Check an export's files and its logits against the base model with hook-applied glasses;
    `result.passed` says whether it holds."""
    from sgm_export.verify import verify_export

    return verify_export(Path(export_dir), base_model, device=device)


def evaluate(
    model: str,
    glasses: "Glasses | Path | str",
    out: Path,
    options: EvalOptions | None = None,
    scores: "Scores | None" = None,
    force: bool = False,
) -> dict:
    """Harmful rate and fluency of MODEL before and after the glasses (applied by hooks); the
    report is written to `out` (report.json, report.md, plots) and returned as report.json holds it."""
    from sgm_export.arch import decoder_widths
    from sgm_export.evaluate.report import build_report, write_report
    from sgm_export.evaluate.runner import evaluate_variants
    from sgm_export.evaluate.setup import comparison_variants, header, load_inputs
    from sgm_export.models.load import load_model
    from sgm_export.models.preflight import check_model
    from sgm_export.outputs import check_target_free

    options = options or EvalOptions()
    check_target_free(Path(out), force)
    checked = check_model(model)
    glasses = _glasses(glasses)
    inputs = load_inputs(options)
    base = load_model(checked, options.device, options.dtype, device_map=options.device_map)
    glasses.check_fits(decoder_widths(base.model, base.family), model)
    results = evaluate_variants(
        comparison_variants(base, None, glasses, options.preprompt), inputs.prompt_sets, inputs.neutral, inputs.judges, options
    )
    report = build_report(results, header(model, model, inputs, options, glasses))
    write_report(Path(out), report, results, glasses, scores, force=force)
    return report


def push(folder: Path, repo_id: str, private: bool = False, revision: str | None = None) -> "CommitInfo":
    """Check an export folder (manifest, card, glasses) and upload it to the Hub in one commit."""
    from sgm_export.publish.hub import push_folder

    return push_folder(Path(folder), repo_id, private=private, revision=revision, say=lambda _: None)


def _glasses(glasses: "Glasses | Path | str") -> "Glasses":
    from sgm_export.glasses import Glasses, load_glasses

    return glasses if isinstance(glasses, Glasses) else load_glasses(Path(glasses))
