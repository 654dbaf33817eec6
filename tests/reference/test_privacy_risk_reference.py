"""The privacy risk score against the reference algorithm, re-implemented here from Song & Mittal's
description (per class: shared bins over members and non-members, log-spaced by default, each set's
histogram normalised, bin j holds bins[j] <= s < bins[j+1] clipped to the end bins, and a bin
empty on both sides takes the nearest non-empty bin, looking below first), with plain loops.
"""

import numpy as np
import pytest

from obliviate.metrics.functional import legacy_modified_entropy, mia_feature, privacy_risk_score, risk_calibration


def reference_risk(tr_values, te_values, tr_labels, te_labels, values, labels, num_bins=5, log_bins=True):
    out = []
    for v, c in zip(values, labels, strict=True):
        tr = np.array(tr_values[tr_labels == c], dtype=float)
        te = np.array(te_values[te_labels == c], dtype=float)
        if log_bins:
            tr[tr <= 1e-10] = 1e-10
            te[te <= 1e-10] = 1e-10
        both = np.concatenate([tr, te])
        lo, hi = both.min(), both.max()
        bins = np.logspace(np.log10(lo), np.log10(hi), num_bins + 1) if log_bins else np.linspace(lo, hi, num_bins + 1)
        h1 = np.histogram(tr, bins=bins, weights=np.ones(len(tr)) / len(tr))[0]
        h2 = np.histogram(te, bins=bins, weights=np.ones(len(te)) / len(te))[0]
        if v >= bins[-1]:
            j = len(bins) - 2
        elif v <= bins[0]:
            j = 0
        else:
            j = int(np.argwhere(bins <= v)[-1][0])
        if h1[j] + h2[j] != 0:
            out.append(h1[j] / (h1[j] + h2[j]))
            continue
        for step in range(1, len(h1)):
            if j - step >= 0 and h1[j - step] + h2[j - step] != 0:
                out.append(h1[j - step] / (h1[j - step] + h2[j - step]))
                break
            if j + step < len(h1) and h1[j + step] + h2[j + step] != 0:
                out.append(h1[j + step] / (h1[j + step] + h2[j + step]))
                break
    return np.array(out)


def legacy_reference(tr_values, te_values, tr_labels, te_labels, values, labels, n_bins=10):
    """The unrolling-SGD code's scheme: separate linear grids, first interior edge above, no fallback."""

    def grid(scores):
        lo, hi = scores.min(), scores.max()
        divisions = [lo + i * (hi - lo) / n_bins for i in range(1, n_bins)]
        probs = np.zeros(n_bins)
        for s in scores:
            below = [k for k, d in enumerate(divisions) if s < d]
            probs[below[0] if below else -1] += 1 / len(scores)
        return divisions, probs

    out = []
    for v, c in zip(values, labels, strict=True):
        d1, p1 = grid(tr_values[tr_labels == c])
        d2, p2 = grid(te_values[te_labels == c])
        i1 = next((k for k, d in enumerate(d1) if v < d), -1)
        i2 = next((k for k, d in enumerate(d2) if v < d), -1)
        total = p1[i1] + p2[i2]
        out.append(p1[i1] / total if total else np.nan)
    return np.array(out)


def _synthetic(seed, n_classes=4):
    rng = np.random.default_rng(seed)
    tr_y, te_y, y = rng.integers(0, n_classes, 300), rng.integers(0, n_classes, 250), rng.integers(0, n_classes, 200)
    tr = rng.lognormal(-3, 1.5, 300)  # members: small modified entropy
    te = rng.lognormal(-1, 1.0, 250)
    tr[:5] = 0.0  # exact zeros hit the 1e-10 clamp
    v = np.concatenate([rng.lognormal(-2, 2, 190), [0.0, 1e-12, 1e3, 50.0, 1e-4, 0.3, 0.3, 2.0, 1e-6, 5.0]])
    return tr, te, tr_y, te_y, v, y


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("log_bins, num_bins", [(True, 5), (True, 12), (False, 5), (False, 30)])
def test_matches_the_reference_algorithm_on_synthetic_scores(seed, log_bins, num_bins):
    tr, te, tr_y, te_y, v, y = _synthetic(seed)
    want = reference_risk(tr, te, tr_y, te_y, v, y, num_bins=num_bins, log_bins=log_bins)
    got = privacy_risk_score(tr, tr_y, te, te_y, v, y, num_bins=num_bins, log_bins=log_bins)
    np.testing.assert_array_equal(got, want)


