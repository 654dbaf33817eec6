"""``ob.evaluate``: every quality metric of an unlearned model, computed from one pass of outputs.

The model is run once (eval mode, no augmentation) over the forget, retain, validation and test
splits; accuracies, membership-inference attacks and, given the retrained oracle, the gaps and
distances to it are computed from those outputs by :mod:`obliviate.metrics.functional`.
Definitions are the project's metric spec. In class-wise and sub-class scenarios the test set
of ``test_acc`` and the non-member set of the attacks is ``test_retain`` (the test split
without the forgotten (sub-)class).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ._utils import model_device, resolve_device
from ._validation import check_interval
from .data.scenario import Scenario
from .errors import InvalidConfigError, MissingDataError, TrainingSetMismatchError
from .methods.base import UnlearningResult
from .metrics import METRICS
from .metrics import functional as MF
from .metrics.functional.mia import FEATURES
from .runs import Run, check_training_set, resolve_model
from .training import TrainResult, predict

__all__ = ["Evaluation", "evaluate", "GAP_METRICS"]

GAP_METRICS: tuple[str, ...] = ("forget_acc", "retain_acc", "test_acc", "mia_efficacy")


@dataclass
class Evaluation:
    """Metrics of one model on one scenario.

    Attributes:
        metrics: Metric name -> value (fractions in [0, 1] or raw numbers; NaN when a split is
            empty).
        scenario: The scenario's name.
        model: The evaluated model (not copied), kept so this evaluation can serve as the
            ``reference`` of others.
    """

    metrics: dict[str, float]
    scenario: str
    model: nn.Module = field(repr=False)
    forget_probs: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0)))

    def __getitem__(self, name: str) -> float:
        return self.metrics[name]

    def to_dict(self) -> dict[str, float | None]:
        """Metrics as JSON-ready values (NaN becomes None)."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in self.metrics.items()}


