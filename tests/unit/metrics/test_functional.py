"""Hand-computed values, edge cases and error messages of obliviate.metrics.functional."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from obliviate.errors import IncompatibleModelError, InvalidConfigError, MissingDataError
from obliviate.metrics import functional as MF
from obliviate.metrics.functional._common import as_array, as_probabilities

LN2 = math.log(2.0)
CLAMPED_LOG = -math.log(1e-30)  # -log of the 1e-30 clamp, = 30 ln 10


def _direct_modified_entropy(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Song & Mittal's modified entropy, one row at a time in plain Python."""
    out = []
    for row, yi in zip(p.tolist(), y.tolist(), strict=False):
        value = -(1.0 - row[yi]) * math.log(max(row[yi], 1e-30))
        for i, pi in enumerate(row):
            if i != yi:
                value -= pi * math.log(max(1.0 - pi, 1e-30))
        out.append(value)
    return np.array(out)


def _unlearn_sparse_buggy_modified_entropy(p: np.ndarray) -> np.ndarray:
    """The label-independent value the Unlearn-Sparse code returned: -sum_k (1 - p_k) log p_k."""
    return -((1.0 - p) * np.log(np.maximum(p, 1e-30))).sum(axis=1)


# ====================================================================== mia_feature
def test_confidence_feature_is_probability_of_true_label():
    p = np.array([[0.2, 0.8], [0.6, 0.4], [0.25, 0.75]])
    np.testing.assert_array_equal(MF.mia_feature(p, [1, 1, 0], "confidence"), [0.8, 0.4, 0.25])


def test_entropy_feature_hand_values_with_zero_log_zero_equal_zero():
    p = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.25, 0.25, 0.5]])
    got = MF.mia_feature(p, [0, 0, 2], "entropy")
    expected = [LN2, 0.0, -(0.5 * math.log(0.25) + 0.5 * math.log(0.5))]
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_entropy_feature_does_not_depend_on_label():
    p = np.array([[0.1, 0.7, 0.2]] * 3)
    got = MF.mia_feature(p, [0, 1, 2], "entropy")
    assert got[0] == got[1] == got[2]


def test_loss_feature_is_minus_log_true_class_probability():
    p = np.array([[0.2, 0.8], [0.6, 0.4], [1.0, 0.0]])
    got = MF.mia_feature(p, [1, 1, 0], "loss")
    np.testing.assert_allclose(got, [-math.log(0.8), -math.log(0.4), 0.0], rtol=0, atol=1e-12)


def test_loss_feature_clamps_zero_probability_at_1e_minus_30():
    got = MF.mia_feature(np.array([[1.0, 0.0]]), [1], "loss")
    assert got[0] == pytest.approx(CLAMPED_LOG, abs=1e-12)
    assert got[0] == pytest.approx(30 * math.log(10), abs=1e-12)


def test_modified_entropy_hand_value():
    p = np.array([[0.5, 0.3, 0.2]])
    expected = -0.5 * math.log(0.5) - 0.3 * math.log(0.7) - 0.2 * math.log(0.8)
    assert MF.mia_feature(p, [0], "modified_entropy")[0] == pytest.approx(expected, abs=1e-12)
    # the same row with another label
    expected_y1 = -0.7 * math.log(0.3) - 0.5 * math.log(0.5) - 0.2 * math.log(0.8)
    assert MF.mia_feature(p, [1], "modified_entropy")[0] == pytest.approx(expected_y1, abs=1e-12)


def test_modified_entropy_matches_direct_python_computation_on_random_rows():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.full(7, 0.5), size=200)
    y = rng.integers(0, 7, size=200)
    np.testing.assert_allclose(MF.mia_feature(p, y, "modified_entropy"), _direct_modified_entropy(p, y), rtol=1e-12, atol=1e-12)


