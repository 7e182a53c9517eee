"""The public Python API: `import sgm_export` is quick and lazy, every public name resolves, and
the ten-line pipeline of docs/api.md runs as written (on a tiny model and a small data file)."""

import re
import subprocess
import sys
from pathlib import Path

import sgm_export

API_DOC = Path(__file__).parents[1] / "docs" / "api.md"


def test_import_is_lazy_and_every_public_name_resolves():
    probe = "import sys, sgm_export; print(sorted(m for m in ('torch', 'transformers', 'sgm_export.api') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    for name in sgm_export.__all__:
        assert getattr(sgm_export, name) is not None, name
    assert set(sgm_export.__all__) <= set(dir(sgm_export))


def test_a_stage_stays_callable_once_its_subpackage_is_imported():
    """`sgm_export.export` is the function and the subpackage `sgm_export/export/` alike."""
    import sgm_export.export.source  # noqa: F401 (binds sgm_export.export to the subpackage)
    import sgm_export.verify.result  # noqa: F401

    assert callable(sgm_export.export) and callable(sgm_export.verify)
    assert sgm_export.export.source.__name__ == "sgm_export.export.source"


def test_the_documented_pipeline_runs(tiny_llama, labelled_jsonl, tmp_path, monkeypatch):
    pipeline = re.findall(r"```python\n(.*?)\n```", API_DOC.read_text(encoding="utf-8"), re.S)[0]
    assert len(pipeline.splitlines()) <= 11  # ten lines and a blank one
    pipeline = pipeline.replace('"google/gemma-3-270m", ["builtin:rtp-toxic", "builtin:neutral"]', f'"{tiny_llama}", ["{labelled_jsonl}"]')
    pipeline = pipeline.replace("top_k=500", "top_k=20")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(pipeline, str(API_DOC), "exec"), namespace)
    assert namespace["result"].passed
    assert namespace["glasses"].metadata.n_experts == 20 and namespace["scores"].metadata.n_toxic == 4
    manifest = sgm_export.read_export_manifest(tmp_path / "out" / "model-onnx")
    assert manifest.exported_from == "module" and manifest.glasses.settings.top_k == 20  # the settings reach the ONNX folder
