"""Fisher diagonals and influence gradients are computed once per model and data (issue 14 item 4)."""

from __future__ import annotations

import pytest
import torch

import obliviate as ob
from obliviate.methods._cache import IMPORTANCE_CACHE, clear_importance_cache
from obliviate.testing import toy_model, toy_scenario

FISHER = {"fisher": "expected", "batch_size": 64, "max_samples": 128}
IU = {"num_samples": 64, "batch_size": 64}


def weights(result: ob.UnlearningResult) -> list[torch.Tensor]:
    return [t.clone() for t in result.model.state_dict().values()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.fixture(autouse=True)
def cold() -> None:
    clear_importance_cache()
    yield
    clear_importance_cache()


@pytest.mark.parametrize(
    ("method", "fixed", "key", "first", "second"),
    [
        ("fisher", FISHER, "fisher_cached", {"alpha": 1e-6}, {"alpha": 1e-7}),
        ("iu", IU, "iu_gradients_cached", {"alpha": 1.0}, {"alpha": 0.5, "relative_damping": 30.0}),
    ],
)
def test_a_second_run_with_other_hyperparameters_reuses_the_computation(method, fixed, key, first, second) -> None:
    model, sc = toy_model(), toy_scenario()
    a = ob.unlearn(model, sc, method, device="cpu", progress=False, **fixed, **first)
    b = ob.unlearn(model, sc, method, device="cpu", progress=False, **fixed, **second)
    assert a.diagnostics[key] == 0.0 and b.diagnostics[key] == 1.0
    assert b.diagnostics["passes"] < a.diagnostics["passes"]  # the hit did not back-propagate the data again
    flag = "cache_fisher" if method == "fisher" else "cache_gradients"
    cold_run = ob.unlearn(model, sc, method, device="cpu", progress=False, **fixed, **second, **{flag: False})
    assert key not in cold_run.diagnostics
    assert same(weights(b), weights(cold_run))  # the cached values give exactly the cold result


def test_what_changes_the_value_misses() -> None:
    model, sc = toy_model(), toy_scenario()
    ob.unlearn(model, sc, "iu", device="cpu", progress=False, **IU)
    assert (
        ob.unlearn(model, sc, "iu", device="cpu", progress=False, **{**IU, "num_samples": 32}).diagnostics["iu_gradients_cached"]
        == 0.0
    )  # another sample of retain gradients
    assert ob.unlearn(model, sc, "iu", device="cpu", progress=False, seed=1, **IU).diagnostics["iu_gradients_cached"] == 0.0
    changed = toy_model()
    with torch.no_grad():
        next(changed.parameters()).add_(1e-3)
    assert ob.unlearn(changed, sc, "iu", device="cpu", progress=False, **IU).diagnostics["iu_gradients_cached"] == 0.0
    other = toy_scenario(seed=1)
    assert ob.unlearn(model, other, "fisher", device="cpu", progress=False, **FISHER).diagnostics["fisher_cached"] == 0.0
    masks = {n: torch.rand(p.shape, generator=torch.Generator().manual_seed(0)) > 0.5 for n, p in model.named_parameters()}
    hit = ob.unlearn(model, sc, "iu", device="cpu", progress=False, masks=masks, **IU)
    assert hit.diagnostics["iu_gradients_cached"] == 0.0  # masked gradients differ


def test_clearing_makes_the_next_run_cold() -> None:
    model, sc = toy_model(), toy_scenario()
    ob.unlearn(model, sc, "fisher", device="cpu", progress=False, **FISHER)
    assert IMPORTANCE_CACHE.info()["entries"] == 1
    clear_importance_cache()
    assert ob.unlearn(model, sc, "fisher", device="cpu", progress=False, **FISHER).diagnostics["fisher_cached"] == 0.0


def test_tune_trials_share_the_gradients() -> None:
    pytest.importorskip("optuna")
    model, sc = toy_model(), toy_scenario()
    ob.tune(model, sc, "iu", n_trials=4, progress=False, device="cpu", **IU)
    info = IMPORTANCE_CACHE.info()
    assert info["misses"] == 1 and info["hits"] >= 3