def test_modified_entropy_clamps_logs_for_certain_wrong_and_certain_right_predictions():
    p = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    got = MF.mia_feature(p, [0, 0], "modified_entropy")
    # row 0: p_y = 0 -> -(1) log(1e-30); p_1 = 1 -> -1 * log(max(0, 1e-30)); row 1: perfect -> 0
    np.testing.assert_allclose(got, [2 * CLAMPED_LOG, 0.0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got, _direct_modified_entropy(p, np.array([0, 0])), rtol=1e-12, atol=1e-12)


def test_modified_entropy_regression_depends_on_label_unlike_unlearn_sparse_bug():
    p = np.array([[0.6, 0.3, 0.1]] * 3)
    y = np.array([0, 1, 2])
    ours = MF.mia_feature(p, y, "modified_entropy")
    # same probabilities, different labels -> different values
    assert len(set(np.round(ours, 12).tolist())) == 3
    # the bug's value is the same for every label; ours is not that value
    buggy = _unlearn_sparse_buggy_modified_entropy(p)
    assert np.all(buggy == buggy[0])
    assert np.all(np.abs(ours - buggy) > 1e-3)
    np.testing.assert_allclose(ours, _direct_modified_entropy(p, y), rtol=1e-12, atol=1e-12)


def test_modified_entropy_differs_from_unlearn_sparse_buggy_formula_on_random_rows():
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(5), size=100)
    y = rng.integers(0, 5, size=100)
    ours = MF.mia_feature(p, y, "modified_entropy")
    assert np.all(np.abs(ours - _unlearn_sparse_buggy_modified_entropy(p)) > 1e-6)


@pytest.mark.parametrize("feature", MF.FEATURES)
def test_mia_feature_accepts_torch_tensor_and_list_inputs_identically(feature):
    p = np.array([[0.1, 0.6, 0.3], [0.7, 0.2, 0.1]])
    y = [1, 2]
    expected = MF.mia_feature(p, np.array(y), feature)
    np.testing.assert_array_equal(MF.mia_feature(torch.tensor(p), torch.tensor(y), feature), expected)
    np.testing.assert_array_equal(MF.mia_feature(p.tolist(), y, feature), expected)
    assert expected.dtype == np.float64 and expected.shape == (2,)


@pytest.mark.parametrize("feature", MF.FEATURES)
def test_mia_feature_of_empty_input_is_empty(feature):
    out = MF.mia_feature(np.zeros((0, 4)), np.zeros(0, np.int64), feature)
    assert out.shape == (0,)


def test_features_constant_lists_the_four_spec_features():
    assert MF.FEATURES == ("confidence", "entropy", "modified_entropy", "loss")


def test_mia_feature_rejects_unknown_feature_listing_valid_ones():
    with pytest.raises(InvalidConfigError, match=r"must be one of confidence, entropy, modified_entropy, loss; got 'entropi'"):
        MF.mia_feature([[0.5, 0.5]], [0], "entropi")


def test_mia_feature_rejects_labels_out_of_range():
    with pytest.raises(InvalidConfigError, match=r"Labels must lie in \[0, 2\)"):
        MF.mia_feature([[0.5, 0.5]], [2], "confidence")
    with pytest.raises(InvalidConfigError, match=r"Labels must lie in \[0, 2\)"):
        MF.mia_feature([[0.5, 0.5]], [-1], "loss")


def test_mia_feature_rejects_length_mismatch():
    with pytest.raises(InvalidConfigError, match="mia_feature got 2 outputs for 3 labels"):
        MF.mia_feature([[0.5, 0.5], [0.1, 0.9]], [0, 1, 1], "confidence")


def test_mia_feature_rejects_rows_that_are_not_probability_vectors():
    with pytest.raises(InvalidConfigError, match="'probs' must be probability vectors"):
        MF.mia_feature([[2.0, -1.0]], [0], "confidence")  # sums to 1, but negative
    with pytest.raises(InvalidConfigError, match="'probs' must be probability vectors"):
        MF.mia_feature([[0.5, 0.6]], [0], "confidence")  # logits passed by mistake


def test_mia_feature_rejects_one_dimensional_probs():
    with pytest.raises(InvalidConfigError, match=r"'probs' argument must be an \(N, C\) array.*shape \(2,\)"):
        MF.mia_feature([0.5, 0.5], [0, 1], "confidence")


