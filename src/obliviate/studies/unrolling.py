"""``obliviate study unrolling``: verification error against the unlearning-error proxy on digits.

Thudi et al. (EuroS&P'22, arXiv:2109.13398) propose the verification error (VE, the distance of
the unlearned weights to the naive retrain) as what unlearning should minimise, and show that
a cheap proxy, the unlearning error ``UE = (η²/2)·t·‖w_t - w_0‖·σ̄``, is strongly correlated
with it, and that their standard-deviation loss lowers both. This study reproduces that
analysis at CPU scale:

1. pretrain a small MLP (no BatchNorm, no dropout: the replay is exact) on the embedded digits
   (train split minus its validation split), with the SD loss of the grid point (as the paper
   pretrains with it), which gives ``w_0``;
2. for each point of a grid of learning rate η × fine-tuning epochs × SD-loss weight λ_SD,
   fine-tune ``w_0`` with plain SGD (batch 32, constant η), recording the run and measuring
   the top Hessian eigenvalue on a fixed probe batch along it;
3. forget B*, the run's first batch (the paper's setting: B* at step 0), with single-gradient
   unlearning (``sgu``, gradient at ``w_0``), replay the run without B* (the naive retrain
   ``w'``), and report VE (``‖w_u - w'‖``), the no-op VE (``‖w_t - w'‖``), UE and its factors,
   and the mean privacy risk score of B* under the original, naive-retrained and unlearned
   models (one shadow model, Song & Mittal);
4. the Spearman rank correlation of VE and UE over the grid (``scipy.stats.spearmanr``), a
   log-log scatter plot, and the JSON of every point.

Everything is seeded; the numbers are those of the run, never edited. The spec's reference
point (softmax regression on digits) found a strong rank correlation and SGU worse than doing
nothing in most settings; ``summary.sgu_beats_noop`` says how often SGU helped here. The
recorded run is ``benchmarks/results/unrolling_study.json`` (``python benchmarks/unrolling_study.py``).
"""

from __future__ import annotations

import itertools
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._utils import resolve_device, versions
from .._validation import check_interval, check_seed
from ..data import Scenario, Subset, load_dataset, validation_split
from ..errors import InvalidConfigError, UnlearningWarning
from ..io import write_json
from ..methods import unlearn
from ..metrics.privacy_risk import PrivacyRiskScorer
from ..metrics.unrolling import unlearning_error_terms, verification_errors
from ..models import build_model
from ..recording import Recorder
from ..training import TrainConfig, accuracy, train

__all__ = ["UnrollingStudy", "run_unrolling_study", "STUDY_GRID", "QUICK_GRID", "PRETRAIN_RECIPE"]

STUDY_GRID: dict[str, tuple[float, ...]] = {"lr": (0.02, 0.05, 0.1, 0.2), "epochs": (1, 2, 4), "std_reg": (0.0, 1.0)}
QUICK_GRID: dict[str, tuple[float, ...]] = {"lr": (0.05, 0.2), "epochs": (1, 2), "std_reg": (0.0, 1.0)}
PRETRAIN_RECIPE: dict[str, Any] = {
    "epochs": 10,
    "lr": 0.05,
    "batch_size": 64,
    "schedule": "cosine",
    "momentum": 0.9,
    "weight_decay": 0.0,
}
FINETUNE_BATCH = 32
HIDDEN = (32,)
PROBE_SAMPLES = 256
MEASUREMENTS = 8  # Hessian measurements per fine-tuning run (plus one at w_0)
SCHEMA = "obliviate.study.unrolling/1"


