"""The model card (README.md) that every export carries.

It is built with huggingface_hub's `ModelCard`/`ModelCardData`, so the Hub reads its metadata:
the base model and how this one relates to it (`finetune`: same architecture, edited weights),
the license carried over from the base model's card, tags, the library and the pipeline. The
body says what was changed, how to load the checkpoint, shows the evaluation when a report is
attached, and embeds the recipe of a `run` verbatim so that the export can be reproduced.

The card is rendered from the export folder alone (the fields of its sgm_export.json, and the
`eval/` and `onnx/` folders when present), so rendering it again after a report or an ONNX graph
is added gives the same card plus the new sections. Its metadata also holds an `sgm_export` block
(format, glasses file and SHA-256, expert count) that `push` checks against the glasses in the
folder before anything leaves the machine.
"""

from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import ModelCard, ModelCardData
from huggingface_hub.repocard import metadata_load

from sgm_export import __version__
from sgm_export.artifacts import ExportManifest
from sgm_export.hashing import sha256_file
from sgm_export.layout import CARD_FILE, ONNX_DIR
from sgm_export.models.demo import DEMO_NAME
from sgm_export.models.demo_llava import DEMO_LLAVA_NAME
from sgm_export.options import MODES
from sgm_export.outputs import atomic_file
from sgm_export.publish.evaluation import evaluation_markdown

TAGS = ["sgm-export", "safety", "detoxification"]
BASE_MODEL_RELATION = "finetune"
LIBRARY = "transformers"
ONNX_LIBRARY = "transformers.js"  # the Hub shows the transformers.js snippet for an onnx/ folder in this layout
ONNX_TAGS = ["onnx", "transformers.js"]
PIPELINE_TAGS = {"AutoModelForCausalLM": "text-generation", "AutoModelForImageTextToText": "image-text-to-text"}
LICENSE_KEYS = ("license", "license_name", "license_link")
CARD_BLOCK = "sgm_export"
PLACEHOLDER_ID = "path/to/this/model"
SGM_PAPER = "https://arxiv.org/abs/2512.15052"
AURA_PAPER = "https://arxiv.org/abs/2407.12824"
SHIFT = "towards the non-toxic mean"
RANKS = {
    "auroc": "neurons with AUROC > {threshold} on the scoring data",
    "vocab": "neurons whose output promotes toxic words (read through the unembedding) and that fire more on toxic text",
    "combined": "neurons with AUROC > {threshold}, ranked by how strongly their output promotes toxic words",
}


def base_license(model_dir: Path, known: str | None) -> dict[str, str]:
    """The base model's license fields (license, license_name, license_link) from the front matter
    of its README.md; `known` (the demo's) when the folder has no card that names one."""
    card = Path(model_dir) / CARD_FILE
    try:
        metadata = (metadata_load(card) or {}) if card.is_file() else {}
    except (ValueError, yaml.YAMLError):  # a broken base card: the license is unknown, and the card says so
        metadata = {}
    fields = {key: str(metadata[key]) for key in LICENSE_KEYS if metadata.get(key)}
    if "license" not in fields and known:
        fields = {"license": known}
    return fields


def card_metadata(folder: Path, manifest: ExportManifest) -> ModelCardData:
    """The card's YAML front matter."""
    hub_id = manifest.base_model_hub_id
    license_fields = manifest.base_license
    return ModelCardData(
        base_model=hub_id,
        base_model_relation=BASE_MODEL_RELATION if hub_id else None,
        library_name=ONNX_LIBRARY if manifest.format == "onnx" else LIBRARY,
        pipeline_tag=manifest.pipeline_tag,
        tags=list(TAGS) + (ONNX_TAGS if manifest.format == "onnx" else []),
        **{key: license_fields[key] for key in LICENSE_KEYS if license_fields.get(key)},
        **{CARD_BLOCK: card_block(folder, manifest)},
    )