# ====================================================================== as_probabilities / as_array
def test_as_probabilities_rejects_rows_not_summing_to_one():
    with pytest.raises(InvalidConfigError, match="rows of 'q' must be probability vectors"):
        as_probabilities([[0.3, 0.3], [0.5, 0.5]], "q")
    with pytest.raises(InvalidConfigError, match="rows of 'q' must be probability vectors"):
        as_probabilities([[0.5, 0.49]], "q")


def test_as_probabilities_accepts_float32_softmax_rows_and_returns_float64():
    logits = torch.randn(50, 10, generator=torch.Generator().manual_seed(0))
    p = as_probabilities(torch.softmax(logits, 1), "p")
    assert p.dtype == np.float64 and p.shape == (50, 10)


def test_as_probabilities_accepts_empty_two_dimensional_input():
    assert as_probabilities(np.zeros((0, 3)), "p").shape == (0, 3)


def test_as_array_rejects_non_numeric_object_input():
    with pytest.raises(InvalidConfigError, match="'labels' argument must be numeric"):
        as_array([[None, None]], "labels")


# ====================================================================== member_score, balanced_subsample
def test_member_score_keeps_confidence_and_negates_other_features():
    v = np.array([0.2, 1.5, -0.3])
    np.testing.assert_array_equal(MF.member_score(v, "confidence"), v)
    for f in ("entropy", "modified_entropy", "loss"):
        np.testing.assert_array_equal(MF.member_score(v, f), -v)


def test_balanced_subsample_shrinks_larger_side_to_smaller_keeping_order_and_smaller_side():
    a, b = np.arange(100.0), np.arange(1000.0, 1030.0)
    sa, sb = MF.balanced_subsample(a, b, seed=0)
    assert len(sa) == len(sb) == 30
    np.testing.assert_array_equal(sb, b)
    assert np.all(np.diff(sa) > 0)  # sorted indices, no repeats
    assert np.isin(sa, a).all()
    # symmetric case: the second side is the larger one
    sb2, sa2 = MF.balanced_subsample(b, a, seed=0)
    np.testing.assert_array_equal(sb2, b)
    np.testing.assert_array_equal(sa2, sa)  # same rng stream, same draw


def test_balanced_subsample_is_deterministic_per_seed_and_seed_dependent():
    a, b = np.arange(200.0), np.arange(20.0)
    first = MF.balanced_subsample(a, b, seed=5)[0]
    np.testing.assert_array_equal(first, MF.balanced_subsample(a, b, seed=5)[0])
    assert not np.array_equal(first, MF.balanced_subsample(a, b, seed=6)[0])


def test_balanced_subsample_leaves_equal_sizes_unchanged():
    a, b = np.arange(10.0), np.arange(10.0, 20.0)
    sa, sb = MF.balanced_subsample(a, b, seed=1)
    np.testing.assert_array_equal(sa, a)
    np.testing.assert_array_equal(sb, b)


# ====================================================================== mia_efficacy
def _separable(seed: int = 0):
    rng = np.random.default_rng(seed)
    members = rng.uniform(0.9, 1.0, 60)  # high confidence: seen
    nonmembers = rng.uniform(0.0, 0.3, 40)  # low confidence: unseen
    like_nonmembers = rng.uniform(0.0, 0.3, 25)
    like_members = rng.uniform(0.9, 1.0, 25)
    return members, nonmembers, like_nonmembers, like_members


def test_mia_efficacy_is_one_for_targets_like_nonmembers_on_separable_data():
    m, n, t_non, _ = _separable()
    assert MF.mia_efficacy(m, n, t_non, seed=0) == 1.0


def test_mia_efficacy_is_zero_for_targets_like_members_on_separable_data():
    m, n, _, t_mem = _separable()
    assert MF.mia_efficacy(m, n, t_mem, seed=0) == 0.0


def test_mia_efficacy_counts_fraction_of_targets_predicted_nonmember():
    m, n, t_non, t_mem = _separable()
    mixed = np.concatenate([t_non[:10], t_mem[:15]])  # 10 of 25 look unseen
    assert MF.mia_efficacy(m, n, mixed, seed=0) == pytest.approx(0.4, abs=1e-12)


