"""The unrolling paper's errors for a recorded run and a scenario: verification and unlearning error.

* **Verification error** (Thudi et al.'s metric to optimise): ``VE = ‖w_u - w'‖₂`` over the
  trainable parameters (buffers excluded), with ``w'`` the naive retrain, i.e. the recorded
  run replayed from the same initial weights on the same batches without the forget samples
  (:func:`obliviate.recording.naive_retrain`). It is ``weight_distance`` with that model as
  the reference. The **no-op** baseline ``‖w_T - w'‖₂``, what doing nothing costs, is always
  reported beside it (``verification_error_noop``): unlearning that does not beat it did harm.
* **Unlearning error** (the paper's cheap proxy): ``UE = (η²/2)·t·‖w_T - w_0‖₂·σ̄``, a property
  of the recorded run and the forget set (the same for every method), where t counts the
  steps after the first step that used a forget sample, η is the mean recorded learning rate
  over the steps from that one on, and σ̄ is the mean top Hessian singular value: over the
  measurements the recording holds (:class:`~obliviate.recording.Recorder` with
  ``hessian_every``), else over two measurements, at ``w_0`` and at ``w_T``, on a probe
  batch of the first ``probe_samples`` training samples. σ is ``|λmax|`` by default; the
  paper code's ``sqrt(λmax)`` with ``sigma_mode="sqrt_eig"``. The Hessian is taken in eval
  mode, as PyHessian does (BatchNorm on its running statistics).

Both need the recording (``ob.train(..., record=True)``); they are opt-in metrics of
:func:`obliviate.evaluate` (``metrics=["verification_error", "unlearning_error"],
recording=...``).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from .._utils import model_device, resolve_device
from ..data.base import Subset, iterate_batches
from ..data.scenario import Scenario
from ..hessian import sigma_of, top_eigenvalue
from ..recording import Recording, logit_loss, naive_retrain
from .functional.divergence import weight_distance
from .functional.unrolling import unlearning_error as ue_formula

__all__ = ["verification_errors", "unlearning_error_terms"]


def _with_state(model: nn.Module, state: dict[str, torch.Tensor], device: torch.device) -> nn.Module:
    net = copy.deepcopy(model).to(device)
    net.load_state_dict(state)
    net.eval()
    return net


def verification_errors(
    model: nn.Module, recording: Recording, scenario: Scenario, *, device: str | torch.device | None = None
) -> dict[str, float]:
    """``verification_error`` of ``model`` and the no-op baseline ``verification_error_noop``.

    Args:
        model: The unlearned model (not changed).
        recording: The recording of the original model's training.
        scenario: What was forgotten.
        device: Where to replay (default: the model's device).

    Returns:
        ``{"verification_error": ‖w_u - w'‖, "verification_error_noop": ‖w_T - w'‖}``.
    """
    dev = model_device(model) if device is None else resolve_device(device)
    reference = naive_retrain(model, recording, scenario, device=dev)
    original = _with_state(model, recording.final, dev)
    return {
        "verification_error": weight_distance(model, reference),
        "verification_error_noop": weight_distance(original, reference),
    }


def unlearning_error_terms(
    model: nn.Module,
    recording: Recording,
    scenario: Scenario,
    *,
    sigma_mode: str = "abs_eig",
    probe_samples: int = 256,
    device: str | torch.device | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """The unlearning-error proxy of a recorded run for a scenario, with its factors.

    Args:
        model: A model of the recorded architecture (its weights are not used).
        recording: The recording of the original model's training.
        scenario: What is forgotten (its first step in the run sets t).
        sigma_mode: "abs_eig" (|λ|, default) or "sqrt_eig" (the paper code's sqrt(λ)).
        probe_samples: Size of the probe batch when σ has to be measured here.
        device: Where to compute (default: the model's device).
        seed: Seed of the power iteration's start vector.

    Returns:
        ``unlearning_error`` plus ``lr``, ``steps``, ``drift``, ``sigma_bar`` and
        ``sigma_measurements``.
    """
    dev = model_device(model) if device is None else resolve_device(device)
    forget = recording.scenario_positions(scenario)
    holding = np.flatnonzero(recording.steps_holding(forget))
    key = ("unlearning_error", scenario.hash, sigma_mode, probe_samples, str(dev), seed)
    if key in recording._cache:
        return dict(recording._cache[key])
    first = int(holding[0]) if len(holding) else recording.num_steps - 1
    steps = max(0, recording.num_steps - 1 - first)
    lr = float(np.mean(recording.lrs[first:])) if recording.num_steps else 0.0
    drift = float((recording.vector(recording.final) - recording.vector(recording.initial)).norm())
    if len(recording.hessian_eigenvalues):
        eigenvalues = list(recording.hessian_eigenvalues)
    else:
        data = recording.training_data(scenario.train_split)
        k = min(probe_samples, recording.num_samples)
        x, y = next(iter(iterate_batches(Subset(data, np.arange(k)), k, device=dev)))
        cfg = recording.train_config
        loss = logit_loss(cfg.label_smoothing, cfg.std_reg)
        eigenvalues = [
            top_eigenvalue(_with_state(model, state, dev), x, y, loss=loss, seed=seed).eigenvalue
            for state in (recording.initial, recording.final)
        ]
    sigmas = [sigma_of(v, sigma_mode) for v in eigenvalues]
    sigma_bar = float(np.mean(sigmas))
    out = {
        "unlearning_error": ue_formula(lr, steps, drift, sigma_bar),
        "lr": lr,
        "steps": steps,
        "drift": drift,
        "sigma_bar": sigma_bar,
        "sigma_measurements": len(sigmas),
    }
    recording._cache[key] = dict(out)
    return out