def card_block(folder: Path, manifest: ExportManifest) -> dict[str, Any]:
    """What `push` checks: the format, and the glasses this card describes (file, SHA-256, count)."""
    settings = glasses_settings(manifest)
    glasses_file = manifest.glasses_file
    block = {
        "version": manifest.sgm_export_version or __version__,
        "format": manifest.format,
        "glasses_file": glasses_file,
        "glasses_sha256": sha256_file(Path(folder) / glasses_file),
        "experts": sum(manifest.experts_per_layer),
        "neurons": sum(manifest.neurons_per_layer),
        **settings,
    }
    return {key: value for key, value in block.items() if value is not None}


def glasses_settings(manifest: ExportManifest) -> dict[str, Any]:
    """The settings the card shows (alpha and strength only where the mode uses them); all None
    for glasses that sgm-export did not compute."""
    settings, glasses = manifest.glasses.settings, manifest.glasses
    if settings is None:
        return dict.fromkeys(("mode", "threshold", "top_k", "alpha", "strength", "guard", "shift", "amplify")) | {
            "rank": "auroc",
            "n_guarded": glasses.n_guarded,
        }
    return {
        "mode": settings.mode,
        "threshold": settings.threshold,
        "top_k": settings.top_k,
        "alpha": settings.alpha if settings.mode == "damp" else None,
        "strength": settings.strength if settings.mode == "aura" else None,
        "rank": settings.rank,
        "guard": settings.guard,
        "n_guarded": glasses.n_guarded,
        "shift": SHIFT if settings.shift else None,
        "amplify": settings.amplify,
    }


def render_card(folder: Path, manifest: ExportManifest) -> ModelCard:
    """The whole card for the export in `folder`, described by its manifest fields."""
    sections = [
        _title(manifest),
        _summary(manifest),
        _changes(manifest),
        _usage(folder, manifest),
        evaluation_markdown(folder),
        _reproduce(manifest),
        _integrity(manifest),
        _license(manifest),
    ]
    body = "\n\n".join(section for section in sections if section) + "\n"
    return ModelCard(f"---\n{card_metadata(folder, manifest).to_yaml()}\n---\n\n{body}")


def write_card(folder: Path, manifest: ExportManifest) -> Path:
    """Write README.md into `folder` (atomically: it may replace the card of a published export)."""
    path = Path(folder) / CARD_FILE
    with atomic_file(path, force=True) as staging:
        render_card(folder, manifest).save(staging)
    return path


def load_card(folder: Path) -> ModelCard | None:
    """The folder's card, or None when it has none. Always read from disk, never from the Hub."""
    path = Path(folder) / CARD_FILE
    return ModelCard.load(path) if path.is_file() else None


def _title(manifest: ExportManifest) -> str:
    return f"# {_base_short_name(manifest)} with SGM safety glasses"


def _summary(manifest: ExportManifest) -> str:
    experts, neurons = sum(manifest.experts_per_layer), sum(manifest.neurons_per_layer)
    layers = sum(1 for count in manifest.experts_per_layer if count)
    return (
        f"This is {_base_link(manifest)} with **safety glasses** baked in by sgm-export: "
        f"the {experts:,} MLP neurons of its decoder (of {neurons:,}, in {layers} of {len(manifest.experts_per_layer)} layers) "
        f"{_chosen_by(manifest)} are each scaled down by a fixed factor, following SGM "
        f"([arXiv 2512.15052]({SGM_PAPER})) and AurA ([Suau et al., ICML 2024]({AURA_PAPER})). "
        "Nothing was trained and every other weight is the base model's."
    )


def _chosen_by(manifest: ExportManifest) -> str:
    """How the summary names the experts: by what chose them."""
    if glasses_settings(manifest)["rank"] == "auroc":
        return "that best tell toxic from non-toxic text"
    return "that write toxic words where the text is toxic"


