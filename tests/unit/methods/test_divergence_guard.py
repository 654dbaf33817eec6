"""Issue 13 item 4: ``UnlearningMethod.unlearn`` stops any method whose weights blow up, loop or no loop."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import pytest
import torch

import obliviate as ob
from obliviate.errors import DivergenceError, IncompatibleModelError, UncheckedTrainingSetWarning
from obliviate.methods import UnlearningMethod
from obliviate.training import DIVERGENCE_NORM_RATIO, parameter_norm


@dataclass(frozen=True, kw_only=True)
class Scale(UnlearningMethod):
    """A closed-form 'method' (no training loop) that multiplies every weight by ``factor``."""

    factor: float = 2.0

    def _unlearn(self, model, scenario, ctx):
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(self.factor)
        return model


def _unlearn(method, model, scenario):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UncheckedTrainingSetWarning)
        return method.unlearn(model, scenario, device="cpu")


def test_a_closed_form_blow_up_is_caught_after_the_method(trained_cnn, class3):
    start = parameter_norm(trained_cnn.parameters())
    out = _unlearn(Scale(factor=0.5 * DIVERGENCE_NORM_RATIO), trained_cnn, class3)  # below the limit: returned
    assert parameter_norm(out.model.parameters()) == pytest.approx(0.5 * DIVERGENCE_NORM_RATIO * start, rel=1e-5)
    with pytest.raises(DivergenceError, match=r"'Scale' diverged: The weights' norm grew 2e\+03 times .*change its hyper"):
        _unlearn(Scale(factor=2 * DIVERGENCE_NORM_RATIO), trained_cnn, class3)
    with pytest.raises(DivergenceError, match=r"'Scale' diverged: The weights became non-finite"):
        _unlearn(Scale(factor=float("inf")), trained_cnn, class3)


def test_a_training_method_names_itself_and_its_learning_rate(trained_cnn, class3):
    with pytest.raises(DivergenceError, match=r"^Method 'finetune' diverged: .*norm grew .*lower the learning rate") as info:
        _unlearn(ob.methods.make_method("finetune", optimizer="adam", lr=1e3, epochs=1), trained_cnn, class3)
    assert isinstance(info.value.__cause__, DivergenceError) and info.value.exit_code == 1


def test_a_model_that_is_already_non_finite_is_bad_input_not_divergence(trained_cnn, class3):
    import copy

    broken = copy.deepcopy(trained_cnn)
    with torch.no_grad():
        next(broken.parameters()).view(-1)[0] = float("nan")
    with pytest.raises(IncompatibleModelError, match="NaN or inf weights"):
        _unlearn(Scale(factor=1.0), broken, class3)
