"""Vision-language models of every family: the pooling mask on image+text rows, scoring batches
that mix rows with and without images, module and folded exports checked against hook-applied
glasses on an image input, verify, and the errors a user can run into."""

import shutil

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForImageTextToText

from sgm_export.apply import glasses_applied
from sgm_export.arch import decoder_projections
from sgm_export.data.examples import Example
from sgm_export.data.images import neutral_image_paths
from sgm_export.data.multimodal import MultimodalEncoder
from sgm_export.data.sources import read_source
from sgm_export.errors import CheckpointError, DataError
from sgm_export.export import export_checkpoint
from sgm_export.models.load import load_model
from sgm_export.models.processor import load_processor
from sgm_export.options import ScoreOptions
from sgm_export.score.runner import model_inputs, pooled_activations, score_examples
from sgm_export.verify import verify_export
from tests.cli_helpers import assert_clean_usage_error, sgm
from tests.conftest import write_jsonl
from tests.test_export import random_glasses
from tests.tiny import INTERMEDIATE
from tests.tiny_vlm import VLM_FAMILIES, build_tiny_vlm

FAMILIES = sorted(VLM_FAMILIES)


@pytest.fixture(scope="session")
def tiny_vlms(tmp_path_factory) -> dict:
    """A saved tiny random vision-language model per family, built once per test session."""
    root = tmp_path_factory.mktemp("tiny-vlms")
    return {model_type: build_tiny_vlm(model_type, root / model_type, seed=seed) for seed, model_type in enumerate(FAMILIES)}


def image_rows(count: int = 6) -> list[Example]:
    """Toxic and neutral answers about neutral photos, with one row of each class without an image."""
    images = neutral_image_paths()
    texts = [
        (" you are a stupid idiot and I hate you", 1),
        (" the weather is lovely and the garden is in bloom", 0),
        (" shut up you worthless moron", 1),
        (" she poured the tea and opened the window", 0),
        (" what a pathetic loser, go to hell", 1),
        (" a man rides a bicycle along the river", 0),
    ][:count]
    return [
        Example(
            text=text,
            label=label,
            prompt="What is in this picture?",
            image=None if row >= count - 2 else images[row],
            origin=f"row {row + 1}",
        )
        for row, (text, label) in enumerate(texts)
    ]


def image_token_ids(loaded) -> set[int]:
    tokenizer = loaded.tokenizer
    return {tokenizer.convert_tokens_to_ids(VLM_FAMILIES[loaded.model.config.model_type].image_token)}


@pytest.mark.parametrize("model_type", FAMILIES)
def test_pool_mask_covers_the_answer_only(tiny_vlms, model_type):
    loaded = load_model(str(tiny_vlms[model_type]))
    encoder = MultimodalEncoder(loaded.processor, loaded.family, loaded.model, max_length=64)
    example = image_rows()[0]
    encoded = encoder.encode(example)
    text_ids = loaded.tokenizer(example.text, add_special_tokens=False)["input_ids"]
    prompt_ids = loaded.tokenizer(example.prompt, add_special_tokens=False)["input_ids"]
    answer_start = len(encoded.input_ids) - len(text_ids)
    assert encoded.pool_mask == [False] * answer_start + [True] * len(text_ids)
    assert encoded.input_ids[answer_start:] == text_ids
    prefix = encoded.input_ids[:answer_start]
    image_ids = image_token_ids(loaded)
    assert sum(token in image_ids for token in prefix) >= 1  # the image tokens are in the sequence, unpooled
    assert not any(token in image_ids for token in encoded.input_ids[answer_start:])
    assert any(prefix[i : i + len(prompt_ids)] == prompt_ids for i in range(len(prefix)))  # so is the prompt
    assert encoded.per_image  # pixel inputs go with it


@pytest.mark.parametrize("model_type", FAMILIES)
def test_mixed_batches_pool_as_single_rows(tiny_vlms, model_type):
    """Rows with and without images batched together give each row's own activations."""
    loaded = load_model(str(tiny_vlms[model_type]))
    examples = image_rows()
    batched = pooled_activations(loaded, examples, ScoreOptions(batch_size=6))
    alone = pooled_activations(loaded, examples, ScoreOptions(batch_size=1))
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-5)
    if model_type == "mllama":  # rows without an image skip the cross-attention layer (layer 1): it reads 0
        width = INTERMEDIATE
        assert not batched[4:, width : 2 * width].any() and batched[:4, width : 2 * width].abs().sum() > 0
    scores = score_examples(loaded, examples, ScoreOptions(batch_size=3))
    projections = decoder_projections(loaded.model, loaded.family)
    assert scores.widths == [int(p.weight.shape[1]) for p in projections]
    assert scores.metadata.n_images == 4 and scores.metadata.family == model_type
    assert all(float(layer.min()) >= 0 and float(layer.max()) <= 1 for layer in scores.auroc)


def image_logits(model, loaded) -> torch.Tensor:
    """Logits of two image+text rows and one text row, at the real tokens."""
    encoder = MultimodalEncoder(loaded.processor, loaded.family, loaded.model, max_length=64)
    examples = [image_rows()[0], image_rows()[1], image_rows()[-1]]
    batch = encoder.collate([encoder.encode(example) for example in examples], [0, 1, 2], loaded.tokenizer.pad_token_id)
    inputs = model_inputs(loaded, batch)
    with torch.no_grad():
        return model(**inputs).logits[inputs["attention_mask"].bool()]