def _changes(manifest: ExportManifest) -> str:
    settings = glasses_settings(manifest)
    provenance = manifest.glasses.provenance
    rows = [
        ("base model", _base_link(manifest)),
        ("checkpoint format", _format_description(manifest)),
        ("mode", MODES.get(settings["mode"], str(settings["mode"]))),
        ("experts", RANKS.get(settings["rank"], str(settings["rank"])).format(threshold=settings["threshold"])),
        ("top-k", "all experts" if settings["top_k"] is None else f"only the {settings['top_k']:,} best experts"),
    ]
    if settings["guard"]:
        guarded = "" if settings["n_guarded"] is None else f" ({settings['n_guarded']:,} neurons)"
        rows.append(
            ("heavy-neuron guard", f"neurons above {settings['guard']}x the median magnitude on non-toxic text are never scaled{guarded}")
        )
    if settings["shift"]:
        rows.append(("shift", f"experts are pulled {settings['shift']} rather than towards 0"))
    if settings["amplify"]:
        rows.append(("amplification", f"anti-toxic neurons (AUROC < 0.5) amplified, at most {settings['amplify']}x"))
    if settings["strength"] is not None:
        rows.append(("strength", str(settings["strength"])))
    if settings["alpha"] is not None:
        rows.append(("alpha", str(settings["alpha"])))
    rows += [
        ("neurons scaled", f"{sum(manifest.experts_per_layer):,} of {sum(manifest.neurons_per_layer):,}"),
        ("pooling", f"{provenance.pool or 'unknown'} over the scored text tokens"),
        ("data", _data_description(manifest)),
        ("sgm-export", manifest.sgm_export_version or __version__),
    ]
    table = ["| | |", "|---|---|"] + [f"| {key} | {value} |" for key, value in rows]
    per_layer = ", ".join(str(count) for count in manifest.experts_per_layer)
    return "\n".join(["## What was changed", "", *table, "", f"Experts per layer, from layer 0: {per_layer}."])


def _format_description(manifest: ExportManifest) -> str:
    if manifest.format == "module":
        return (
            "module: the base weights byte for byte, the scales in `sgm_glasses.safetensors`, "
            "applied by `modeling_sgm.py` (torch and transformers only)"
        )
    if manifest.format == "folded":
        return "folded: the scales multiplied into each MLP output projection; `glasses.safetensors` documents the edit"
    if manifest.format == "onnx":
        return (
            f"ONNX ({manifest.dtype or 'float32'}): the base weights with each layer's scale as the initializer "
            "`sgm.layers.{i}.scale` feeding a `Mul` before the down projection; `glasses.safetensors` holds the same scales"
        )
    return manifest.format


def _data_description(manifest: ExportManifest) -> str:
    sources = manifest.data_sources
    provenance = manifest.glasses.provenance
    named = ", ".join(f"`{source}`" for source in sources) if sources else "not recorded"
    counts = [f"{count} {label}" for count, label in ((provenance.n_toxic, "toxic"), (provenance.n_neutral, "non-toxic")) if count]
    return named + (f" ({' and '.join(counts)} examples)" if counts else "")


def _usage(folder: Path, manifest: ExportManifest) -> str:
    model_id = manifest.hub_repo_id or PLACEHOLDER_ID
    multimodal = manifest.auto_class == "AutoModelForImageTextToText"
    auto_class = "AutoModelForImageTextToText" if multimodal else "AutoModelForCausalLM"
    preprocessor = "AutoProcessor" if multimodal else "AutoTokenizer"
    parts = ["## How to use"]
    if manifest.format == "module":
        parts += [
            "The glasses are applied by `modeling_sgm.py`, which ships in this repository and imports only torch and "
            "transformers. The checkpoint fails closed: without `trust_remote_code=True` transformers refuses to load it, "
            "so it never silently gives you the model without its glasses.",
            _python(
                f"from transformers import {auto_class}, {preprocessor}\n\n"
                f'model = {auto_class}.from_pretrained("{model_id}", trust_remote_code=True)\n'
                f'{preprocessor.removeprefix("Auto").lower()} = {preprocessor}.from_pretrained("{model_id}", trust_remote_code=True)'
            ),
        ]
    elif manifest.format == "folded":
        parts += [
            "A plain checkpoint of the base architecture: it loads anywhere the base model does (transformers, vLLM, "
            "llama.cpp converters), without remote code.",
            _python(
                f"from transformers import {auto_class}, {preprocessor}\n\n"
                f'model = {auto_class}.from_pretrained("{model_id}")\n'
                f'{preprocessor.removeprefix("Auto").lower()} = {preprocessor}.from_pretrained("{model_id}")'
            ),
        ]
    elif manifest.format == "onnx" and not multimodal:
        parts += [_transformers_js_usage(model_id), _genai_usage(model_id)]
    if (Path(folder) / ONNX_DIR).is_dir():
        parts.append(_onnx_usage(manifest, multimodal))
    return "\n\n".join(parts)


