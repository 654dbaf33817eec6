"""Text classifiers: token-id datasets, a tiny BERT from a config (no download), a frozen encoder
with a linear head; the unrolling methods and metrics work on both.
"""

import warnings

import numpy as np
import pytest
import torch

import obliviate as ob
from obliviate.data import ArrayDataset
from obliviate.errors import IncompatibleModelError, InvalidConfigError
from obliviate.hessian import top_eigenvalue
from obliviate.models.text import encode_dataset, token_dataset

pytest.importorskip("transformers")

PLAIN = dict(momentum=0.0, weight_decay=0.0, schedule="constant", device="cpu", progress=False)


def _tokens(n, seed):
    """Sequences of 8 tokens; class c holds the marker token 10 + c among noise tokens 20-29."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    ids = rng.integers(20, 30, (n, 8))
    ids[np.arange(n), rng.integers(0, 8, n)] = 10 + y
    ids[:, 0] = 1  # a [CLS]-like first token
    return ids, y


@pytest.fixture(scope="module")
def text():
    (xtr, ytr), (xte, yte) = _tokens(160, 0), _tokens(60, 1)
    return token_dataset(xtr, ytr, xte, yte, name="markers")


def test_integer_inputs_stay_token_ids_and_images_stay_floats(text):
    x, _ = text.train[3]
    assert x.dtype == torch.int64 and text.input_shape == (8,)
    images = ArrayDataset(torch.arange(12, dtype=torch.uint8).view(3, 4), [0, 1, 0])
    assert images[2][0].dtype == torch.float32 and images[2][0].tolist() == [8.0, 9.0, 10.0, 11.0]
    scaled = ArrayDataset(torch.arange(12).view(3, 4), [0, 1, 0], scale=0.5)
    assert scaled[1][0].dtype == torch.float32 and scaled[1][0].tolist() == [2.0, 2.5, 3.0, 3.5]
    assert ArrayDataset(torch.arange(12).view(3, 4), [0, 1, 0]).fetch(np.array([2]), torch.device("cpu")).dtype == torch.int64
    with pytest.raises(InvalidConfigError, match="integer token ids"):
        token_dataset(np.zeros((2, 3)), [0, 1], np.zeros((1, 3), int), [0])
    with pytest.raises(InvalidConfigError, match="same length"):
        token_dataset(np.zeros((2, 3), int), [0, 1], np.zeros((1, 4), int), [0])


@pytest.fixture(scope="module")
def bert_run(text):
    sc = ob.Scenario.from_indices(text, np.arange(0, 160, 16), val_fraction=0.0)
    model = ob.build_model("bert", text, seed=0, vocab_size=30, hidden=16, layers=1, heads=2)
    kw = dict(
        epochs=10, lr=1e-2, batch_size=32, optimizer="adam", weight_decay=0.0, schedule="constant", device="cpu", progress=False
    )
    res = ob.train(model, sc.train, record=True, record_updates=True, **kw)
    return sc, model, res


def test_a_tiny_bert_trains_and_is_evaluated(text, bert_run):
    sc, _, res = bert_run
    assert type(res.model).__name__ == "BertForSequenceClassification"
    assert ob.training.accuracy(res.model, sc.test) > 0.7  # chance: 1/3
    ev = ob.evaluate(
        res.model, sc, metrics=["forget_acc", "test_acc", "mia_efficacy", "verification_error"], recording=res.recording
    )
    assert ev["verification_error"] == pytest.approx(ev["verification_error_noop"]) and ev["verification_error"] > 0
    with pytest.raises(IncompatibleModelError, match="token-id sequences"):
        ob.build_model("bert", input_shape=(1, 8, 8), num_classes=3)


def test_unrolling_methods_and_the_hessian_work_on_bert(bert_run):
    sc, model, res = bert_run
    rec = res.recording
    amnesiac = ob.unlearn(res.model, sc, "amnesiac", recording=rec, device="cpu")
    steps = np.flatnonzero(rec.steps_holding(rec.positions(sc.forget_idx)))
    torch.testing.assert_close(rec.vector(amnesiac.model), rec.vector(res.model) - rec.update_sum(steps), atol=1e-5, rtol=0)
    with pytest.warns(ob.errors.UnlearningWarning, match="plain SGD"):  # recorded with Adam
        sgu = ob.unlearn(res.model, sc, "sgu", gradient_at="final", recording=rec, device="cpu")
    assert ob.metrics.functional.weight_distance(sgu.model, res.model) > 0
    x, y = next(iter(ob.data.iterate_batches(sc.train, 32, device=torch.device("cpu"))))
    spec = top_eigenvalue(res.model, x, y, max_iter=30)
    assert np.isfinite(spec.eigenvalue) and spec.sigma > 0
    assert res.model.training is False
    retrained = ob.unlearn(res.model, sc, "retrain", device="cpu", **res.config.to_dict())  # BERT re-initialises
    assert ob.metrics.functional.weight_distance(retrained.model, model) > 0


def test_a_frozen_encoder_with_a_linear_head_is_the_papers_bert_setting(text, bert_run):
    _, _, res = bert_run
    features = encode_dataset(res.model.bert, text, pooling="cls")
    assert features.input_shape == (16,) and features.train[0][0].dtype == torch.float32
    assert np.array_equal(features.train_targets, text.train_targets)
    pooled = encode_dataset(res.model.bert, text, pooling="pooler")
    assert pooled.input_shape == (16,)
    # the linear head (768 -> 2 in the paper) trained with plain SGD, one step on B* alone
    forget = np.arange(16)
    sc = ob.Scenario.from_indices(features, forget, val_fraction=0.0)
    head = ob.build_model("mlp", features, seed=0, hidden=())
    assert sum(p.numel() for p in head.parameters()) == 16 * 3 + 3
    one_step = ob.train(head, ob.data.Subset(features.train, forget), epochs=1, lr=0.5, batch_size=16, record=True, **PLAIN)
    out = ob.unlearn(one_step.model, sc, "sgu", recording=one_step.recording, device="cpu")
    assert ob.metrics.functional.weight_distance(out.model, head) < 1e-6  # sgu == the naive retrain == w_0
    with pytest.raises(InvalidConfigError, match="pooling"):
        encode_dataset(res.model.bert, text, pooling="max")


@pytest.mark.parametrize("name", ["finetune", "random_label", "ssd", "retrain", "sgu", "amnesiac"])
def test_weight_space_methods_run_on_a_hugging_face_classifier(bert_run, name):
    sc, _, res = bert_run
    before = {k: v.clone() for k, v in res.model.state_dict().items()}
    preset = "digits" if "digits" in ob.get_method(name).presets else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ob.errors.UnlearningWarning)  # sgu on an Adam run
        # SSD's digits alpha may select nothing on this tiny BERT (then nothing moves): a lower alpha selects some weights
        extra = {"alpha": 1.0} if name == "ssd" else {}
        out = ob.unlearn(res.model, sc, name, preset=preset, recording=res.recording, device="cpu", **extra)
    assert all(torch.isfinite(p).all() for p in out.model.parameters())
    assert all(torch.equal(before[k], v) for k, v in res.model.state_dict().items())
    assert ob.metrics.functional.weight_distance(out.model, res.model) > 0
