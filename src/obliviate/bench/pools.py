"""Pools of models for the per-example metrics: members as bench runs, their outputs kept, metrics over them.

A spec's ``[pools]`` table (:mod:`obliviate.bench.spec`) gives every (dataset, scenario) pools of
``n`` models, all on one forget draw (the scenario parsed with ``scenario_seed``), over training
seeds 0 .. n-1:

- ``r``: oracles retrained on the retain set (seeds 0 .. n-1), and with ``floor`` a second,
  independent pool (seeds n .. 2n-1) for the chance floor;
- ``o``: originals trained on the whole training set (the no-op);
- ``u``: per variant, original ``i`` unlearned with seed ``i``. As in the NeurIPS 2023 challenge,
  the originals vary across the pool, so the metrics see that source of variance too.

Each member is a ``pool_member`` run: its models come from the :class:`~obliviate.bench.pool.ModelPool`
(trained once), and its outputs, the logit-scaled confidence φ = z_y − log Σ_{j≠y} e^{z_j} of every
sample of the forget, retain, validation and test splits, with its accuracies, are kept in the pool
directory (``outputs/<run key>.safetensors`` + ``.json``). A second invocation, or another grid
sharing ``--pool``, finds them there and unlearns nothing again; a larger ``n`` reuses the members
of a smaller one (their keys do not hold ``n``).

A ``pool_metrics`` run per variant (and for the no-op original) reads the members' outputs and
computes, with :mod:`obliviate.metrics.functional.pool`:

- ``epsilon_score`` (the challenge's score F · RA_u/RA_r · TA_u/TA_r) and its ``epsilon_F``, beside
  ``epsilon_floor``: the F of the two independent retrained pools at the same ``n`` (what an exact
  method scores by chance at this pool size);
- U-LiRA (``ulira_auc``, ``ulira_tpr_1``, ``ulira_tpr_01``: TPR at 1 % and 0.1 % FPR; ``_offline``
  variants), the pools serving as shadow models;
- KLOM P50 / P95 on the forget, retain and validation samples, each P95 beside its floor
  (``klom_<split>_p95_floor``: the P95 of the second retrained pool against the first; with a
  few dozen models per pool, 20 bins are sparse and KLOM is far from 0 even between two pools of
  exact retraining).

Members that failed (an :class:`~obliviate.errors.UnlearningError`) are left out of the pool and
counted (``members``); so are collapsed ones, and a pool most of whose unlearned members collapsed
is ``collapsed`` itself, whatever its scores; a variant with fewer than 3 members (U-LiRA's leave-one-out fits need 3) has no
metrics (status ``failed``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..io import read_json, write_json

__all__ = ["SPLITS", "confidences", "member_record", "metrics_record", "outputs_dir", "POOL_METRIC_COLUMNS"]

SPLITS = ("forget", "retain", "val", "test")
"""The splits whose φ a member keeps (``test`` is the test split without the forgotten (sub-)class)."""

POOL_METRIC_COLUMNS = (
    "epsilon_score",
    "epsilon_F",
    "epsilon_floor",
    "ulira_auc",
    "ulira_tpr_1",
    "ulira_tpr_01",
    "ulira_auc_offline",
    "klom_forget_p50",
    "klom_forget_p95",
    "klom_forget_p95_floor",
    "klom_retain_p95",
    "klom_val_p95",
    "retain_acc",
    "test_acc",
)


def outputs_dir(pool_path: str | os.PathLike[str]) -> Path:
    """Where the members' outputs live: ``<pool>/outputs``."""
    return Path(pool_path) / "outputs"


def _split(sc: Any, name: str) -> Any:
    return sc.test_retain if name == "test" else getattr(sc, name)


def confidences(model: Any, sc: Any, device: Any, batch_size: int = 512) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """φ (float64) of ``model`` on every sample of :data:`SPLITS`, and its accuracy on each."""
    import torch

    from ..training import predict

    phi, acc = {}, {}
    for name in SPLITS:
        data = _split(sc, name)
        if data is None or len(data) == 0:
            phi[name], acc[name] = np.zeros(0), math.nan
            continue
        logits, labels = predict(model, data, batch_size=batch_size, device=device)
        z = logits.double()
        y = labels.long()
        true = z.gather(1, y[:, None])[:, 0]
        others = z.scatter(1, y[:, None], -math.inf)
        phi[name] = (true - torch.logsumexp(others, dim=1)).numpy()
        acc[name] = float((z.argmax(1) == y).double().mean())
    return phi, acc