@dataclass
class UnrollingStudy:
    """What :func:`run_unrolling_study` returns.

    Attributes:
        points: One dict per grid point (η, epochs, λ_SD, steps, VE, no-op VE, UE and its
            factors, accuracies, privacy risks).
        spearman: Spearman correlation of VE and UE over the points.
        spearman_pvalue: Its p-value.
        summary: Aggregates (Pearson of log VE / log UE, how often SGU beat doing nothing).
        seconds: Wall time of the whole study.
        out_dir: Where the files were written (None: nothing written).
        plot: Path of the scatter plot (None when not written).
        config: The grid and recipes used.
    """

    points: list[dict[str, Any]]
    spearman: float
    spearman_pvalue: float
    summary: dict[str, Any]
    seconds: float
    out_dir: Path | None = None
    plot: Path | None = None
    config: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON document written as ``points.json``."""
        return {
            "schema": SCHEMA,
            "versions": versions(),
            "config": self.config,
            "spearman_ve_ue": self.spearman,
            "spearman_pvalue": self.spearman_pvalue,
            "summary": self.summary,
            "seconds": self.seconds,
            "points": self.points,
        }


def _grid(grid: dict[str, tuple[float, ...]]) -> list[tuple[float, int, float]]:
    for key in ("lr", "epochs", "std_reg"):
        if key not in grid or not len(grid[key]):
            raise InvalidConfigError(f"The study grid needs a non-empty {key!r} list; got {grid.get(key)!r}.")
    lrs = [check_interval("unrolling study", "lr", v, low=0.0, closed="neither") for v in grid["lr"]]
    epochs = [check_interval("unrolling study", "epochs", v, kind=int, low=1) for v in grid["epochs"]]
    regs = [check_interval("unrolling study", "std_reg", v, low=0.0) for v in grid["std_reg"]]
    return list(itertools.product(lrs, epochs, regs))


def run_unrolling_study(
    *,
    out: str | Path | None = "runs/study-unrolling",
    grid: dict[str, tuple[float, ...]] | None = None,
    quick: bool = False,
    seed: int = 0,
    privacy: bool = True,
    device: str = "cpu",
    progress: bool | None = None,
    console: Any = None,
    force: bool = False,
) -> UnrollingStudy:
    """Run the study and write ``points.json`` and ``ve_vs_ue.png`` into ``out``.

    ``out`` is claimed (:class:`~obliviate.runs.DirClaim`) before the compute: a directory another
    process is writing is refused, and so is one holding an earlier study's files unless ``force``.
    The files are written into a staging folder and moved in whole at the end.

    Args:
        out: Output directory (None: write nothing).
        grid: ``{"lr": (...), "epochs": (...), "std_reg": (...)}`` (default :data:`STUDY_GRID`;
            ``quick`` uses :data:`QUICK_GRID`).
        quick: The small grid (8 points), a smoke test.
        seed: Seed of the model, the batch order and the shadow model.
        privacy: Also report privacy risk scores of B* (trains one shadow model).
        device: "cpu" (default), "cuda", "auto".
        progress: One line per grid point on stderr (None: only on a terminal).
        console: A rich console for the summary table (None: stdout).
        force: Overwrite an earlier study's ``points.json`` and ``ve_vs_ue.png`` in ``out``.

    Returns:
        An :class:`UnrollingStudy`.

    Raises:
        InvalidConfigError: ``out`` is being written by another process, or holds an earlier study
            (without ``force``).
    """
    started = time.perf_counter()
    seed = check_seed("run_unrolling_study", seed)
    points_grid = _grid(grid if grid is not None else (QUICK_GRID if quick else STUDY_GRID))
    dev = resolve_device(device)
    if out is None:
        return _run(points_grid, seed, privacy, dev, show_progress=progress, console=console, started=started, claim=None)
    from ..runs import DirClaim

    claim = DirClaim.acquire(out, flag="--out", protected=STUDY_FILES, force_flag="--force", force=force)
    with claim:
        return _run(points_grid, seed, privacy, dev, show_progress=progress, console=console, started=started, claim=claim)


STUDY_FILES = ("points.json", "ve_vs_ue.png")


def _run(
    points_grid: list[tuple[float, int, float]],
    seed: int,
    privacy: bool,
    dev: Any,
    *,
    show_progress: bool | None,
    console: Any,
    started: float,
    claim: Any,
) -> UnrollingStudy:
    """The body of :func:`run_unrolling_study`; writes into ``claim``'s directory when given."""
    import sys

    from scipy.stats import pearsonr, spearmanr

    progress = show_progress
    show = sys.stderr.isatty() if progress is None else progress
    ds = load_dataset("digits")
    val = validation_split(ds, fraction=0.1, seed=seed)
    pool = np.setdiff1d(np.arange(len(ds.train)), val)  # type: ignore[arg-type]
    data = Subset(ds.train, pool, train_split_of=ds.name)
    model = build_model("mlp", ds, seed=seed, hidden=HIDDEN)
    # the SD loss is used from the start, as in the paper's pretraining (pretrain.py --loss_func std)
    pretrained = {
        reg: train(model, data, seed=seed, device=dev, progress=False, **PRETRAIN_RECIPE, std_reg=reg).model
        for reg in sorted({p[2] for p in points_grid})
    }
    scorer = None
    if privacy:
        shadow_recipe = TrainConfig.from_dict({**PRETRAIN_RECIPE, "epochs": PRETRAIN_RECIPE["epochs"] + 1})
        full = Scenario.from_indices(ds, pool[:1], seed=seed, val_fraction=0.1, val_seed=seed)
        scorer = PrivacyRiskScorer.fit(model, full, recipe=shadow_recipe, seed=seed, device=dev)
    points = []
    for i, (lr, epochs, reg) in enumerate(points_grid):
        steps_total = epochs * math.ceil(len(pool) / FINETUNE_BATCH)
        recorder = Recorder(hessian_every=max(1, steps_total // MEASUREMENTS), hessian_samples=PROBE_SAMPLES)
        run = train(
            pretrained[reg],
            data,
            seed=seed,
            device=dev,
            progress=False,
            record=recorder,
            epochs=epochs,
            lr=lr,
            batch_size=FINETUNE_BATCH,
            momentum=0.0,
            weight_decay=0.0,
            schedule="constant",
            std_reg=reg,
        )
        rec = run.recording
        forget_ids = rec.ids[rec.batch(0)]  # B*: the run's first batch
        sc = Scenario.from_indices(ds, forget_ids, seed=seed, val_fraction=0.1, val_seed=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnlearningWarning)
            out_sgu = unlearn(run, sc, "sgu", recording=rec, device=dev, progress=False)
        ve = verification_errors(out_sgu.model, rec, sc, device=dev)
        ue = unlearning_error_terms(run.model, rec, sc, device=dev)
        point: dict[str, Any] = {
            "lr": lr,
            "epochs": epochs,
            "std_reg": reg,
            "steps": rec.num_steps,
            "verification_error": ve["verification_error"],
            "verification_error_noop": ve["verification_error_noop"],
            "sgu_beats_noop": ve["verification_error"] < ve["verification_error_noop"],
            **{k: ue[k] for k in ("unlearning_error", "drift", "sigma_bar", "sigma_measurements")},
            "ue_steps": ue["steps"],
            "test_acc": accuracy(run.model, ds.test),
            "test_acc_sgu": accuracy(out_sgu.model, ds.test),
        }
        if scorer is not None:
            from ..recording import naive_retrain

            retrained = naive_retrain(run.model, rec, sc, device=dev)
            point["privacy_risk"] = scorer.mean_risk(run.model, sc.forget)
            point["privacy_risk_retrained"] = scorer.mean_risk(retrained, sc.forget)
            point["privacy_risk_sgu"] = scorer.mean_risk(out_sgu.model, sc.forget)
        points.append(point)
        if show:
            print(
                f"[{i + 1}/{len(points_grid)}] lr={lr:g} epochs={epochs} std_reg={reg:g}: VE {point['verification_error']:.3g} "
                f"(no-op {point['verification_error_noop']:.3g}), UE {point['unlearning_error']:.3g}",
                file=sys.stderr,
                flush=True,
            )
    ve_arr = np.array([p["verification_error"] for p in points])
    ue_arr = np.array([p["unlearning_error"] for p in points])
    finite = np.isfinite(ve_arr) & np.isfinite(ue_arr) & (ve_arr > 0) & (ue_arr > 0)
    if finite.sum() >= 3:
        rho, pval = spearmanr(ve_arr[finite], ue_arr[finite])
        pearson_log = float(pearsonr(np.log(ve_arr[finite]), np.log(ue_arr[finite]))[0])
    else:
        rho, pval, pearson_log = float("nan"), float("nan"), float("nan")
    by_reg = {}
    for reg in sorted({p["std_reg"] for p in points}):
        sel = [p for p in points if p["std_reg"] == reg]
        by_reg[f"{reg:g}"] = {
            "mean_verification_error": float(np.mean([p["verification_error"] for p in sel])),
            "mean_unlearning_error": float(np.mean([p["unlearning_error"] for p in sel])),
            "mean_drift": float(np.mean([p["drift"] for p in sel])),
            "mean_test_acc": float(np.mean([p["test_acc"] for p in sel])),
        }
    summary = {
        "points": len(points),
        "pearson_log_ve_log_ue": pearson_log,
        "sgu_beats_noop": int(sum(p["sgu_beats_noop"] for p in points)),
        "by_std_reg": by_reg,
        "pretrained_test_acc": {f"{reg:g}": accuracy(m, ds.test) for reg, m in pretrained.items()},
    }
    config = {
        "grid": {
            "lr": sorted({p[0] for p in points_grid}),
            "epochs": sorted({p[1] for p in points_grid}),
            "std_reg": sorted({p[2] for p in points_grid}),
        },
        "model": {"name": "mlp", "hidden": list(HIDDEN), "seed": seed},
        "pretrain": PRETRAIN_RECIPE,
        "finetune": {
            "optimizer": "sgd",
            "momentum": 0.0,
            "weight_decay": 0.0,
            "batch_size": FINETUNE_BATCH,
            "schedule": "constant",
        },
        "forget": "the first batch of each fine-tuning run (B*)",
        "hessian": {"probe_samples": PROBE_SAMPLES, "measurements": MEASUREMENTS, "sigma_mode": "abs_eig", "mode": "eval"},
        "seed": seed,
        "device": str(dev),
    }
    study = UnrollingStudy(
        points=points,
        spearman=float(rho),
        spearman_pvalue=float(pval),
        summary=summary,
        seconds=time.perf_counter() - started,
        config=config,
    )
    if claim is not None:
        stage = claim.staging()
        _plot(points, study.spearman, stage / "ve_vs_ue.png")
        study.out_dir = claim.path
        study.plot = claim.path / "ve_vs_ue.png"
        write_json(stage / "points.json", study.to_json())
        claim.publish(stage, last=("points.json",))
    _print(study, console)
    return study


def _plot(points: list[dict[str, Any]], rho: float, path: Path) -> Path:
    """Log-log scatter of VE against UE (filled: SGU; hollow: doing nothing), one colour per λ_SD."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    regs = sorted({p["std_reg"] for p in points})
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    for j, reg in enumerate(regs):
        sel = [p for p in points if p["std_reg"] == reg and p["unlearning_error"] > 0]
        c = colours[j % len(colours)]
        ue = [p["unlearning_error"] for p in sel]
        ax.scatter(ue, [p["verification_error"] for p in sel], color=c, label=f"SGU, λ_SD={reg:g}")
        ax.scatter(ue, [p["verification_error_noop"] for p in sel], facecolors="none", edgecolors=c, label=f"no-op, λ_SD={reg:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("unlearning error (η²/2 · t · ‖w_t − w_0‖ · σ̄)")
    ax.set_ylabel("verification error ‖w − w′‖")
    ax.set_title(f"digits MLP, B* = first batch; Spearman(VE_SGU, UE) = {rho:.2f}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(str(path), dpi=120)
    return path


def _print(study: UnrollingStudy, console: Any) -> None:
    from rich.table import Table

    from .._utils import console as make_console

    con = console or make_console()
    table = Table(title="unrolling study: verification error (VE) vs unlearning error (UE)", title_justify="left")
    cols = ["lr", "epochs", "std_reg", "steps", "VE sgu", "VE no-op", "UE", "test acc"]
    has_prs = bool(study.points) and "privacy_risk" in study.points[0]
    if has_prs:
        cols += ["PRS orig", "PRS retrain", "PRS sgu"]
    for c in cols:
        table.add_column(c, justify="right")
    for p in study.points:
        row = [
            f"{p['lr']:g}",
            str(p["epochs"]),
            f"{p['std_reg']:g}",
            str(p["steps"]),
            f"{p['verification_error']:.3g}",
            f"{p['verification_error_noop']:.3g}",
            f"{p['unlearning_error']:.3g}",
            f"{100 * p['test_acc']:.1f}",
        ]
        if has_prs:
            row += [f"{p[k]:.3f}" for k in ("privacy_risk", "privacy_risk_retrained", "privacy_risk_sgu")]
        table.add_row(*row)
    con.print(table)
    s = study.summary
    con.print(
        f"Spearman(VE, UE) = {study.spearman:.3f} (p = {study.spearman_pvalue:.2g}) over {s['points']} points; "
        f"SGU beat doing nothing in {s['sgu_beats_noop']} of {s['points']}; {study.seconds:.1f} s"
    )
    if study.plot is not None:
        con.print(f"Wrote {study.out_dir / 'points.json'} and {study.plot}")