@pytest.mark.parametrize("model_type", FAMILIES)
def test_module_and_folded_exports_match_hooked_base_with_an_image(tiny_vlms, tmp_path, model_type):
    base_dir = tiny_vlms[model_type]
    base = load_model(str(base_dir), dtype="float32")
    glasses = random_glasses([int(p.weight.shape[1]) for p in decoder_projections(base.model, base.family)])
    plain = image_logits(base.model, base)
    with glasses_applied(base.model, base.family, glasses):
        expected = image_logits(base.model, base)
    assert (expected - plain).abs().max() > 1e-3  # the glasses change the output

    module_dir = export_checkpoint(str(base_dir), glasses, tmp_path / "module", format="module")
    module = AutoModelForImageTextToText.from_pretrained(module_dir, trust_remote_code=True)
    assert (image_logits(module, base) - expected).abs().max() < 1e-4

    folded_dir = export_checkpoint(str(base_dir), glasses, tmp_path / "folded", format="folded")
    folded = AutoModelForImageTextToText.from_pretrained(folded_dir)
    assert (image_logits(folded, base) - expected).abs().max() < 1e-4

    for export_dir in (module_dir, folded_dir):
        processor = load_processor(export_dir, trust_remote_code=True)
        assert processor.chat_template == base.processor.chat_template
        assert processor.tokenizer.get_vocab() == base.tokenizer.get_vocab()
        assert verify_export(export_dir, str(base_dir)).passed


def test_folded_export_leaves_the_vision_tower_alone(tiny_vlms, tmp_path):
    """Qwen2.5-VL's vision blocks have mlp.down_proj too; only the language model's are folded."""
    base_dir = tiny_vlms["qwen2_5_vl"]
    base = load_model(str(base_dir))
    glasses = random_glasses([int(p.weight.shape[1]) for p in decoder_projections(base.model, base.family)])
    folded_dir = export_checkpoint(str(base_dir), glasses, tmp_path / "folded", format="folded")
    with safe_open(base_dir / "model.safetensors", "pt") as before, safe_open(folded_dir / "model.safetensors", "pt") as after:
        keys = list(before.keys())
        changed = sorted(key for key in keys if not torch.equal(before.get_tensor(key), after.get_tensor(key)))
    assert changed == ["model.layers.0.mlp.down_proj.weight", "model.layers.1.mlp.down_proj.weight"]
    assert "visual.blocks.0.mlp.down_proj.weight" in keys


def test_module_export_fails_closed(tiny_vlms, tmp_path):
    base = load_model(str(tiny_vlms["llava"]))
    glasses = random_glasses([int(p.weight.shape[1]) for p in decoder_projections(base.model, base.family)])
    out = export_checkpoint(str(tiny_vlms["llava"]), glasses, tmp_path / "module")
    with pytest.raises(ValueError, match="trust_remote_code"):
        AutoModelForImageTextToText.from_pretrained(out, trust_remote_code=False)


def test_unreadable_image_names_the_row_and_path(tiny_vlms, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"this is not a png")
    shutil.copy(neutral_image_paths()[0], tmp_path / "fine.png")
    rows = [
        {"text": "you fool", "label": 1, "image": "fine.png"},
        {"text": "a calm lake", "label": 0, "image": "broken.png"},
    ]
    with pytest.raises(DataError, match=r"d.jsonl line 2 names image .*broken.png, which is not a readable image") as error:
        read_source(str(write_jsonl(tmp_path / "d.jsonl", rows)))  # caught when the data is read
    assert "\n" not in str(error.value)
    shutil.copy(tmp_path / "fine.png", tmp_path / "later.png")
    examples = read_source(str(write_jsonl(tmp_path / "e.jsonl", [rows[0], {**rows[1], "image": "later.png"}])))
    (tmp_path / "later.png").write_bytes(b"damaged after the data was read")
    loaded = load_model(str(tiny_vlms["llava"]))
    with pytest.raises(DataError, match=r"e.jsonl line 2 names image .*later.png, which cannot be read") as error:
        score_examples(loaded, examples, ScoreOptions())
    assert "\n" not in str(error.value)


def test_text_only_model_refuses_image_rows(tiny_llama):
    loaded = load_model(str(tiny_llama))
    with pytest.raises(DataError, match="2 examples have an image .*row 1.*text-only model"):
        score_examples(loaded, image_rows(count=4), ScoreOptions())


def test_builtin_image_sets_pair_both_classes_with_the_same_photos():
    toxic = read_source("builtin:rtp-toxic-images", limit=32)
    neutral = read_source("builtin:neutral-images", limit=32)
    assert all(example.image is not None and example.image.is_file() and example.prompt for example in toxic + neutral)
    assert [e.image for e in toxic] == [e.image for e in neutral]
    assert len({e.image for e in toxic}) == len(neutral_image_paths())
    assert [e.text for e in toxic] == [e.text for e in read_source("builtin:rtp-toxic", limit=32)]


def test_processor_without_chat_template_is_a_clean_error(tiny_vlms, tmp_path):
    model_dir = tmp_path / "no-template"
    shutil.copytree(tiny_vlms["llava"], model_dir)
    (model_dir / "chat_template.jinja").unlink()
    loaded = load_model(str(model_dir))
    with pytest.raises(CheckpointError, match="no chat template"):
        score_examples(loaded, image_rows(), ScoreOptions())


def test_cli_reports_an_unreadable_image_in_one_line(tiny_vlms, tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    rows = [{"text": "you fool", "label": 1, "image": "broken.jpg"}, {"text": "a calm lake", "label": 0}]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    result = sgm("score", tiny_vlms["llava"], "--data", data, "--out", tmp_path / "scores")
    assert_clean_usage_error(result, "d.jsonl line 1", "broken.jpg", "not a readable image")
    assert not (tmp_path / "scores").exists()