def _transformers_js_usage(model_id: str) -> str:
    return "\n\n".join(
        [
            "In [transformers.js](https://huggingface.co/docs/transformers.js) (Node or the browser), with its default options:",
            "```js\n"
            'import { pipeline } from "@huggingface/transformers";\n\n'
            f'const generator = await pipeline("text-generation", "{model_id}");\n'
            'const [out] = await generator("The weather today is", { max_new_tokens: 20, do_sample: false });\n'
            "console.log(out.generated_text);\n"
            "```",
        ]
    )


def _genai_usage(model_id: str) -> str:
    return "\n\n".join(
        [
            "In [ONNX Runtime GenAI](https://onnxruntime.ai/docs/genai/), through `genai_config.json` (a downloaded folder):",
            _python(
                "import numpy as np\n"
                "import onnxruntime_genai as og\n"
                "from transformers import AutoTokenizer\n\n"
                f'folder = "{model_id}"  # this repository, downloaded\n'
                "model, tokenizer = og.Model(folder), AutoTokenizer.from_pretrained(folder)\n"
                "params = og.GeneratorParams(model)\n"
                "params.set_search_options(max_length=64, do_sample=False)\n"
                "generator = og.Generator(model, params)\n"
                'generator.append_tokens(np.array([tokenizer("The weather today is")["input_ids"]], dtype=np.int32))\n'
                "while not generator.is_done():\n"
                "    generator.generate_next_token()\n"
                "print(tokenizer.decode(generator.get_sequence(0), skip_special_tokens=True))"
            ),
        ]
    )


def _onnx_usage(manifest: ExportManifest, multimodal: bool) -> str:
    intro = (
        f"`{ONNX_DIR}/` holds the same model as ONNX graphs (the layout transformers.js and onnx-community use). Each layer's "
        "scale is the initializer `sgm.layers.{i}.scale` feeding a `Mul` before the down projection, so the glasses can be "
        f"audited in the graph; `{ONNX_DIR}/sgm_onnx.json` describes the graphs, their inputs and outputs."
    )
    if multimodal:
        return "\n\n".join(["### ONNX", intro])
    hub_id = manifest.hub_repo_id
    folder = f'snapshot_download("{hub_id}")' if hub_id else f'"{PLACEHOLDER_ID}"  # this repository, downloaded'
    remote_code = ", trust_remote_code=True" if manifest.format == "module" else ""
    snippet = _python(
        "import numpy as np\n"
        "import onnxruntime as ort\n"
        + ("from huggingface_hub import snapshot_download\n" if hub_id else "")
        + "from transformers import AutoTokenizer\n\n"
        f"folder = {folder}\n"
        f'session = ort.InferenceSession(f"{{folder}}/{ONNX_DIR}/model.onnx")\n'
        f"tokenizer = AutoTokenizer.from_pretrained(folder{remote_code})\n"
        'input_ids = tokenizer("The weather today is", return_tensors="np")["input_ids"]\n'
        "feeds = {\n"
        '    "input_ids": input_ids,\n'
        '    "attention_mask": np.ones_like(input_ids),\n'
        '    "position_ids": np.arange(input_ids.shape[1])[None],\n'
        "}\n"
        "for graph_input in session.get_inputs():  # an empty cache: no tokens seen yet\n"
        '    if graph_input.name.startswith("past_key_values"):\n'
        "        _, heads, _, head_dim = graph_input.shape\n"
        '        dtype = np.float16 if "float16" in graph_input.type else np.float32\n'
        "        feeds[graph_input.name] = np.zeros((1, heads, 0, head_dim), dtype=dtype)\n"
        'logits = session.run(["logits"], feeds)[0]\n'
        "print(tokenizer.decode(logits[0, -1].argmax()))"
    )
    return "\n\n".join(["### ONNX", intro + " One forward pass with onnxruntime:", snippet])


