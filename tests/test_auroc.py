"""Exact AUROC for all neurons at once, against scikit-learn's roc_auc_score per neuron."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from sgm_export.score.auroc import auroc


def sklearn_auroc(values: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    return np.array([roc_auc_score(labels.numpy(), values[:, j].numpy()) for j in range(values.shape[1])])


@pytest.mark.parametrize("chunk_size", [1, 7, 8192])
def test_matches_sklearn_with_ties_and_constant_neurons(chunk_size):
    generator = torch.Generator().manual_seed(0)
    values = torch.randint(0, 4, (60, 50), generator=generator).float()  # many ties
    values[:, 0] = 3.0  # a constant neuron: AUROC exactly 0.5
    values[:, 1] = torch.randn(60, generator=generator)  # no ties
    labels = torch.randint(0, 2, (60,), generator=generator)
    ours = auroc(values, labels, chunk_size=chunk_size).numpy()
    np.testing.assert_allclose(ours, sklearn_auroc(values, labels), atol=1e-6)
    assert ours[0] == 0.5


def test_perfect_separation_and_reversal():
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    values = torch.tensor([[0.1, 0.9], [0.2, 0.8], [0.3, 0.7], [0.4, 0.6], [0.5, 0.5], [0.6, 0.4]])
    assert auroc(values, labels).tolist() == [1.0, 0.0]


def test_rejects_one_class_and_non_finite_values():
    with pytest.raises(ValueError, match="positive and one negative"):
        auroc(torch.rand(4, 3), torch.ones(4))
    values = torch.rand(4, 3)
    values[1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        auroc(values, torch.tensor([0, 1, 0, 1]))


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    n=st.integers(min_value=2, max_value=40),
    m=st.integers(min_value=1, max_value=6),
    levels=st.integers(min_value=1, max_value=5),
)
def test_property_equals_sklearn(data, n, m, levels):
    labels = data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n).filter(lambda ls: 0 < sum(ls) < len(ls)))
    values = data.draw(st.lists(st.integers(0, levels), min_size=n * m, max_size=n * m))
    values_t = torch.tensor(values, dtype=torch.float32).reshape(n, m)
    labels_t = torch.tensor(labels)
    np.testing.assert_allclose(auroc(values_t, labels_t).numpy(), sklearn_auroc(values_t, labels_t), atol=1e-6)


def test_values_one_bit_apart_and_signed_zeros_are_ranked_exactly():
    one = np.float32(1.0)
    above = np.nextafter(one, np.float32(2.0))  # differs from 1.0 in the lowest bit only
    column_a = [one, above, one, above, 0.5, 2.0]
    column_b = [-0.0, 0.0, 0.0, -0.0, -1.0, 1.0]  # -0.0 == 0.0: ties across classes
    values = torch.tensor(np.array([column_a, column_b], dtype=np.float32).T.copy())
    for labels in ([1, 0, 0, 1, 0, 1], [0, 1, 1, 0, 1, 0], [1, 1, 0, 0, 0, 1]):
        labels_t = torch.tensor(labels)
        np.testing.assert_allclose(auroc(values, labels_t).numpy(), sklearn_auroc(values, labels_t), atol=1e-7)


def test_continuous_values_at_scale():
    generator = torch.Generator().manual_seed(3)
    values = torch.randn(500, 3000, generator=generator)
    labels = torch.rand(500, generator=generator) < 0.4
    np.testing.assert_allclose(auroc(values, labels).numpy()[:300], sklearn_auroc(values[:, :300], labels), atol=1e-6)


def test_torch_steps_equal_numpy_steps():
    """The GPU path's torch code, run on CPU tensors, gives the same rank sums as the CPU path."""
    from sgm_export.score.auroc import _rank_sums_numpy, _rank_sums_torch

    generator = torch.Generator().manual_seed(5)
    rows = torch.randn(300, 80, generator=generator)
    rows[:30] = rows[:30].round()  # ties
    positive = torch.rand(80, generator=generator) < 0.5
    expected = _rank_sums_numpy(rows.numpy(), positive.numpy())
    np.testing.assert_array_equal(_rank_sums_torch(rows, positive).numpy(), expected)
    strided = rows.T.contiguous().T  # rows of an example-major matrix, as `auroc` gets them: strided
    np.testing.assert_array_equal(_rank_sums_numpy(strided.numpy(), positive.numpy()), expected)
    np.testing.assert_array_equal(_rank_sums_torch(strided, positive).numpy(), expected)


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(min_value=2, max_value=400),
    kinds=st.lists(st.sampled_from(["any", "few", "signed-zeros", "constant"]), min_size=1, max_size=24),
    chunk_size=st.integers(1, 9),
)
def test_property_equals_sklearn_on_floats_with_ties_and_constant_neurons(seed, n, kinds, chunk_size):
    """Real-valued activations at larger shapes: floats of any magnitude and sign, columns drawn
    from a few repeated values (ties, including 0.0 against -0.0), constant columns. Hypothesis
    picks the shape, the kind of each column and the seed; numpy draws the values."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.r_[0, 1, rng.integers(0, 2, n - 2)])
    columns = []
    for kind in kinds:
        if kind == "any":
            column = rng.standard_normal(n) * 10.0 ** rng.uniform(-30, 30, n)
        elif kind == "few":
            column = rng.choice(rng.standard_normal(rng.integers(1, 4)), n)
        elif kind == "signed-zeros":
            column = rng.choice([0.0, -0.0, 1.0], n)
        else:
            column = np.full(n, rng.standard_normal())
        columns.append(column)
    values = torch.tensor(np.stack(columns, axis=1), dtype=torch.float32)
    labels_t = torch.from_numpy(labels)
    ours = auroc(values, labels_t, chunk_size=chunk_size)
    np.testing.assert_allclose(ours.numpy(), sklearn_auroc(values, labels_t), atol=1e-6)
    assert ((ours >= 0) & (ours <= 1)).all()
    assert all(ours[j] == 0.5 for j, kind in enumerate(kinds) if kind == "constant")