def test_an_empty_bin_takes_the_nearest_non_empty_one_looking_below_first():
    # one class; members at 1 and 16, non-members at 2 and 16: log bins 1, 2, 4, 8, 16 (4 bins)
    tr, te = np.array([1.0, 16.0]), np.array([2.0, 16.0])
    zeros = np.zeros(2, int)
    risk = privacy_risk_score(tr, zeros, te, zeros, [1.5, 2.5, 5.0, 9.0, 16.0], np.zeros(5, int), num_bins=4)
    # bins: [1,2) m=.5 n=0 -> 1; [2,4) m=0 n=.5 -> 0; [4,8) empty: nearest below [2,4) -> 0; [8,16] m=.5 n=.5 -> .5
    np.testing.assert_allclose(risk, [1.0, 0.0, 0.0, 0.5, 0.5])
    # linear bins 0..4: bin 1 is empty on both sides, bins 0 (risk 0.4) and 2 (risk 4/7) are as near
    tie = privacy_risk_score([0.2, 2.5, 4.0], [0] * 3, [0.0, 0.2, 2.5, 3.9], [0] * 4, [1.5], [0], num_bins=4, log_bins=False)
    np.testing.assert_allclose(tie, [0.4])
    np.testing.assert_allclose(
        tie,
        reference_risk(
            *map(np.array, ([0.2, 2.5, 4.0], [0.0, 0.2, 2.5, 3.9], [0] * 3, [0] * 4, [1.5], [0])), num_bins=4, log_bins=False
        ),
    )


def test_well_separated_members_score_high_and_non_members_low():
    rng = np.random.default_rng(0)
    tr, te = rng.lognormal(-4, 0.5, 500), rng.lognormal(0, 0.5, 500)
    labels = rng.integers(0, 3, 500)
    members = privacy_risk_score(tr, labels, te, labels, rng.lognormal(-4, 0.5, 200), labels[:200])
    others = privacy_risk_score(tr, labels, te, labels, rng.lognormal(0, 0.5, 200), labels[:200])
    assert members.mean() > 0.9 and others.mean() < 0.1
    table = risk_calibration(members, others)
    assert table["member_counts"].sum() == 200 and table["nonmember_counts"].sum() == 200
    assert table["fraction"][-1] > 0.9 and table["fraction"][0] < 0.1


def test_a_class_without_shadow_scores_gets_nan():
    risk = privacy_risk_score([0.1, 0.2], [0, 0], [1.0, 2.0], [0, 0], [0.1, 0.1], [0, 1], num_classes=2)
    assert risk[0] == 1.0 and np.isnan(risk[1])


@pytest.mark.parametrize("seed", [0, 3])
def test_legacy_mode_reproduces_the_unrolling_sgd_code(seed):
    rng = np.random.default_rng(seed)
    logits_tr, logits_te = rng.normal(0, 3, (120, 3)), rng.normal(0, 1, (100, 3))
    tr_y, te_y = rng.integers(0, 3, 120), rng.integers(0, 3, 100)
    target, t_y = rng.normal(0, 2, (60, 3)), rng.integers(0, 3, 60)
    # the code's Mentr on raw logits (outside [0, 1] the logs hit the 1e-30 clamp)
    s_tr, s_te, s = (legacy_modified_entropy(o, lab) for o, lab in ((logits_tr, tr_y), (logits_te, te_y), (target, t_y)))
    want = legacy_reference(s_tr, s_te, tr_y, te_y, s, t_y)
    got = privacy_risk_score(s_tr, tr_y, s_te, te_y, s, t_y, legacy_unrolling_sgd=True)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[~np.isnan(got)], want[~np.isnan(want)], rtol=1e-12)
    # on softmax probabilities the code's Mentr is the published modified entropy
    p = np.exp(target) / np.exp(target).sum(1, keepdims=True)
    np.testing.assert_allclose(legacy_modified_entropy(p, t_y), mia_feature(p, t_y, "modified_entropy"), rtol=1e-12)