def _save(directory: Path, key: str, phi: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    import torch
    from safetensors.torch import save_file

    from .pool import write_files

    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in phi.items()}
    write_files(
        directory,
        key,
        [
            (directory / f"{key}.safetensors", lambda p: save_file(tensors, p)),
            (directory / f"{key}.json", lambda p: write_json(p, meta)),
        ],
    )


def load_outputs(directory: Path, key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """A member's ``(φ by split, meta)``, or None when the pool does not hold it."""
    from safetensors.torch import load_file

    weights, meta = directory / f"{key}.safetensors", directory / f"{key}.json"
    if not (weights.is_file() and meta.is_file()):
        return None
    return {k: v.numpy() for k, v in load_file(str(weights)).items()}, read_json(meta)


def member_record(r: Any, models: Any, dev: Any, cache: dict[Any, Any], sc: Any) -> dict[str, Any]:
    """Run one ``pool_member``: its model (from the pool, unlearned for role ``u``), its outputs kept in the pool.

    The record's ``pool_model`` is the key of the pool entry it used (none when its outputs were held already).
    """
    from ..errors import DivergenceError, UnlearningError
    from ..methods import METHODS, unlearn
    from ..methods._cache import clear_importance_cache
    from ..report import run_record

    directory = outputs_dir(models.path)
    role = r.pool["role"]
    base_record = {"scenario": sc.summary(), "method": r.method, "seed": r.seed, "label": r.label, "pool_role": role}
    held = load_outputs(directory, r.key)
    if held is not None:  # made by an earlier invocation sharing this pool
        _, meta = held
        return run_record(**base_record, status=meta["status"], metrics=meta["acc"], seconds=meta.get("seconds"), reused=True)
    d = r.dataset
    common = {"model": d.model, "options": d.model_options, "recipe": d.recipe, "seed": r.seed, "device": dev}
    seconds = None
    if role == "r":
        model, used = models.get_or_train(sc, "oracle", **common)
        status = "ok"
    else:
        needs = role == "u" and METHODS.get(r.method).needs_recording
        base, used = models.get_or_train(sc, "original", record=needs, **common)
        model, status = base, "ok"
        if role == "u":
            kwargs: dict[str, Any] = {"recipe": False, **r.params}
            if needs:
                kwargs["recording"] = base.recording
            clear_importance_cache()
            try:
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # a pool runs a method n times: its warnings are the grid's runs' notes
                    out = unlearn(base, sc, r.method, seed=r.seed, device=dev, progress=False, **kwargs)
            except UnlearningError as e:
                status = "diverged" if isinstance(e, DivergenceError) else "failed"
                return run_record(**base_record, status=status, error=str(e), pool_model=used)
            model, status, seconds = out, out.status, out.seconds
    phi, acc = confidences(getattr(model, "model", model), sc, dev)
    _save(directory, r.key, phi, {"key": r.key, "role": role, "status": status, "acc": acc, "seconds": seconds})
    return run_record(**base_record, status=status, metrics=acc, seconds=seconds, pool_model=used)


def _member_keys(r: Any, role: str, seeds: range, method: str, label: str, params: dict[str, Any], preset: Any) -> list[str]:
    from .spec import member_run

    return [member_run(r.dataset, r.scenario, s, role, method, label, params, preset, r.pool["scenario_seed"]).key for s in seeds]


def _stack(directory: Path, keys: list[str]) -> tuple[dict[str, np.ndarray], dict[str, list[float]], int]:
    """φ of the members that hold outputs, stacked ``(members, samples)`` per split; their accuracies and
    statuses (``accs["status"]``); how many.
    """
    rows: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    accs: dict[str, list[Any]] = {s: [] for s in (*SPLITS, "status")}
    for key in keys:
        held = load_outputs(directory, key)
        if held is None:
            continue
        phi, meta = held
        for s in SPLITS:
            rows[s].append(phi[s])
            accs[s].append(meta["acc"][s])
        accs["status"].append(meta.get("status", "ok"))
    n = len(rows["forget"])
    return {s: np.stack(v) if v else np.zeros((0, 0)) for s, v in rows.items()}, accs, n


def metrics_record(r: Any, models: Any, sc: Any) -> dict[str, Any]:
    """Run one ``pool_metrics``: the per-example metrics of a variant's pool against the retrained pool."""
    from ..metrics.functional import pool as PM
    from ..report import run_record

    directory = outputs_dir(models.path)
    n = int(r.pool["n"])
    retrain_keys = _member_keys(r, "r", range(n), "retrain", "retrain", r.dataset.recipe, None)
    if r.method == "original":
        mine = _member_keys(r, "o", range(n), "original", "original", {}, None)
    else:
        mine = _member_keys(r, "u", range(n), r.method, r.label, r.params, r.preset)
    rp, racc, nr = _stack(directory, retrain_keys)
    up, uacc, nu = _stack(directory, mine)
    base = {"scenario": sc.summary(), "method": r.method, "seed": r.seed, "preset": r.preset, "params": r.params}
    if r.label != r.method:
        base["label"] = r.label
    members = {"unlearned": nu, "retrained": nr, "n": n}
    if nu < 3 or nr < 3:
        return run_record(**base, status="failed", error=f"{nu} of {n} members of this pool hold outputs", members=members)
    mean = {
        k: float(np.mean(v))
        for k, v in (("ra_u", uacc["retain"]), ("ra_r", racc["retain"]), ("ta_u", uacc["test"]), ("ta_r", racc["test"]))
    }
    eps = PM.epsilon_score(up["forget"], rp["forget"], **mean)
    metrics: dict[str, Any] = {
        "epsilon_score": float(eps["score"]),
        "epsilon_F": float(eps["F"]),
        "retain_acc": mean["ra_u"],
        "test_acc": mean["ta_u"],
        "forget_acc": float(np.mean(uacc["forget"])),
    }
    r2, n2 = None, 0
    if r.pool.get("floor", True):
        floor_keys = _member_keys(r, "r", range(n, 2 * n), "retrain", "retrain", r.dataset.recipe, None)
        r2, _, n2 = _stack(directory, floor_keys)
        if n2 >= 3:
            metrics["epsilon_floor"] = float(PM.chance_floor(rp["forget"], r2["forget"]))
            members["floor"] = n2
    for variant, suffix in (("online", ""), ("offline", "_offline")):
        lira = PM.ulira(up["forget"], rp["forget"], variant=variant)
        metrics[f"ulira_auc{suffix}"] = float(lira["auc"])
        metrics[f"ulira_tpr_1{suffix}"] = float(lira["tpr_at"][0.01])
        metrics[f"ulira_tpr_01{suffix}"] = float(lira["tpr_at"][0.001])
    for split in ("forget", "retain", "val"):
        if up[split].size and rp[split].size:
            summary = PM.klom_summary(PM.klom(up[split], rp[split]))
            metrics[f"klom_{split}_p50"] = float(summary["p50"])
            metrics[f"klom_{split}_p95"] = float(summary["p95"])
            if n2 >= 3 and r2[split].size:  # what KLOM gives two independent retrained pools of this size
                metrics[f"klom_{split}_p95_floor"] = float(PM.klom_summary(PM.klom(r2[split], rp[split]))["p95"])
    metrics = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
    # a pool of mostly wrecked models is no success, however its scores read: the members' health checks decide
    members["collapsed"] = sum(st == "collapsed" for st in uacc["status"])
    status, notes = "ok", []
    if members["collapsed"]:
        notes.append(f"{members['collapsed']} of {nu} unlearned members collapsed (the health check of each run)")
        if 2 * members["collapsed"] > nu:
            status = "collapsed"
    return run_record(**base, status=status, metrics=metrics, members=members, notes=notes)