def test_mia_efficacy_is_deterministic_for_a_fixed_seed():
    rng = np.random.default_rng(3)
    m, n, t = rng.normal(0.7, 0.2, 150), rng.normal(0.5, 0.2, 70), rng.normal(0.6, 0.2, 80)
    first = MF.mia_efficacy(m, n, t, seed=11)
    assert 0.0 < first < 1.0
    assert MF.mia_efficacy(m, n, t, seed=11) == first
    assert MF.mia_efficacy(m.tolist(), torch.tensor(n), t, seed=11) == first


@pytest.mark.parametrize("empty", ["members", "nonmembers", "targets"])
def test_mia_efficacy_raises_missing_data_for_each_empty_set(empty):
    sets = {"members": [0.9, 0.8], "nonmembers": [0.1, 0.2], "targets": [0.5]}
    sets[empty] = []
    with pytest.raises(MissingDataError, match=f"non-empty '{empty}' set"):
        MF.mia_efficacy(**sets)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", ["members", "nonmembers", "targets"])
def test_mia_efficacy_rejects_non_finite_values(bad, where):
    sets = {"members": [0.9, 0.8], "nonmembers": [0.1, 0.2], "targets": [0.5, 0.4]}
    sets[where] = [0.5, bad]
    with pytest.raises(InvalidConfigError, match=f"'{where}' feature values must be finite"):
        MF.mia_efficacy(**sets)


# ====================================================================== mia_entropy_lr
def _separable_entropy(seed: int = 0):
    rng = np.random.default_rng(seed)
    members = rng.uniform(0.0, 0.2, 50)  # low entropy: seen
    nonmembers = rng.uniform(1.5, 2.0, 80)
    return members, nonmembers, rng.uniform(0.0, 0.2, 20), rng.uniform(1.5, 2.0, 20)


def test_mia_entropy_lr_is_one_for_member_like_targets_and_zero_for_nonmember_like():
    m, n, t_mem, t_non = _separable_entropy()
    assert MF.mia_entropy_lr(m, n, t_mem) == 1.0
    assert MF.mia_entropy_lr(m, n, t_non) == 0.0
    assert MF.mia_entropy_lr(m, n, np.concatenate([t_mem[:5], t_non])) == pytest.approx(5 / 25, abs=1e-12)


def test_mia_entropy_lr_raises_missing_data_and_invalid_config():
    with pytest.raises(MissingDataError, match="non-empty 'targets' set"):
        MF.mia_entropy_lr([0.1, 0.2], [1.0, 2.0], [])
    with pytest.raises(InvalidConfigError, match="'members' feature values must be finite"):
        MF.mia_entropy_lr([0.1, np.nan], [1.0, 2.0], [0.5])


# ====================================================================== mia_auc
def test_mia_auc_hand_values():
    assert MF.mia_auc([3.0, 4.0], [1.0, 2.0]) == 1.0
    assert MF.mia_auc([1.0, 2.0], [3.0, 4.0]) == 0.0
    assert MF.mia_auc([0.9, 0.4], [0.5, 0.1]) == pytest.approx(0.75, abs=1e-12)  # 3 of 4 pairs ordered
    assert MF.mia_auc([1.0, 1.0], [1.0, 1.0]) == pytest.approx(0.5, abs=1e-12)


def test_mia_auc_raises_missing_data_for_empty_sets():
    with pytest.raises(MissingDataError, match="mia_auc needs non-empty"):
        MF.mia_auc([], [0.1])
    with pytest.raises(MissingDataError, match="mia_auc needs non-empty"):
        MF.mia_auc([0.1], [])


# ====================================================================== divergences
def test_kl_divergence_hand_value_and_asymmetry():
    p, q = [[0.5, 0.5]], [[0.9, 0.1]]
    assert MF.kl_divergence(p, q) == pytest.approx(math.log(5 / 3), abs=1e-12)
    assert MF.kl_divergence(q, p) == pytest.approx(0.9 * math.log(1.8) + 0.1 * math.log(0.2), abs=1e-12)


def test_kl_divergence_zero_for_identical_inputs_with_zero_entries():
    p = [[1.0, 0.0, 0.0], [0.2, 0.0, 0.8]]
    assert MF.kl_divergence(p, p) == 0.0


