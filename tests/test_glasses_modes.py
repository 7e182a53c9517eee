"""Expert ranking beyond AUROC, the heavy-neuron guard, SGM's amplification and the shift towards
the non-toxic mean: the scales they compute, and exports that carry them."""

import numpy as np
import pytest
import torch
import transformers
from pydantic import ValidationError
from transformers import AutoModelForCausalLM

from sgm_export.errors import CheckpointError, SgmError
from sgm_export.export import export_checkpoint
from sgm_export.glasses import compute_glasses, load_glasses, save_glasses
from sgm_export.options import GlassesOptions
from sgm_export.score.files import Scores, load_scores, save_scores
from tests.test_export import logits_of, reference_logits, widths_of


def scores_with(auroc, mean_toxic, mean_neutral, vocab=None, mean_abs_neutral=None) -> Scores:
    tensor = lambda values: [torch.tensor(values, dtype=torch.float32)]  # noqa: E731
    return Scores(
        tensor(auroc),
        tensor(mean_toxic),
        tensor(mean_neutral),
        {"model": "m"},
        None if mean_abs_neutral is None else tensor(mean_abs_neutral),
        None if vocab is None else tensor(vocab),
    )


AUROC = [0.9, 0.8, 0.7, 0.6, 0.4, 0.2]
TOXIC = [1.0, -2.0, 0.5, 3.0, 0.0, 1.0]
NEUTRAL = [0.0, -1.0, 0.5, 1.0, 0.0, 0.5]
VOCAB = [0.1, 0.9, 2.0, 0.3, 5.0, -1.0]


def test_vocab_rank_takes_the_neurons_that_write_toxic_words_where_text_is_toxic():
    scores = scores_with(AUROC, TOXIC, NEUTRAL, VOCAB)
    glasses = compute_glasses(scores, GlassesOptions(rank="vocab", top_k=2, mode="det0", guard=0))
    # vocab * (mean_toxic - mean_neutral) = [0.1, -0.9, 0, 0.6, 0, -0.5]: neurons 0 and 3 (positive, highest).
    assert glasses.scales[0].tolist() == [0.0, 1.0, 1.0, 0.0, 1.0, 1.0]
    assert glasses.metadata.settings.rank == "vocab" and glasses.metadata.n_experts == 2


def test_combined_rank_needs_both_auroc_and_vocabulary():
    scores = scores_with(AUROC, TOXIC, NEUTRAL, VOCAB)
    glasses = compute_glasses(scores, GlassesOptions(rank="combined", threshold=0.65, mode="det0", guard=0))
    # AUROC > 0.65: neurons 0, 1, 2; of those only neuron 0 has a positive vocabulary rank.
    assert glasses.scales[0].tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0]


def test_heavy_neurons_are_never_scaled():
    magnitude = [1.0, 1.0, 1.0, 50.0, 1.0, 1.0]
    scores = scores_with(AUROC, TOXIC, NEUTRAL, VOCAB, magnitude)
    guarded = compute_glasses(scores, GlassesOptions(rank="vocab", top_k=2, mode="det0"))
    assert guarded.scales[0].tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0]  # neuron 3 is 50x the median
    assert guarded.metadata.n_guarded == 1
    off = compute_glasses(scores, GlassesOptions(rank="vocab", top_k=2, mode="det0", guard=0))
    assert off.scales[0][3] == 0.0


def test_amplify_raises_anti_toxic_neurons_up_to_the_cap(tmp_path):
    scores = scores_with(AUROC, TOXIC, NEUTRAL)
    glasses = compute_glasses(scores, GlassesOptions(amplify=1.3, guard=0))
    expected = [1 - 2 * (a - 0.5) if a > 0.5 else min(1.3, 1 + 2 * (0.5 - a)) for a in AUROC]
    np.testing.assert_allclose(glasses.scales[0], expected, rtol=1e-6)
    path = save_glasses(glasses, tmp_path / "g.safetensors")
    np.testing.assert_array_equal(load_glasses(path).scales[0], glasses.scales[0])


def test_a_scale_above_one_without_the_cap_is_refused(tmp_path):
    glasses = compute_glasses(scores_with(AUROC, TOXIC, NEUTRAL), GlassesOptions(amplify=1.3, guard=0))
    glasses.metadata.settings.amplify = None
    path = save_glasses(glasses, tmp_path / "g.safetensors")
    with pytest.raises(CheckpointError, match=r"outside \[0, 1\]"):
        load_glasses(path)


def test_shift_pulls_experts_towards_the_non_toxic_mean():
    scores = scores_with(AUROC, TOXIC, NEUTRAL)
    glasses = compute_glasses(scores, GlassesOptions(mode="damp", alpha=0.25, threshold=0.65, shift=True, guard=0))
    x = np.array([3.0, -4.0, 2.0, 7.0, 1.0, 1.0], dtype=np.float32)
    pulled = x * glasses.scales[0] + glasses.shifts[0]
    expected = [0.25 * v + 0.75 * m if a > 0.65 else v for v, m, a in zip(x, NEUTRAL, AUROC)]
    np.testing.assert_allclose(pulled, expected, rtol=1e-6)


