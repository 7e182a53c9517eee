"""Scores to scales: every mode, threshold, top-k, and the file round trip."""

import pytest
import torch
from safetensors.torch import save_file

from sgm_export.errors import CheckpointError, ShapeMismatchError
from sgm_export.glasses import compute_glasses, load_glasses, save_glasses
from sgm_export.options import GlassesOptions
from sgm_export.score.files import Scores, load_scores, save_scores


def scores_of(*layers: list[float]) -> Scores:
    aurocs = [torch.tensor(layer) for layer in layers]
    return Scores(aurocs, [torch.zeros_like(a) for a in aurocs], [torch.zeros_like(a) for a in aurocs], {"model": "m"})


SCORES = scores_of([0.2, 0.5, 0.6, 0.9], [0.75, 0.55, 1.0])


def test_aura_is_one_minus_gini_above_threshold():
    glasses = compute_glasses(SCORES, GlassesOptions())
    torch.testing.assert_close(glasses.scales[0], torch.tensor([1.0, 1.0, 0.8, 0.2]))
    torch.testing.assert_close(glasses.scales[1], torch.tensor([0.5, 0.9, 0.0]))
    assert glasses.metadata["n_experts"] == "5"


def test_aura_strength_is_clamped_to_zero():
    glasses = compute_glasses(SCORES, GlassesOptions(strength=2.0))
    torch.testing.assert_close(glasses.scales[0], torch.tensor([1.0, 1.0, 0.6, 0.0]))


def test_damp_and_det0_on_top_k():
    damp = compute_glasses(SCORES, GlassesOptions(mode="damp", alpha=0.3, top_k=2))
    torch.testing.assert_close(torch.cat(damp.scales), torch.tensor([1.0, 1.0, 1.0, 0.3, 1.0, 1.0, 0.3]))
    det0 = compute_glasses(SCORES, GlassesOptions(mode="det0", threshold=0.7))
    torch.testing.assert_close(torch.cat(det0.scales), torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0]))


def test_threshold_above_every_score_changes_nothing():
    glasses = compute_glasses(SCORES, GlassesOptions(threshold=1.0))
    assert all(bool((scale == 1).all()) for scale in glasses.scales)


def test_round_trip_and_shape_check(tmp_path):
    glasses = compute_glasses(SCORES, GlassesOptions(mode="damp"))
    loaded = load_glasses(save_glasses(glasses, tmp_path / "g.safetensors"))
    assert [s.tolist() for s in loaded.scales] == [s.tolist() for s in glasses.scales]
    assert loaded.metadata["mode"] == "damp" and loaded.metadata["base_model"] == "m"
    with pytest.raises(ShapeMismatchError, match="widths"):
        loaded.check_fits([4, 4], "model x")


def test_rejects_nan_and_out_of_range(tmp_path):
    save_file({"layers.0.scale": torch.tensor([1.0, float("nan")])}, tmp_path / "nan.safetensors")
    with pytest.raises(CheckpointError, match="NaN"):
        load_glasses(tmp_path / "nan.safetensors")
    save_file({"layers.0.scale": torch.tensor([1.5])}, tmp_path / "big.safetensors")
    with pytest.raises(CheckpointError, match="outside"):
        load_glasses(tmp_path / "big.safetensors")


def test_scores_round_trip(tmp_path):
    save_scores(SCORES, tmp_path / "scores")
    loaded = load_scores(tmp_path / "scores")
    assert [a.tolist() for a in loaded.auroc] == [a.tolist() for a in SCORES.auroc]
    assert (tmp_path / "scores" / "scores.json").is_file()
