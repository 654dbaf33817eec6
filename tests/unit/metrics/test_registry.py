"""Metrics are registered classes: declarations drive evaluate, and each split is predicted once."""

from __future__ import annotations

import pytest

import obliviate as ob
import obliviate.metrics.context as context_module
from obliviate.errors import InvalidConfigError, MissingDataError
from obliviate.metrics import Metric, register_metric
from obliviate.metrics import functional as MF
from obliviate.testing import toy_scenario


@pytest.fixture(scope="module")
def run():
    sc = toy_scenario("classwise")
    model = ob.build_model("mlp", sc.dataset, seed=0, hidden=(16,))
    return sc, ob.train(model, sc.train, epochs=2, lr=0.1, batch_size=32, seed=0, device="cpu", progress=False)


def test_registry_holds_metric_classes_with_the_declared_attributes():
    for name, cls in ob.METRICS.items():
        assert issubclass(cls, Metric) and cls.name == name
        assert cls.needs_reference == ("reference" in cls.requires)
    assert ob.METRICS.get("test_forget_acc").requires == ("test_forget",)
    assert ob.METRICS.get("verification_error").companions == ("verification_error_noop",)
    assert ob.METRICS.get("weight_distance").fraction is False and ob.METRICS.get("forget_acc").goal == "oracle"


def test_metric_info_is_a_deprecated_alias_of_metric():
    import obliviate.metrics as M

    with pytest.warns(DeprecationWarning, match="MetricInfo"):
        assert M.MetricInfo is Metric


def test_a_new_metric_is_one_class_and_evaluate_computes_it_by_name_only_when_opt_in(run):
    sc, res = run

    @register_metric("forget_error_test")
    class ForgetError(Metric):
        description = "1 - accuracy on D_f"
        goal = "lower"
        requires = ("forget",)
        opt_in = True

        def compute(self, ctx):
            return 1.0 - MF.accuracy(ctx.forget.probs, ctx.forget.labels)

    try:
        ev = ob.evaluate(res, sc, metrics=["forget_acc", "forget_error_test"])
        assert ev["forget_error_test"] == pytest.approx(1.0 - ev["forget_acc"], abs=1e-15)
        assert "forget_error_test" not in ob.evaluate(res, sc, metrics=None).metrics
    finally:
        ob.METRICS.unregister("forget_error_test")
    assert "forget_error_test" not in ob.METRICS


def test_register_metric_rejects_unknown_inputs_and_goals_and_non_metrics():
    with pytest.raises(InvalidConfigError, match="unknown inputs"):
        register_metric("bad_inputs")(type("Bad", (Metric,), {"requires": ("logits",)}))
    with pytest.raises(InvalidConfigError, match="goal"):
        register_metric("bad_goal")(type("Bad", (Metric,), {"goal": "best"}))
    with pytest.raises(InvalidConfigError, match="Metric subclasses"):
        register_metric("bad_class")(object)  # type: ignore[arg-type]
    assert not {"bad_inputs", "bad_goal", "bad_class"} & set(ob.METRICS.names())


def test_each_split_is_predicted_once_however_many_metrics_read_it(run, monkeypatch):
    sc, res = run
    calls: list[int] = []
    real = context_module.predict

    def counting(model, data, **kwargs):
        calls.append(len(data))
        return real(model, data, **kwargs)

    monkeypatch.setattr(context_module, "predict", counting)
    ev = ob.evaluate(res, sc, metrics=None)
    # forget, retain, test_retain, val, test_forget, plus zrf's random model on D_f
    assert sorted(calls) == sorted(
        [len(sc.forget), len(sc.retain), len(sc.test_retain), len(sc.val), len(sc.test_forget), len(sc.forget)]
    )
    assert len(ev.metrics) > 10
    calls.clear()
    ob.evaluate(res, sc, metrics=["retain_acc"])
    assert calls == [len(sc.retain), len(sc.forget)]  # D_f is always predicted: Evaluation.forget_probs


def test_companions_and_missing_inputs_come_from_the_declarations(run):
    sc, res = run
    from obliviate.evaluation import _resolve_metrics

    assert _resolve_metrics(["verification_error"], False, sc, recording=True) == [
        "verification_error",
        "verification_error_noop",
    ]
    with pytest.raises(MissingDataError, match="'verification_error' needs the recording"):
        _resolve_metrics(["forget_acc", "verification_error"], True, sc)
    rnd = toy_scenario("random")
    assert "test_forget_acc" not in _resolve_metrics(None, False, rnd)
    with pytest.raises(MissingDataError, match="no forgotten class"):
        _resolve_metrics(["test_forget_acc"], False, rnd)