def test_vocab_rank_on_old_scores_and_without_top_k_is_refused():
    with pytest.raises(CheckpointError, match="lack"):
        compute_glasses(scores_with(AUROC, TOXIC, NEUTRAL), GlassesOptions(rank="vocab", top_k=2))
    with pytest.raises(ValidationError, match="rank vocab needs top_k"):
        GlassesOptions(rank="vocab")


def test_new_statistics_round_trip_and_old_files_still_load(tmp_path):
    scores = scores_with(AUROC, TOXIC, NEUTRAL, VOCAB, [1.0] * 6)
    loaded = load_scores(save_scores(scores, tmp_path / "new"))
    assert loaded.vocab[0].tolist() == pytest.approx(VOCAB) and loaded.mean_abs_neutral[0].tolist() == [1.0] * 6
    old = load_scores(save_scores(scores_with(AUROC, TOXIC, NEUTRAL), tmp_path / "old"))
    assert old.vocab is None and old.mean_abs_neutral is None


def _shifted_amplified_glasses(widths):
    generator = torch.Generator().manual_seed(5)
    auroc = [torch.rand(width, generator=generator) for width in widths]
    means = [torch.randn(width, generator=generator) for width in widths]
    scores = Scores(auroc, means, [m * 0.5 + 0.2 for m in means], {"model": "m"})
    return compute_glasses(scores, GlassesOptions(mode="aura", threshold=0.6, shift=True, amplify=1.4, guard=0))


def test_module_export_carries_shift_and_amplification(tiny_llama, tmp_path):
    glasses = _shifted_amplified_glasses(widths_of(tiny_llama))
    assert any((scale > 1).any() for scale in glasses.scales) and any((shift != 0).any() for shift in glasses.shifts)
    expected, plain = reference_logits(tiny_llama, glasses)
    assert (expected - plain).abs().max() > 1e-3
    module_dir = export_checkpoint(str(tiny_llama), glasses, tmp_path / "module", format="module")
    module = AutoModelForCausalLM.from_pretrained(module_dir, trust_remote_code=True)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_llama)
    assert (logits_of(module, tokenizer) - expected).abs().max() < 1e-4
    module.save_pretrained(tmp_path / "again")  # re-saving keeps scale and shift
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "again", trust_remote_code=True)
    assert (logits_of(again, tokenizer) - expected).abs().max() < 1e-4


def test_folded_export_refuses_a_shift(tiny_llama, tmp_path):
    glasses = _shifted_amplified_glasses(widths_of(tiny_llama))
    with pytest.raises(SgmError, match="folded checkpoint can only hold scales"):
        export_checkpoint(str(tiny_llama), glasses, tmp_path / "folded", format="folded")
    assert not (tmp_path / "folded").exists()


def test_onnx_export_carries_the_shift(tiny_llama, tmp_path):
    from sgm_export.export.onnx import export_onnx
    from sgm_export.models.load import load_model
    from sgm_export.options import OnnxOptions
    from sgm_export.runtime import OnnxCausalLM
    from sgm_export.verify.onnx import compare_generation

    glasses = _shifted_amplified_glasses(widths_of(tiny_llama))
    folder = export_onnx(str(tiny_llama), tmp_path / "onnx", glasses, OnnxOptions())
    base = load_model(str(tiny_llama), device="cpu", dtype="float32")
    prompts = [base.tokenizer(text)["input_ids"] for text in ["you are a fool and", "the garden in the morning"]]
    comparison = compare_generation(OnnxCausalLM(folder, device="cpu"), base, glasses, prompts, 8)
    assert comparison.max_abs_diff < 1e-4 and comparison.glasses_effect > 1e-3 and comparison.tokens_equal


def test_the_card_says_how_the_experts_were_chosen(tiny_llama, tmp_path):
    widths = widths_of(tiny_llama)
    generator = torch.Generator().manual_seed(7)
    tensors = lambda: [torch.randn(width, generator=generator) for width in widths]  # noqa: E731
    scores = Scores([torch.rand(width, generator=generator) for width in widths], tensors(), tensors(), {"model": "m"}, None, tensors())
    glasses = compute_glasses(scores, GlassesOptions(rank="vocab", top_k=5, mode="det0", shift=True))
    card = (export_checkpoint(str(tiny_llama), glasses, tmp_path / "m", format="module") / "README.md").read_text()
    assert "write toxic words where the text is toxic" in card
    assert "output promotes toxic words" in card and "pulled towards the non-toxic mean" in card