def _reproduce(manifest: ExportManifest) -> str:
    recipe = manifest.recipe
    version = manifest.sgm_export_version or __version__
    if recipe:
        return "\n\n".join(
            [
                "## Reproduce",
                f"Made by `sgm-export run` (sgm-export {version}) with this recipe; save it as `recipe.yaml` and run "
                "`sgm-export run recipe.yaml` to make it again:",
                f"```yaml\n{recipe.rstrip()}\n```",
            ]
        )
    return "\n\n".join(["## Reproduce", f"Made with sgm-export {version}; these commands redo it:", _commands(manifest)])


def _commands(manifest: ExportManifest) -> str:
    provenance = manifest.glasses.provenance
    settings = glasses_settings(manifest)
    base = manifest.base_model_name or manifest.base_model
    score = [f"sgm-export score {base}"] + [f"--data {source}" for source in manifest.data_sources]
    score += [f"--pool {provenance.pool}"] if provenance.pool else []
    score += [f"--max-length {provenance.max_length}"] if provenance.max_length else []
    score += [f"--limit {provenance.limit}"] if provenance.limit else []
    glasses = [
        "sgm-export glasses scores",
        "--out glasses.safetensors",
        f"--mode {settings['mode']}",
        f"--threshold {settings['threshold']}",
    ]
    glasses += [f"--top-k {settings['top_k']}"] if settings["top_k"] is not None else []
    glasses += [f"--strength {settings['strength']}"] if settings["strength"] is not None else []
    glasses += [f"--alpha {settings['alpha']}"] if settings["alpha"] is not None else []
    if manifest.format == "onnx":
        export = [f"sgm-export onnx {base}", "--glasses glasses.safetensors", "--out model"]
        export += [f"--dtype {manifest.dtype}"] if (manifest.dtype or "float32") != "float32" else []
    else:
        export = [f"sgm-export export {base}", "--glasses glasses.safetensors", f"--format {manifest.format}", "--out model"]
    lines = [" ".join(score + ["--out scores"]), " ".join(glasses), " ".join(export)]
    return "```bash\n" + "\n".join(lines) + "\n```"


def _integrity(manifest: ExportManifest) -> str:
    base = manifest.base_model_name or manifest.base_model
    return "\n\n".join(
        [
            "## Checking it",
            "`sgm_export.json` records the tool version, the settings, the data sources and the SHA-256 of every file. "
            f"`sgm-export verify . --base {base}` compares this checkpoint's logits with the base model's under the "
            "same scales applied by hooks, an independent mechanism, and checks every file against those hashes.",
        ]
    )


def _license(manifest: ExportManifest) -> str:
    fields = manifest.base_license
    if not fields.get("license"):
        return "## License\n\nThe base model's license applies to this derived checkpoint; check it before use."
    name = fields.get("license_name") or fields["license"]
    named = f"[`{name}`]({fields['license_link']})" if fields.get("license_link") else f"`{name}`"
    return f"## License\n\nDerived from {_base_link(manifest)}, so the base model's license applies: {named}."


def _base_link(manifest: ExportManifest) -> str:
    hub_id = manifest.base_model_hub_id
    demo = manifest.base_model_name == DEMO_NAME
    if hub_id:
        link = f"[{hub_id}](https://huggingface.co/{hub_id})"
        return link + (" (as de-quantized from the Q4_K_M GGUF that sgm-export embeds)" if demo else "")
    if manifest.base_model_name == DEMO_LLAVA_NAME:
        return (
            "`demo-llava` (sgm-export's multimodal demo: a LLaVA-1.5-shaped model with a random vision tower"
            " around [google/gemma-3-270m](https://huggingface.co/google/gemma-3-270m), a plumbing demonstration)"
        )
    return f"`{_base_short_name(manifest)}`"


def _base_short_name(manifest: ExportManifest) -> str:
    name = manifest.base_model_hub_id or manifest.base_model_name or manifest.base_model or "model"
    return Path(str(name)).name


def _python(code: str) -> str:
    return f"```python\n{code}\n```"
