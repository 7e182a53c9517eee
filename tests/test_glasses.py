"""Scores to scales: every mode, threshold, top-k, and the file round trip."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
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
    assert all(scale.dtype == np.float32 for scale in glasses.scales)
    np.testing.assert_allclose(glasses.scales[0], [1.0, 1.0, 0.8, 0.2], rtol=1e-6)
    np.testing.assert_allclose(glasses.scales[1], [0.5, 0.9, 0.0], rtol=1e-6)
    assert glasses.metadata.n_experts == 5


def test_aura_strength_is_clamped_to_zero():
    glasses = compute_glasses(SCORES, GlassesOptions(strength=2.0))
    np.testing.assert_allclose(glasses.scales[0], [1.0, 1.0, 0.6, 0.0], rtol=1e-6)


def test_damp_and_det0_on_top_k():
    damp = compute_glasses(SCORES, GlassesOptions(mode="damp", alpha=0.3, top_k=2))
    np.testing.assert_array_equal(np.concatenate(damp.scales), np.float32([1.0, 1.0, 1.0, 0.3, 1.0, 1.0, 0.3]))
    det0 = compute_glasses(SCORES, GlassesOptions(mode="det0", threshold=0.7))
    np.testing.assert_array_equal(np.concatenate(det0.scales), np.float32([1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0]))


def test_top_k_takes_the_earlier_of_tied_neurons():
    tied = scores_of([0.75, 0.9, 0.75], [0.75, 0.9])
    glasses = compute_glasses(tied, GlassesOptions(mode="det0", top_k=3))
    assert [scale.tolist() for scale in glasses.scales] == [[0.0, 0.0, 1.0], [1.0, 0.0]]


def test_threshold_above_every_score_changes_nothing():
    glasses = compute_glasses(SCORES, GlassesOptions(threshold=1.0))
    assert all(bool((scale == 1).all()) for scale in glasses.scales)


def test_round_trip_and_shape_check(tmp_path):
    glasses = compute_glasses(SCORES, GlassesOptions(mode="damp"))
    loaded = load_glasses(save_glasses(glasses, tmp_path / "g.safetensors"))
    assert [s.tolist() for s in loaded.scales] == [s.tolist() for s in glasses.scales]
    assert loaded.metadata.settings.mode == "damp" and loaded.metadata.base_model == "m"
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


auroc_values = st.one_of(st.sampled_from([0.0, 0.5, 1.0, 0.5000001, 0.9999999]), st.floats(0.0, 1.0))
finite = {"allow_nan": False, "allow_infinity": False}


@settings(max_examples=300, deadline=None)
@given(
    layers=st.lists(st.lists(auroc_values, min_size=1, max_size=12), min_size=1, max_size=4),
    mode=st.sampled_from(["aura", "damp", "det0"]),
    threshold=st.floats(0.0, 1.0),
    top_k=st.none() | st.integers(1, 60),
    alpha=st.floats(0.0, 1.0),
    strength=st.floats(min_value=0.0, **finite),
)
def test_property_scales_stay_within_zero_and_one(layers, mode, threshold, top_k, alpha, strength):
    """For any scores and any valid settings: every scale is a number in [0, 1], exactly 1 where
    a neuron is no expert, and there are no more experts than top_k, all above the threshold."""
    scores = scores_of(*layers)
    options = GlassesOptions(mode=mode, threshold=threshold, top_k=top_k, alpha=alpha, strength=strength)
    glasses = compute_glasses(scores, options)
    scales, aurocs = np.concatenate(glasses.scales), torch.cat(scores.auroc).numpy()
    assert glasses.widths == scores.widths
    assert np.isfinite(scales).all() and (scales >= 0).all() and (scales <= 1).all()
    experts = glasses.metadata.n_experts
    assert experts <= (top_k if top_k is not None else aurocs.size)
    scaled = scales < 1
    assert int(scaled.sum()) <= experts and bool((aurocs[scaled] > threshold).all())
    if mode == "det0":
        assert int(scaled.sum()) == experts


@settings(max_examples=100, deadline=None)
@given(strength=st.floats(allow_nan=True, allow_infinity=True).filter(lambda x: not (0 <= x < float("inf"))))
def test_settings_that_would_break_the_formula_are_refused(strength):
    with pytest.raises(ValidationError):
        GlassesOptions(strength=strength)