def test_kl_divergence_infinite_when_q_zero_where_p_positive_but_finite_when_p_zero():
    assert MF.kl_divergence([[0.5, 0.5]], [[1.0, 0.0]]) == math.inf
    assert MF.kl_divergence([[1.0, 0.0]], [[0.5, 0.5]]) == pytest.approx(LN2, abs=1e-12)


def test_kl_divergence_averages_over_rows():
    p = [[0.5, 0.5], [0.5, 0.5]]
    q = [[0.9, 0.1], [0.5, 0.5]]
    assert MF.kl_divergence(p, q) == pytest.approx(0.5 * math.log(5 / 3), abs=1e-12)


def test_js_divergence_hand_values():
    assert MF.js_divergence([[1.0, 0.0]], [[0.0, 1.0]]) == pytest.approx(LN2, abs=1e-12)
    # p = (1, 0), q = (1/2, 1/2): m = (3/4, 1/4); JS = 1/2 ln(4/3) + 1/2 * 1/2 ln(4/3)
    assert MF.js_divergence([[1.0, 0.0]], [[0.5, 0.5]]) == pytest.approx(0.75 * math.log(4 / 3), abs=1e-12)


def test_js_divergence_is_symmetric_zero_on_identical_and_at_most_ln2():
    rng = np.random.default_rng(2)
    p, q = rng.dirichlet(np.ones(4), 30), rng.dirichlet(np.ones(4), 30)
    assert MF.js_divergence(p, q) == pytest.approx(MF.js_divergence(q, p), abs=1e-12)
    assert MF.js_divergence(p, p) == pytest.approx(0.0, abs=1e-15)
    assert 0.0 < MF.js_divergence(p, q) <= LN2


def test_activation_distance_hand_value_and_mean_over_rows():
    p = [[1.0, 0.0], [0.5, 0.5]]
    q = [[0.0, 1.0], [0.5, 0.5]]
    assert MF.activation_distance(p, q) == pytest.approx(math.sqrt(2) / 2, abs=1e-12)
    assert MF.activation_distance(p[:1], q[:1]) == pytest.approx(math.sqrt(2), abs=1e-12)


@pytest.mark.parametrize("fn", [MF.kl_divergence, MF.js_divergence, MF.activation_distance])
def test_divergences_reject_shape_mismatch(fn):
    with pytest.raises(InvalidConfigError, match=r"same shape; got \(1, 2\) and \(1, 3\)"):
        fn([[0.5, 0.5]], [[0.2, 0.3, 0.5]])


@pytest.mark.parametrize("fn", [MF.kl_divergence, MF.js_divergence, MF.activation_distance])
def test_divergences_reject_non_probability_rows(fn):
    with pytest.raises(InvalidConfigError, match="rows of 'q' must be probability vectors"):
        fn([[0.5, 0.5]], [[3.0, -1.0 + 0.5]])


@pytest.mark.parametrize("fn", [MF.kl_divergence, MF.js_divergence, MF.activation_distance])
def test_divergences_of_empty_inputs_are_nan(fn):
    assert math.isnan(fn(np.zeros((0, 3)), np.zeros((0, 3))))


# ====================================================================== weight_distance
class _LinBN(nn.Module):
    def __init__(self, in_features: int = 3) -> None:
        super().__init__()
        self.lin = nn.Linear(in_features, 2)
        self.bn = nn.BatchNorm1d(2)


def _set(model: _LinBN, w: list[list[float]], b: list[float], gamma: list[float], beta: list[float]) -> _LinBN:
    with torch.no_grad():
        model.lin.weight.copy_(torch.tensor(w))
        model.lin.bias.copy_(torch.tensor(b))
        model.bn.weight.copy_(torch.tensor(gamma))
        model.bn.bias.copy_(torch.tensor(beta))
    return model