def _probs(model: nn.Module, data: Dataset | None, batch_size: int, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    if data is None or len(data) == 0:  # type: ignore[arg-type]
        return np.zeros((0, 0)), np.zeros(0, np.int64)
    logits, labels = predict(model, data, batch_size=batch_size, device=device)
    return torch.softmax(logits.double(), dim=1).numpy(), labels.numpy()


def _zrf(
    net: nn.Module, scenario: Scenario, p_f: np.ndarray, seed: int, batch_size: int, device: torch.device, required: bool
) -> float:
    """ZRF against a copy of ``net`` re-initialised from ``seed`` (eval mode); NaN when the
    architecture cannot be re-initialised and the metric was not asked for by name.
    """
    from .errors import IncompatibleModelError
    from .models.zoo import reinitialize

    random_model = copy.deepcopy(net)
    try:
        reinitialize(random_model, seed)
    except IncompatibleModelError:
        if required:
            raise
        return float("nan")
    p_rand, _ = _probs(random_model, scenario.forget, batch_size, device)
    return MF.zrf(p_f, p_rand)


def _acc(probs: np.ndarray, labels: np.ndarray) -> float:
    return MF.accuracy(probs, labels) if len(labels) else float("nan")


def _resolve_metrics(names: Iterable[str] | None, has_reference: bool, scenario: Scenario) -> list[str]:
    has_test_forget = scenario.test_forget is not None
    if names is None:
        return [
            n
            for n in METRICS.names()
            if (has_reference or not METRICS.get(n).needs_reference)
            and (has_test_forget or n != "test_forget_acc")
            and not getattr(METRICS.get(n), "opt_in", False)
        ]
    if isinstance(names, str):
        names = [names]
    chosen = []
    for n in names:
        info = METRICS.get(n)
        if info.needs_reference and not has_reference:
            raise MissingDataError(f"Metric {n!r} needs the retrained model: pass reference=... to evaluate.")
        if n == "test_forget_acc" and not has_test_forget:
            raise MissingDataError(
                f"Metric 'test_forget_acc' needs a class-wise or sub-class scenario; {scenario.name!r} has no forgotten class."
            )
        chosen.append(n)
    if "verification_error" in chosen and "verification_error_noop" not in chosen:
        chosen.append("verification_error_noop")  # the no-op baseline is always reported beside it
    return chosen


def evaluate(
    model: nn.Module | TrainResult | UnlearningResult | str | os.PathLike[str],
    scenario: Scenario,
    reference: nn.Module | TrainResult | UnlearningResult | str | os.PathLike[str] | Evaluation | None = None,
    *,
    metrics: Iterable[str] | None = None,
    batch_size: int = 512,
    device: str | torch.device | None = None,
    seed: int = 0,
    mia_max_samples: int | None = None,
    recording: Any = None,
    risk_scorer: Any = None,
) -> Evaluation:
    """Evaluate a model on a scenario, optionally against the retrained oracle.

    Args:
        model: The model to evaluate (not modified; its train/eval mode is restored). Given as
            a ``TrainResult``, an ``UnlearningResult`` or a run directory, its training set is
            checked: it must be the scenario's training set (the original model, the no-op
            baseline) or its retain set (a model unlearned on this scenario). A bare
            ``nn.Module`` is accepted with an :class:`~obliviate.errors.UncheckedTrainingSetWarning`.
        scenario: The scenario it was unlearned on.
        reference: The oracle (retrained) model, or an :class:`Evaluation` of it (reused
            without recomputation). Enables ``avg_gap`` and the distances. Given as a result or
            run directory, its training set must be the scenario's retain set.
        metrics: Names to compute (default: all that the given arguments allow).
        batch_size: Inference batch size.
        device: Where to run (default: the model's device).
        seed: Seed of the class-balancing subsample of the SVC attacks, and of the random
            initialisation ``zrf`` compares with.
        mia_max_samples: Cap on each side of the SVC training set (None: the spec's full
            balanced sets; set it for CIFAR-scale speed).
        recording: ``ob.train(..., record=True).recording`` of the original model, for the
            opt-in ``verification_error`` (with ``verification_error_noop`` beside it) and
            ``unlearning_error`` (:mod:`obliviate.metrics.unrolling`; the naive retrain they
            need is computed once per scenario and cached on the recording).
        risk_scorer: A :class:`~obliviate.metrics.privacy_risk.PrivacyRiskScorer` (shadow
            models) for the opt-in ``privacy_risk``.

    Returns:
        An :class:`Evaluation`.

    Raises:
        TrainingSetMismatchError: the model's (or the reference's) known training set does not
            fit the scenario.

    Example:
        >>> import obliviate as ob
        >>> ds = ob.load_dataset("digits")
        >>> sc = ob.Scenario.classwise(ds, forget_class=3, seed=0)
        >>> model = ob.train(ob.build_model("mlp", ds), sc.train, epochs=3, lr=0.05, batch_size=64, progress=False).model
        >>> ev = ob.evaluate(model, sc, metrics=["forget_acc", "retain_acc"])
        >>> sorted(ev.metrics)
        ['forget_acc', 'retain_acc']
    """
    if not isinstance(scenario, Scenario):
        raise InvalidConfigError(f"The 'scenario' argument of evaluate must be a Scenario; got {type(scenario).__name__}.")
    model = check_training_set(model, scenario, "evaluate", unlearned_ok=True)
    if reference is not None and not isinstance(reference, Evaluation):
        if not isinstance(reference, (nn.Module, TrainResult, UnlearningResult, Run, str, os.PathLike)):
            raise InvalidConfigError(
                f"The 'reference' argument of evaluate must be a model or an Evaluation; got {type(reference).__name__}."
            )
        reference, ref_set = resolve_model(reference, "evaluate")
        if ref_set is not None and ref_set != scenario.retain_set:
            raise TrainingSetMismatchError(
                f"evaluate: the reference must be trained on scenario {scenario.name!r}'s retain set, but "
                f"{ref_set.explain(scenario.retain_set)}."
            )
    return _evaluate(
        model,
        scenario,
        reference,
        metrics=metrics,
        batch_size=batch_size,
        device=device,
        seed=seed,
        mia_max_samples=mia_max_samples,
        recording=recording,
        risk_scorer=risk_scorer,
    )


def _evaluate(
    model: nn.Module,
    scenario: Scenario,
    reference: nn.Module | Evaluation | None,
    *,
    metrics: Iterable[str] | None,
    batch_size: int,
    device: str | torch.device | None,
    seed: int,
    mia_max_samples: int | None,
    recording: Any,
    risk_scorer: Any,
) -> Evaluation:
    """:func:`evaluate` on a module whose training set has been checked."""
    batch_size = check_interval("evaluate", "batch_size", batch_size, kind=int, low=1)
    seed = check_interval("evaluate", "seed", seed, kind=int, low=0)
    if mia_max_samples is not None:
        mia_max_samples = check_interval("evaluate", "mia_max_samples", mia_max_samples, kind=int, low=2)
    wanted = _resolve_metrics(metrics, reference is not None, scenario)
    if len(scenario.forget) == 0:
        raise MissingDataError(f"Scenario {scenario.name!r} has an empty forget set; there is nothing to evaluate.")

    dev = model_device(model) if device is None else resolve_device(device)
    net = model if model_device(model) == dev else copy.deepcopy(model).to(dev)

    needed = set(wanted)
    if "avg_gap" in needed:
        needed |= set(GAP_METRICS)
    out: dict[str, float] = {}
    p_f, y_f = _probs(net, scenario.forget, batch_size, dev)
    needs_attack = any(n.startswith("mia_") for n in needed)
    p_r = y_r = p_t = y_t = None
    if needs_attack or "retain_acc" in needed:
        p_r, y_r = _probs(net, scenario.retain, batch_size, dev)
    if needs_attack or "test_acc" in needed:
        p_t, y_t = _probs(net, scenario.test_retain, batch_size, dev)

    if "forget_acc" in needed:
        out["forget_acc"] = _acc(p_f, y_f)
    if "retain_acc" in needed:
        out["retain_acc"] = _acc(p_r, y_r)  # type: ignore[arg-type]
    if "test_acc" in needed:
        out["test_acc"] = _acc(p_t, y_t)  # type: ignore[arg-type]
    if "val_acc" in needed:
        out["val_acc"] = _acc(*_probs(net, scenario.val, batch_size, dev))
    if "test_forget_acc" in needed:
        out["test_forget_acc"] = _acc(*_probs(net, scenario.test_forget, batch_size, dev))
    if "zrf" in needed:
        out["zrf"] = _zrf(net, scenario, p_f, seed, batch_size, dev, required=metrics is not None)

    if needs_attack:
        if len(y_r) == 0 or len(y_t) == 0:  # type: ignore[arg-type]
            raise MissingDataError("Membership-inference metrics need non-empty retain and test sets.")
        feats = {}
        for f in FEATURES:
            if (
                any(n.endswith(f) for n in needed)
                or (f == "confidence" and "mia_efficacy" in needed)
                or (f == "entropy" and "mia_entropy_lr" in needed)
            ):
                feats[f] = (MF.mia_feature(p_r, y_r, f), MF.mia_feature(p_t, y_t, f), MF.mia_feature(p_f, y_f, f))
        for f, (fr, ft, ff) in feats.items():
            if f"mia_efficacy_{f}" in needed or (f == "confidence" and "mia_efficacy" in needed):
                value = MF.mia_efficacy(fr, ft, ff, seed=seed, max_samples=mia_max_samples)
                out[f"mia_efficacy_{f}"] = value
                if f == "confidence":
                    out["mia_efficacy"] = value
            if f"mia_auc_{f}" in needed:
                out[f"mia_auc_{f}"] = MF.mia_auc(MF.member_score(ff, f), MF.member_score(ft, f))
        if "mia_entropy_lr" in needed:
            fr, ft, ff = feats["entropy"]
            out["mia_entropy_lr"] = MF.mia_entropy_lr(fr, ft, ff)

    if reference is not None:
        ref = (
            reference
            if isinstance(reference, Evaluation)
            else _evaluate(
                reference,
                scenario,
                None,
                metrics=list(GAP_METRICS),
                batch_size=batch_size,
                device=dev,
                seed=seed,
                mia_max_samples=mia_max_samples,
                recording=None,
                risk_scorer=None,
            )
        )
        if "avg_gap" in needed:
            missing = [m for m in GAP_METRICS if m not in ref.metrics]
            if missing:
                raise MissingDataError(f"The reference Evaluation lacks {missing}, needed for avg_gap.")
            out["avg_gap"] = float(np.mean([abs(out[m] - ref.metrics[m]) for m in GAP_METRICS]))
        if "weight_distance" in needed:
            out["weight_distance"] = MF.weight_distance(net, ref.model)
        ref_probs = ref.forget_probs
        if any(n in needed for n in ("js_divergence", "kl_divergence", "activation_distance")):
            if ref_probs.shape != p_f.shape:
                raise MissingDataError("The reference's forget-set outputs are missing or of another shape.")
            if "js_divergence" in needed:
                out["js_divergence"] = MF.js_divergence(p_f, ref_probs)
            if "kl_divergence" in needed:
                out["kl_divergence"] = MF.kl_divergence(ref_probs, p_f)
            if "activation_distance" in needed:
                out["activation_distance"] = MF.activation_distance(p_f, ref_probs)

    unrolling = [n for n in ("verification_error", "verification_error_noop", "unlearning_error") if n in needed]
    if unrolling:
        from .metrics import unrolling as unrolling_metrics

        if recording is None:
            raise MissingDataError(
                f"Metric {unrolling[0]!r} needs the recording of the original training: "
                "evaluate(..., recording=ob.train(..., record=True).recording)."
            )
        if "verification_error" in needed or "verification_error_noop" in needed:
            out.update(unrolling_metrics.verification_errors(net, recording, scenario, device=dev))
        if "unlearning_error" in needed:
            out["unlearning_error"] = unrolling_metrics.unlearning_error_terms(net, recording, scenario, device=dev)[
                "unlearning_error"
            ]
    if "privacy_risk" in needed:
        if risk_scorer is None:
            raise MissingDataError(
                "Metric 'privacy_risk' needs shadow models: evaluate(..., "
                "risk_scorer=obliviate.metrics.privacy_risk.PrivacyRiskScorer.fit(model, scenario, recipe=...))."
            )
        out["privacy_risk"] = risk_scorer.mean_risk(net, scenario.forget, device=dev)
    if "mia_adversarial" in needed:
        from .methods.adversarial import membership_attack_accuracy

        out["mia_adversarial"] = membership_attack_accuracy(net, scenario, seed=seed, batch_size=batch_size, device=dev)

    ordered = {n: out[n] for n in METRICS.names() if n in out and n in wanted}
    return Evaluation(metrics=ordered, scenario=scenario.name, model=model, forget_probs=p_f)