def test_weight_distance_hand_value_over_parameters_excluding_batchnorm_buffers():
    a = _set(_LinBN(), [[1, 2, 3], [4, 5, 6]], [0, 0], [1, 1], [0, 0])
    b = _set(_LinBN(), [[1, 2, 3], [4, 5, 8]], [1, 0], [1, 3], [0, 0])
    # very different running statistics and batch counters: buffers must not count
    a.bn.running_mean.fill_(100.0)
    a.bn.running_var.fill_(50.0)
    a.bn.num_batches_tracked.fill_(7)
    expected = math.sqrt(2.0**2 + 1.0**2 + 2.0**2)  # weight, bias, BN gamma
    assert MF.weight_distance(a, b) == pytest.approx(expected, abs=1e-12)
    assert MF.weight_distance(b, a) == pytest.approx(expected, abs=1e-12)


def test_weight_distance_equals_norm_of_flattened_parameter_difference():
    torch.manual_seed(0)
    a, b = _LinBN(), _LinBN()
    with torch.no_grad():
        b.bn.weight.mul_(0.5)
        b.bn.bias.add_(0.25)
    pairs = [(p.detach().double(), q.detach().double()) for p, q in zip(a.parameters(), b.parameters(), strict=False)]
    expected = math.sqrt(sum(float(((p - q) ** 2).sum()) for p, q in pairs))
    flat = torch.cat(
        [(p.detach().double() - q.detach().double()).flatten() for p, q in zip(a.parameters(), b.parameters(), strict=False)]
    )
    assert MF.weight_distance(a, b) == pytest.approx(expected, rel=1e-12)
    assert MF.weight_distance(a, b) == pytest.approx(float(torch.linalg.vector_norm(flat)), rel=1e-12)


def test_weight_distance_is_zero_for_copies_differing_only_in_buffers():
    a = _LinBN()
    b = copy.deepcopy(a)
    b.bn.running_mean.fill_(-3.0)
    b.bn.running_var.fill_(9.0)
    assert MF.weight_distance(a, b) == 0.0


def test_weight_distance_on_two_plain_linear_models_by_hand():
    a, b = nn.Linear(2, 1), nn.Linear(2, 1)
    with torch.no_grad():
        a.weight.copy_(torch.tensor([[0.0, 0.0]]))
        a.bias.fill_(0.0)
        b.weight.copy_(torch.tensor([[3.0, 0.0]]))
        b.bias.fill_(4.0)
    assert MF.weight_distance(a, b) == pytest.approx(5.0, abs=1e-12)


def test_weight_distance_rejects_models_with_different_parameter_names():
    with pytest.raises(IncompatibleModelError, match="their names differ"):
        MF.weight_distance(nn.Linear(3, 2), _LinBN())


def test_weight_distance_rejects_models_with_different_parameter_shapes():
    with pytest.raises(IncompatibleModelError, match=r"parameter 'lin.weight' has shapes \(2, 3\) and \(2, 4\)"):
        MF.weight_distance(_LinBN(3), _LinBN(4))


# ====================================================================== accuracy
def test_accuracy_hand_values_on_labels():
    assert MF.accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == pytest.approx(0.75, abs=1e-12)
    assert MF.accuracy([1, 1], [1, 1]) == 1.0
    assert MF.accuracy([0, 0], [1, 1]) == 0.0


def test_accuracy_takes_argmax_of_two_dimensional_scores():
    assert MF.accuracy([[0.1, 0.9], [0.8, 0.2]], [1, 1]) == pytest.approx(0.5, abs=1e-12)
    logits = torch.tensor([[-1.0, 2.0, 0.5], [3.0, -2.0, 0.0], [0.0, 0.1, 0.2]])
    assert MF.accuracy(logits, torch.tensor([1, 0, 1])) == pytest.approx(2 / 3, abs=1e-12)


def test_accuracy_of_empty_set_is_nan():
    assert math.isnan(MF.accuracy([], []))
    assert math.isnan(MF.accuracy(np.zeros((0, 4)), np.zeros(0)))


def test_accuracy_rejects_length_mismatch():
    with pytest.raises(InvalidConfigError, match="accuracy got 3 predictions for 2 labels"):
        MF.accuracy([0, 1, 1], [0, 1])
    with pytest.raises(InvalidConfigError, match="accuracy got 1 predictions for 2 labels"):
        MF.accuracy([[0.2, 0.8]], [0, 1])
