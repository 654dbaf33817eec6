"""Linear classifiers with certified removal (Guo, Goldstein, Hannun, van der Maaten, ICML 2020;
arXiv:1911.03030), written from the paper's mathematics (the authors' code is CC-BY-NC).

Training minimises, per class model, the perturbed objective (sum form)
``L_b(w; D) = sum_i l(w^T x_i, y_i) + (lam n / 2) ||w||^2 + b^T w`` with secret
``b ~ N(0, sigma^2 I)``, to a verified optimum (Newton + Cholesky in float64, gradient norm
checked). ``remove(indices)`` applies one Newton step on the remaining data with the Hessian at
the current weights, solved by preconditioned conjugate gradients on exact Hessian-vector
products (see :mod:`obliviate.certified._solver`), accumulates a gradient-residual bound and keeps
the model ``(epsilon, delta)``-certified; when the next removal would exceed the budget
``sigma epsilon / c`` the model is retrained on the remaining data with a fresh ``b`` (Algorithm 2).

Differences from the seed repository, on purpose (``theory-seeds.md`` §3.12):

- the optimum is verified (its LBFGS closure never called ``backward()``) and the training
  residual is charged to the certificate;
- ``||X'||_2`` is a certified upper bound (exact top eigenvalue plus a rounding margin), not 20
  power iterations, which under-estimate;
- in one-vs-rest mode each removed row is taken out of each class model once (the seed code
  down-dated its Gram matrix K times per removal);
- the budget is enforced and retraining happens (the seed code only logged the bound);
- accuracy after removal uses the updated weights; float64 throughout; CPU; no pickle;
  ``b`` is never written next to the public weights;
- no model cache keyed by a partial file name (the seed's key left out the training mode, the
  number of steps and the seed, so runs collided): a saved model carries all its parameters and a
  SHA-256 of its training data, and resuming it on other data is refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import struct
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from .._validation import check_choice, check_interval
from ..errors import (
    ConvergenceWarning,
    DuplicateRequestError,
    IncompatibleModelError,
    InvalidConfigError,
    UnknownSampleError,
    UnlearningWarning,
)
from ..ledger.budget import RemovalBudget
from . import _solver
from ._losses import LOSSES
from .bounds import gram_upper_eigenvalue

__all__ = [
    "CertifiedLinearClassifier",
    "CertifiedLogisticRegression",
    "CertifiedRidgeClassifier",
    "RemovalReport",
    "SeededNoiseWarning",
]

FORMAT = "obliviate.certified/1"
_EPS = float(np.finfo(np.float64).eps)


class SeededNoiseWarning(UnlearningWarning):
    """A certified model was fitted with a seed: its secret noise ``b`` is reproducible by anyone who
    knows the seed, so the guarantee does not hold against them. Fine for tests and reproducible
    experiments; a deployment fits without a seed (operating-system entropy).
    """


@dataclass(frozen=True)
class RemovalReport:
    """What one call of ``remove`` did and what it cost.

    Attributes:
        indices: The removed rows (positions in the training data given to ``fit``), sorted.
        charged: Amount added to the accumulated bound (0 when the request was served by
            retraining: the retrained model is exact, its certificate restarts).
        data_dependent: Corollary 1 bound ``gamma ||X'|| ||s|| ||X's||`` of this step (Euclidean
            norm over the class models).
        worst_case: Theorem 1 bound of this step with the actual ``||w||`` (see
            :func:`~obliviate.certified.bounds.worst_case_bound`).
        linear_residual: ``||Delta - H s||`` left by conjugate gradients (charged too).
        cg_iterations: Conjugate-gradient iterations (largest over the class models).
        beta: Accumulated residual bound after the request.
        epsilon: Certified ε after the request (at the model's δ).
        retrained: Whether the request was served by retraining with a fresh noise vector.
        seconds: Wall-clock time of the request; the next four fields split it (the rest is
            validation, the gradient ``Delta`` and the bounds).
        seconds_hvp: In the exact Hessian-vector products of conjugate gradients (one pass over the
            features each).
        seconds_preconditioner: In building, downdating, refreshing and applying preconditioners.
        seconds_retrain: In retraining (when the request was served by a retrain).
        refreshed: Whether a preconditioner's reference Hessian was rebuilt for this request.
        contraction: Residual after the first conjugate-gradient iteration over the initial one
            (largest over the class models): near 0 for a good preconditioner, 1 for none.
        scope: What the certificate covers when that is less than the model's whole input-output
            map (the model's ``certificate_scope_``, e.g. "linear head only: the extractor saw the
            removed rows"); empty when it covers the linear model on the features it was given.
    """

    indices: tuple[int, ...]
    charged: float
    data_dependent: float
    worst_case: float
    linear_residual: float
    cg_iterations: int
    beta: float
    epsilon: float
    retrained: bool
    seconds: float
    scope: str = ""
    seconds_hvp: float = 0.0
    seconds_preconditioner: float = 0.0
    seconds_retrain: float = 0.0
    refreshed: bool = False
    contraction: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        out = asdict(self)
        out["indices"] = list(self.indices)
        return out


def _is_auto(value: Any) -> bool:
    return isinstance(value, str) and value == "auto"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_safetensors(data: bytes) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Tensors and string metadata of a safetensors blob (the header is plain JSON; nothing is unpickled).

    Raises:
        IncompatibleModelError: the bytes are not a safetensors file.
    """
    from safetensors.numpy import load

    try:
        (size,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + size])
        tensors = load(data)
    except Exception as e:  # malformed header or body
        raise IncompatibleModelError(f"Not a safetensors file ({type(e).__name__}: {e}).") from None
    return tensors, dict(header.get("__metadata__") or {})


def atomic_write(path: str | os.PathLike[str], data: bytes, *, private: bool = False) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same directory, flushed and
    fsync'ed, then ``os.replace`` (and the directory fsync'ed where the OS allows it).

    ``private=True`` creates the temporary file with mode 0600 (``os.open`` with ``O_EXCL``: the
    umask can only narrow it, and no other user ever sees the bytes), so ``path`` ends up 0600 even
    when it replaces a file others could read.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if private:
        try:
            tmp.unlink()  # a leftover of a killed write by a process with the same id
        except FileNotFoundError:
            pass
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)
        fh = os.fdopen(os.open(tmp, flags, 0o600), "wb")
    else:
        fh = open(tmp, "wb")
    with fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    try:
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_secret_file(path: str | os.PathLike[str], *, allow_insecure: bool = False) -> bytes:
    """Read a secret file, refusing one that group or others can read (unless ``allow_insecure``).

    Raises:
        InvalidConfigError: the file does not exist, or its mode lets group or others read it.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode  # the mode of the file actually read
            if not allow_insecure and os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise InvalidConfigError(
                    f"Secret file {str(path)!r} is accessible by group or others (mode {stat.S_IMODE(mode):04o}): "
                    f"restrict it with `chmod 600 {path}`, or pass allow_insecure=True to read it anyway."
                )
            return fh.read()
    except FileNotFoundError:
        raise InvalidConfigError(f"Secret file {str(path)!r} does not exist.") from None


class CertifiedLinearClassifier(ClassifierMixin, BaseEstimator):
    """Base of the certified-removal linear classifiers (the loss is fixed by the subclass).

    Guo et al., "Certified Data Removal from Machine Learning Models", ICML 2020,
    arXiv:1911.03030. Data needs: the training features and labels stay available to the model
    (removal needs the remaining data). Cost: training is Newton's method (about 5-10 Hessians of
    ``n p^2`` each per class), several times over when λ is planned (a few warm-started fits per
    grid value); one removal is a few exact Hessian-vector products (one pass over the features
    each), with an occasional preconditioner refresh. Timings, iterations and accuracies:
    ``benchmarks/results/certified_removal.json``.

    Args:
        lam: L2 regularisation per training sample (λ; the objective carries ``lam n / 2 ||w||^2``),
            or "auto" (the default): planned at ``fit`` for ``removals`` (see below). Larger values
            make the removal bounds smaller and cost accuracy; the paper used 1e-3 on MNIST (12k
            rows), and a few hundred or thousand rows need more, because ``lam n`` is what keeps
            the bounds small.
        sigma: Standard deviation of the secret noise ``b`` (σ), or "auto" (the default): planned
            at ``fit``. Larger values allow more removals before retraining and cost accuracy.
        epsilon: Target ε of the (ε, δ)-certified-removal guarantee (default 1).
        delta: Target δ (default 1e-4). The budget is ``sigma * epsilon / c`` with
            ``c = sqrt(2 ln(1.5 / delta))``.
        removals: ``K``, how many single-row removals the budget should be expected to hold
            before a retrain (default 10); used to plan "auto" values. The planning rule
            (:mod:`obliviate.certified.planning`): the expected charge ``q(λ)`` of one removal is
            the mean data-dependent bound at the unperturbed optimum over sampled rows;
            ``sigma = c (2 K q(λ) + 2 tol) / epsilon`` (a safety factor 2); λ is the grid value whose
            model, with that noise, scores best on held-out rows. With both values given, nothing
            is planned. The plan is kept in ``plan_``.
        mode: "binary" (two classes, one model; ``classes_[1]`` is the +1 class), "ovr" (one
            model per class) or "auto" (binary for two classes, else ovr). Default "auto".
        subsample: ρ in (0, 1]: in ovr mode each class model keeps every positive and each
            negative with probability ρ (independently per class), so its objective runs over
            ``n_k`` rows with regulariser ``lam n_k`` (the paper's per-class weights ``1/n_k`` in the
            mean form). Default 1 (no subsampling).
        gamma: Lipschitz constant of ``l''``: "paper" (1/4 for the logistic loss, the default),
            "tight" (``1/(6 sqrt 3)``), or a positive number.
        bound: Which bound is charged per removal: "data" (Corollary 1, default) or "worst"
            (Theorem 1).
        auto_retrain: Retrain with a fresh ``b`` when a removal would exceed the budget (default
            True); when False such a removal raises :class:`~obliviate.errors.BudgetExhaustedError`
            and leaves the model unchanged.
        fit_intercept: Append a constant feature 1 before normalising (a regularised intercept;
            the paper has none). Default True.
        normalize: Scale each row to unit L2 norm, as the bounds assume ``||x|| <= 1``. Default
            True; when False every row must already have norm at most 1.
        tol: Training stops when the gradient norm of the perturbed objective is at most ``tol``
            (default 1e-9); whatever is left is charged to the certificate.
        max_iter: Most Newton iterations (default 100); not converging warns
            (:class:`~obliviate.errors.ConvergenceWarning`).
        cg_tol: Conjugate gradients stop once the linear residual ``||Delta - H s||`` is at most
            ``cg_tol`` times the step's own residual bound, or ``1e-12 ||Delta||`` (what a
            ``gamma = 0`` loss gets). Default 0.05: an inexact solve costs at most 5 % more budget
            than an exact one, and often one iteration (one pass over the features) is enough
            (iterations per removal: ``benchmarks/results/certified_removal.json``). The residual is charged to the
            certificate; the removed model is within ``||Delta - H s|| / (lam n')`` of the exact
            Newton step.
        max_cg_iter: Most conjugate-gradient iterations per removal (default 50).
        random_state: Seed (int), ``numpy.random.Generator`` or None (operating-system entropy,
            the default) for the noise ``b`` and the subsampling. A known seed makes ``b`` known,
            which voids the guarantee against whoever knows it: a seeded fit warns
            (:class:`SeededNoiseWarning`), and the seed is never written to the public model file,
            only to the secret file (``save(secret_path=...)``). The fresh noise of a retraining
            comes from operating-system entropy; for a seeded fit, from the seed together with a
            random secret drawn at fit (``os.urandom``) and kept only in the secret file, so the
            seed and the public counters alone never determine it, and whoever holds the secret
            file reproduces it. A model loaded without its secret file draws it from the OS.

    Attributes:
        lam_, sigma_: The λ and σ in use (planned, or as given).
        plan_: How they were planned (:meth:`obliviate.certified.planning.Plan.to_dict`: the rule,
            the expected charge per removal and every candidate λ with its σ and held-out
            accuracies), or None when both were given.
        charge_estimate_: Expected charge of one single-row removal, estimated when the model was
            last (re)trained; :meth:`expected_removals_left` divides the budget left by it.
        classes_: The class labels.
        coef_: ``(1, d)`` (binary) or ``(K, d)`` weights on the raw features (``X @ coef_.T +
            intercept_`` has the sign/argmax of :meth:`decision_function`, which scores the
            normalised rows).
        intercept_: ``(1,)`` or ``(K,)``.
        budget_: The :class:`~obliviate.ledger.RemovalBudget` accountant.
        history_: A :class:`RemovalReport` per ``remove`` call.
        training_residual_: Gradient norm left by the last (re)training.
        retrain_count_: Retrainings triggered by the budget.
        certificate_scope_: What the certificate covers, when less than the model on its
            features: empty after ``fit``; a caller whose features come from an extractor that
            is neither public nor differentially private sets it (as ``obliviate.certified.run``
            does: "linear head only: the extractor saw the removed rows"). It is saved with the
            model, shown in its ``repr`` and copied into every :class:`RemovalReport`.
    """

    _loss: ClassVar[str] = "logistic"

    def __init__(
        self,
        *,
        lam: float | str = "auto",
        sigma: float | str = "auto",
        epsilon: float = 1.0,
        delta: float = 1e-4,
        removals: int = 10,
        mode: str = "auto",
        subsample: float = 1.0,
        gamma: str | float = "paper",
        bound: str = "data",
        auto_retrain: bool = True,
        fit_intercept: bool = True,
        normalize: bool = True,
        tol: float = 1e-9,
        max_iter: int = 100,
        cg_tol: float = 0.05,
        max_cg_iter: int = 50,
        random_state: int | np.random.Generator | None = None,
    ) -> None:
        self.lam = lam
        self.sigma = sigma
        self.epsilon = epsilon
        self.delta = delta
        self.removals = removals
        self.mode = mode
        self.subsample = subsample
        self.gamma = gamma
        self.bound = bound
        self.auto_retrain = auto_retrain
        self.fit_intercept = fit_intercept
        self.normalize = normalize
        self.tol = tol
        self.max_iter = max_iter
        self.cg_tol = cg_tol
        self.max_cg_iter = max_cg_iter
        self.random_state = random_state

    def __repr__(self, N_CHAR_MAX: int = 700) -> str:  # noqa: N803 (sklearn's signature)
        text = super().__repr__(N_CHAR_MAX)
        scope = getattr(self, "certificate_scope_", "")
        return f"{text} [certificate: {scope}]" if scope else text

    # ------------------------------------------------------------------ validation
    def _validated(self) -> dict[str, Any]:
        owner = type(self).__name__
        out: dict[str, Any] = {
            # None: planned at fit (see obliviate.certified.planning)
            "lam": None if _is_auto(self.lam) else check_interval(owner, "lam", self.lam, low=0.0, closed="neither"),
            "sigma": None if _is_auto(self.sigma) else check_interval(owner, "sigma", self.sigma, low=0.0, closed="neither"),
            "epsilon": check_interval(owner, "epsilon", self.epsilon, low=0.0, closed="neither"),
            "delta": check_interval(owner, "delta", self.delta, low=0.0, high=1.0, closed="neither"),
            "removals": check_interval(owner, "removals", self.removals, int, low=1),
            "mode": check_choice(owner, "mode", self.mode, ("auto", "binary", "ovr")),
            "subsample": check_interval(owner, "subsample", self.subsample, low=0.0, high=1.0, closed="right"),
            "bound": check_choice(owner, "bound", self.bound, ("data", "worst")),
            "tol": check_interval(owner, "tol", self.tol, low=0.0, closed="neither"),
            "max_iter": check_interval(owner, "max_iter", self.max_iter, int, low=1),
            "cg_tol": check_interval(owner, "cg_tol", self.cg_tol, low=0.0, high=1.0, closed="right"),
            "max_cg_iter": check_interval(owner, "max_cg_iter", self.max_cg_iter, int, low=1),
        }
        for flag in ("auto_retrain", "fit_intercept", "normalize"):
            value = getattr(self, flag)
            if not isinstance(value, (bool, np.bool_)):
                raise InvalidConfigError(f"The {flag!r} parameter of {owner} must be a bool; got {value!r}.")
            out[flag] = bool(value)
        loss = LOSSES[self._loss]
        if isinstance(self.gamma, str):
            out["gamma"] = loss.gammas[check_choice(owner, "gamma", self.gamma, tuple(loss.gammas))]
        else:
            out["gamma"] = check_interval(owner, "gamma", self.gamma, low=0.0)
        if out["bound"] == "worst" and not math.isfinite(loss.lipschitz):
            raise InvalidConfigError(
                f"The 'bound' parameter of {owner} cannot be 'worst': the {loss.name} loss has an unbounded gradient, "
                "so Theorem 1 does not apply; use bound='data'."
            )
        rs = self.random_state
        if not (
            rs is None or isinstance(rs, np.random.Generator) or (isinstance(rs, (int, np.integer)) and not isinstance(rs, bool))
        ):
            raise InvalidConfigError(
                f"The 'random_state' parameter of {owner} must be an int, a numpy Generator or None; got {rs!r}."
            )
        if isinstance(rs, (int, np.integer)) and rs < 0:
            raise InvalidConfigError(f"The 'random_state' parameter of {owner} must be a non-negative int; got {rs!r}.")
        return out

    def _as_features(self, x: Any, *, fitted: bool) -> np.ndarray:
        arr = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
            raise InvalidConfigError(f"{type(self).__name__} expects numeric features; got an array of dtype {arr.dtype}.")
        if arr.ndim != 2:
            raise InvalidConfigError(
                f"{type(self).__name__} expects features of shape (n_samples, n_features); got shape {arr.shape}."
            )
        arr = np.ascontiguousarray(arr, dtype=np.float64)
        if not np.all(np.isfinite(arr)):
            raise InvalidConfigError(f"{type(self).__name__}: the features contain NaN or inf.")
        if fitted and arr.shape[1] != self.n_features_in_:
            raise InvalidConfigError(f"{type(self).__name__} was fitted on {self.n_features_in_} features; got {arr.shape[1]}.")
        return arr

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        """Append the intercept column and normalise rows, exactly as in training."""
        if self._params["fit_intercept"]:
            x = np.hstack([x, np.ones((x.shape[0], 1))])
        norms = np.sqrt(np.einsum("ij,ij->i", x, x))
        if self._params["normalize"]:
            safe = np.where(norms > 0, norms, 1.0)  # an all-zero row stays zero (the seed code divided by 0)
            return np.ascontiguousarray(x / safe[:, None])
        if norms.size and norms.max() > 1.0 + 1e-12:
            raise InvalidConfigError(
                f"With normalize=False every row must have L2 norm <= 1 (the bounds assume it); the largest is "
                f"{norms.max():.4g}{' after appending the intercept column' if self._params['fit_intercept'] else ''}. "
                "Use normalize=True or scale the features."
            )
        return np.ascontiguousarray(x)

    @staticmethod
    def _digest(x: np.ndarray, y_index: np.ndarray) -> str:
        h = hashlib.sha256()
        h.update(str(x.shape).encode())
        h.update(np.ascontiguousarray(x, dtype=np.float64).tobytes())
        h.update(np.ascontiguousarray(y_index, dtype=np.int64).tobytes())
        return h.hexdigest()

    # ------------------------------------------------------------------ training
    def fit(self, X: Any, y: Any) -> CertifiedLinearClassifier:
        """Train on ``X`` (``(n, d)`` numbers) and ``y`` (``n`` labels) to a verified optimum.

        ``lam`` and ``sigma`` left at "auto" are planned first for ``removals`` expected removals
        (:func:`obliviate.certified.planning.plan`; it warns with a ``PlanningWarning`` when a
        given ``sigma`` cannot hold them at any λ). The secret noise is drawn afterwards.

        Raises:
            InvalidConfigError: bad parameters, shapes, non-finite features, fewer than two
                classes, or a training residual larger than the whole budget.
        """
        self._params = params = self._validated()
        x = self._as_features(X, fitted=False)
        labels = np.asarray(y.detach().cpu().numpy() if hasattr(y, "detach") else y)
        if labels.ndim != 1 or labels.shape[0] != x.shape[0]:
            raise InvalidConfigError(f"y must be 1-D with one label per row of X ({x.shape[0]}); got shape {labels.shape}.")
        classes, y_index = np.unique(labels, return_inverse=True)
        if len(classes) < 2:
            raise InvalidConfigError(f"{type(self).__name__} needs at least two classes in y; got {classes.tolist()}.")
        mode = params["mode"]
        if mode == "auto":
            mode = "binary" if len(classes) == 2 else "ovr"
        if mode == "binary" and len(classes) != 2:
            raise InvalidConfigError(f"mode='binary' needs exactly two classes; y has {len(classes)}. Use mode='ovr'.")
        if mode == "binary" and params["subsample"] < 1.0:
            raise InvalidConfigError("subsample < 1 subsamples the negatives of one-vs-rest models; use mode='ovr'.")
        self.classes_ = classes
        self.mode_ = mode
        self.n_features_in_ = x.shape[1]
        self._data_digest = self._digest(x, y_index)
        self._x = self._prepare(x)
        self._x_op = _solver.operator_matrix(self._x)  # what the removal's Hessian-vector products read
        self._row_sq = np.einsum("ij,ij->i", self._x, self._x)
        n, p = self._x.shape
        k = 1 if mode == "binary" else len(classes)
        if mode == "binary":
            self._y = np.where(y_index == 1, 1.0, -1.0)[:, None]
        else:
            self._y = np.where(y_index[:, None] == np.arange(k)[None, :], 1.0, -1.0)
        if isinstance(self.random_state, (int, np.integer)):
            warnings.warn(
                f"{type(self).__name__} was fitted with random_state={self.random_state}: its secret noise b is "
                "reproducible by anyone with the seed, which voids the guarantee against them. Use random_state=None "
                "(operating-system entropy) for a deployment; the seed is kept out of the public model file.",
                SeededNoiseWarning,
                stacklevel=2,
            )
        # None: a SeedSequence from operating-system entropy (os.urandom), recorded nowhere
        rng = np.random.default_rng(self.random_state)
        # the secret of later retrainings' noise: with a seed, the seed alone must not determine it
        self._noise_secret = os.urandom(32) if isinstance(self.random_state, (int, np.integer)) else None
        noise = rng.standard_normal((p, k))  # drawn first: a seed gives the same b for any n
        member = np.ones((n, k))
        if params["subsample"] < 1.0:
            keep = rng.random((n, k)) < params["subsample"]
            member[(self._y < 0) & ~keep] = 0.0
        self.plan_: dict[str, Any] | None = None
        if params["lam"] is None or params["sigma"] is None:
            from .planning import plan

            chosen = plan(
                self._x,
                self._y,
                member,
                lam=params["lam"],
                sigma=params["sigma"],
                epsilon=params["epsilon"],
                delta=params["delta"],
                removals=params["removals"],
                loss=LOSSES[self._loss],
                gamma=params["gamma"],
                bound=params["bound"],
                tol=params["tol"],
                cg_tol=params["cg_tol"],
                max_iter=params["max_iter"],
            )
            params["lam"], params["sigma"] = chosen.lam, chosen.sigma
            self.plan_ = chosen.to_dict()
        self.lam_, self.sigma_ = params["lam"], params["sigma"]
        b = params["sigma"] * noise
        self._member = member
        self._active = member.copy()
        self._removed = np.zeros(n, dtype=bool)
        self._w = np.zeros((p, k))
        self._sq_norm = np.full(k, np.inf)  # certified upper bounds of lambda_max(X_k^T X_k)
        self.retrain_count_ = 0
        self.certificate_scope_ = ""
        self.history_: list[RemovalReport] = []
        self.budget_ = RemovalBudget(sigma=params["sigma"], epsilon=params["epsilon"], delta=params["delta"])
        self._train(b, warm=False)
        return self

    def _train(self, b: np.ndarray, *, warm: bool) -> None:
        """(Re)train every class model on the active rows with noise ``b``; reset the budget."""
        params, loss = self._params, LOSSES[self._loss]
        self._b = b
        grads = []
        self._prec: list[_solver.Preconditioner] = []
        for j in range(b.shape[1]):
            a = self._active[:, j]
            res = _solver.newton(
                self._x,
                self._y[:, j],
                a,
                b[:, j],
                lam=params["lam"],
                loss=loss,
                w0=self._w[:, j] if warm else None,
                tol=params["tol"],
                max_iter=params["max_iter"],
            )
            self._w[:, j] = res.w
            grads.append(res.grad_norm)
            shift = params["lam"] * float(a.sum())
            self._prec.append(_solver.Preconditioner(res.hessian, res.d_ref, shift))
            if res.gram_at_zero is not None:
                # + the rounding of adding and subtracting the shift on the diagonal
                bound = gram_upper_eigenvalue(res.gram_at_zero, int(a.sum())) + 8 * _EPS * shift / loss.curvature_at_zero
                self._sq_norm[j] = min(self._sq_norm[j], bound)
            elif not math.isfinite(self._sq_norm[j]):
                g = _solver.weighted_gram(self._x, a)
                self._sq_norm[j] = gram_upper_eigenvalue(g, int(a.sum()))
            if not res.converged:
                warnings.warn(
                    f"{type(self).__name__}: Newton's method stopped after {res.iterations} iterations with gradient norm "
                    f"{res.grad_norm:.3g} > tol={params['tol']:g} (class model {j}); the residual is charged to the certificate.",
                    ConvergenceWarning,
                    stacklevel=3,
                )
        self._z = self._x @ self._w
        self.training_residual_ = float(math.sqrt(sum(g * g for g in grads)))
        self.budget_.reset(self.training_residual_)
        self.charge_estimate_ = self._estimate_charge()

    def _estimate_charge(self) -> float:
        """Expected charge of one single-row removal from the model just trained (see
        :func:`~obliviate.certified.planning.expected_charges`), over a fixed sample of rows.
        """
        from .planning import ESTIMATE_ROWS, PLAN_SEED, expected_charges

        params = self._params
        rows = np.flatnonzero(self._active.sum(axis=1) > 0)
        if rows.size > ESTIMATE_ROWS:
            rows = np.sort(np.random.default_rng(PLAN_SEED).choice(rows, size=ESTIMATE_ROWS, replace=False))
        q = expected_charges(
            self._x,
            self._y,
            self._active,
            self._w,
            [prec.inv for prec in self._prec],
            lam=params["lam"],
            loss=LOSSES[self._loss],
            gamma=params["gamma"],
            bound=params["bound"],
            sq_norm=self._sq_norm,
            rows=rows,
            cg_tol=params["cg_tol"],
        )
        return float(q.mean()) if q.size else 0.0

    # ------------------------------------------------------------------ removal
    def _check_indices(self, indices: Any) -> np.ndarray:
        arr = np.asarray(indices)
        if arr.ndim == 0:
            arr = arr.reshape(1)
        if arr.ndim != 1 or arr.size == 0:
            raise InvalidConfigError(f"remove() expects a non-empty 1-D sequence of row indices; got shape {arr.shape}.")
        if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
            raise InvalidConfigError(f"remove() expects integer row indices; got dtype {arr.dtype}.")
        arr = arr.astype(np.int64)
        n = self._x.shape[0]
        bad = arr[(arr < 0) | (arr >= n)]
        if bad.size:
            raise UnknownSampleError(
                f"Row indices {bad[:5].tolist()} are not in the training data (rows 0..{n - 1} of the X given to fit)."
            )
        uniq, counts = np.unique(arr, return_counts=True)
        if np.any(counts > 1):
            raise DuplicateRequestError(
                f"Row indices {uniq[counts > 1][:5].tolist()} appear more than once in one removal request."
            )
        gone = uniq[self._removed[uniq]]
        if gone.size:
            raise DuplicateRequestError(f"Rows {gone[:5].tolist()} were already removed; each row can be removed once.")
        left = self._active.sum(axis=0) - self._active[uniq].sum(axis=0)
        if np.any(left < 1):
            raise InvalidConfigError(
                "This request would remove every remaining training row of a class model; refit on new data instead."
            )
        return uniq

    def remove(self, indices: Any, *, allow_single_class: bool = False) -> RemovalReport:
        """Remove training rows (positions in the ``X`` given to ``fit``) with one Newton step.

        Several indices are removed at once as one batch (one step, a bound that grows with the
        batch size squared). The certificate is charged the step's bound (``bound=``) plus the
        leftover linear residual; if that would exceed the budget the model is retrained on the
        remaining data with a fresh noise vector (``auto_retrain=True``) or the call fails. The
        fresh noise comes from operating-system entropy; for a seeded model, from the seed and a
        random secret kept with it in the secret file (never from public values alone).

        Args:
            indices: Row positions to remove.
            allow_single_class: Let a binary model lose every remaining row of one of its two
                classes (it would go on as a one-class model); refused by default.

        Raises:
            UnknownSampleError: an index outside ``0..n-1``.
            DuplicateRequestError: an index repeated, or already removed.
            InvalidConfigError: a binary model would be left with one class (unless ``allow_single_class``).
            BudgetExhaustedError: over budget with ``auto_retrain=False`` (nothing changes).
        """
        check_is_fitted(self, "budget_")
        if getattr(self, "_x", None) is None:
            raise InvalidConfigError("This model was loaded without its training data; load it with X and y to remove rows.")
        idx = self._check_indices(indices)
        if self.mode_ == "binary" and not allow_single_class:
            left = self._active[:, 0] > 0
            left[idx] = False
            kept = np.unique(self._y[left, 0])
            if kept.size < 2:
                gone = self.classes_[0 if (kept.size and kept[0] > 0) else 1].item()
                raise InvalidConfigError(
                    f"This request removes every remaining training row of class {gone!r}: the binary model would be "
                    "left with one class and could no longer tell the two apart. Refit on new data, or pass "
                    "allow_single_class=True (--allow-single-class) to remove them anyway."
                )
        start = time.perf_counter()
        params, loss = self._params, LOSSES[self._loss]
        lam, gamma = params["lam"], params["gamma"]
        x, y = self._x, self._y
        active_rows = self._active[idx]  # m x K
        m = active_rows.sum(axis=0)
        touched = np.flatnonzero(m > 0)
        active_new = self._active.copy()
        active_new[idx] = 0.0
        n_new = active_new.sum(axis=0)
        shifts = lam * n_new
        # Delta_k = sum_{r in R} grad l_r(w_k) + m_k lam w_k (the removed rows' share of the gradient)
        delta = x[idx].T @ (active_rows * loss.d1(self._z[idx], y[idx])) + lam * m * self._w
        states, ops, refreshed = {}, [], []
        t_prec = time.perf_counter()
        for j in touched:
            prec = self._prec[j]
            if prec.stale or prec.rows + m[j] > max(_solver.FOLD_ROWS, x.shape[1] // 2):
                self._refresh(j, active_new[:, j], shifts[j])  # reference = the exact Hessian now
                refreshed.append(j)
                states[j] = self._prec[j].with_removed(x[:0], idx[:0])
            else:
                rows = idx[active_rows[:, j] > 0]
                states[j] = prec.with_removed(x[rows], rows)
            ops.append(self._prec[j].operator(states[j], shifts[j]))
        t_prec = time.perf_counter() - t_prec
        dm = active_new[:, touched] * loss.d2(self._z[:, touched], y[:, touched])
        x_norm = np.empty(len(touched))
        for col, j in enumerate(touched):
            frob = float(active_new[:, j] @ self._row_sq) * (1.0 + 4 * x.shape[1] * _EPS)
            x_norm[col] = math.sqrt(min(self._sq_norm[j], frob))
        # worst case (Theorem 1 with the actual ||w||; ||grad l_r + lam w|| <= C + lam ||w|| as ||x_r|| <= 1)
        c_grad = loss.lipschitz + lam * np.linalg.norm(self._w[:, touched], axis=0)
        with np.errstate(invalid="ignore"):
            worst_base = np.where(np.isfinite(c_grad), m[touched] * c_grad, np.inf)
        mask = active_new[:, touched]

        def step_bounds(s: np.ndarray, xs: np.ndarray) -> np.ndarray:
            if params["bound"] == "worst":
                return gamma * worst_base**2 / (lam * lam * n_new[touched])
            return gamma * x_norm * np.linalg.norm(s, axis=0) * np.linalg.norm(xs * mask, axis=0)

        sol = _solver.pcg(
            self._x_op,
            dm,
            shifts[touched],
            delta[:, touched],
            ops,
            tolerance=lambda s, xs: params["cg_tol"] * step_bounds(s, xs),
            max_iter=params["max_cg_iter"],
        )
        taylor = gamma * x_norm * np.linalg.norm(sol.step, axis=0) * np.linalg.norm(sol.x_step * mask, axis=0)
        # an inexact step is at most ||r|| / (lam n') longer than ||Delta|| / (lam n')
        with np.errstate(invalid="ignore"):
            worst = np.where(
                np.isfinite(worst_base), gamma * (worst_base + sol.residual) ** 2 / (lam * lam * n_new[touched]), np.inf
            )
        data_dep = float(np.linalg.norm(taylor))
        worst_case = float(np.linalg.norm(worst)) if np.all(np.isfinite(worst)) else math.inf
        linear = float(np.linalg.norm(sol.residual))
        charge = (data_dep if params["bound"] == "data" else worst_case) + linear
        retrained, t_retrain = False, 0.0
        if self.budget_.can_spend(charge):
            self._w[:, touched] += sol.step
            self._z[:, touched] += sol.x_step
            self._active = active_new
            self._removed[idx] = True
            t_commit = time.perf_counter()
            for col, j in enumerate(touched):
                self._prec[j].commit(states[j], shifts[j])
                self._prec[j].record(int(sol.iterations[col]), float(sol.contraction[col]))
            t_prec += time.perf_counter() - t_commit
            self.budget_.step(charge)
        elif params["auto_retrain"]:
            self._active = active_new
            self._removed[idx] = True
            self.retrain_count_ += 1
            t_retrain = time.perf_counter()
            fresh = params["sigma"] * self._retrain_rng().standard_normal(self._w.shape)  # b itself may not be loaded
            self._train(fresh, warm=True)
            t_retrain = time.perf_counter() - t_retrain
            charge, retrained = 0.0, True
        else:
            for j in refreshed:  # built without rows that stay: rebuild before the next solve
                self._prec[j].stale = True
            self.budget_.step(charge)  # raises BudgetExhaustedError; nothing else was committed
            raise AssertionError("unreachable")  # pragma: no cover
        report = RemovalReport(
            indices=tuple(int(i) for i in idx),
            charged=float(charge),
            data_dependent=data_dep,
            worst_case=worst_case,
            linear_residual=linear,
            cg_iterations=int(sol.iterations.max()) if sol.iterations.size else 0,
            beta=self.budget_.spent,
            epsilon=self.budget_.epsilon_spent(),
            retrained=retrained,
            seconds=time.perf_counter() - start,
            scope=self.certificate_scope_,
            seconds_hvp=sol.seconds_hvp,
            seconds_preconditioner=t_prec + sol.seconds_preconditioner,
            seconds_retrain=t_retrain,
            refreshed=bool(refreshed),
            contraction=float(np.nanmax(sol.contraction)) if np.any(np.isfinite(sol.contraction)) else None,
        )
        self.history_.append(report)
        return report

    def _retrain_rng(self) -> np.random.Generator:
        """The generator of a retraining's fresh noise, after ``retrain_count_`` and the removal were counted.

        Operating-system entropy, unless the model was seeded on purpose *and* holds the random
        secret drawn at its fit (kept, like the seed, only in the secret file): then the seed,
        that secret and the retraining's position (retrain count, rows removed), so a seeded run
        is reproducible by whoever holds its secret file and by nobody from the public files.
        """
        rs, secret = self.random_state, getattr(self, "_noise_secret", None)
        if isinstance(rs, np.random.Generator):  # the caller's own generator (in memory only) goes on
            return rs
        if isinstance(rs, (int, np.integer)) and secret is not None:
            entropy = [int(rs), int.from_bytes(secret, "big"), self.retrain_count_, self.n_removed_]
            return np.random.default_rng(np.random.SeedSequence(entropy))
        return np.random.default_rng()  # a SeedSequence from os.urandom, recorded nowhere

    def _refresh(self, j: int, active: np.ndarray, shift: float) -> None:
        d = LOSSES[self._loss].d2(self._z[:, j], self._y[:, j])
        self._prec[j] = _solver.Preconditioner(_solver.weighted_gram(self._x, active * d, shift), d, shift)

    # ------------------------------------------------------------------ certificate
    @property
    def residual_bound_(self) -> float:
        """The accumulated gradient-residual bound β (training residual included)."""
        check_is_fitted(self, "budget_")
        return self.budget_.spent

    def certified_epsilon(self, delta: float | None = None) -> float:
        """The ε certified now, at ``delta`` (default: the model's δ): ``c(delta) beta / sigma``."""
        from .bounds import certified_epsilon

        check_is_fitted(self, "budget_")
        return certified_epsilon(self.budget_.spent, self._params["sigma"], self._params["delta"] if delta is None else delta)

    def budget_left(self) -> float:
        """What can still be charged before the next removal triggers a retrain."""
        check_is_fitted(self, "budget_")
        return self.budget_.remaining()

    def expected_charge(self) -> float:
        """The expected charge of one more single-row removal: the larger of the estimate made when
        the model was last (re)trained (``charge_estimate_``) and the mean charge of the removals
        since then (a batch of ``m`` rows counted as ``m`` removals of ``charge / m^2`` each, as the
        bound grows with ``m^2``).
        """
        check_is_fitted(self, "budget_")
        since = []
        for report in reversed(self.history_):
            if report.retrained:
                break
            m = len(report.indices)
            since += [report.charged / (m * m)] * m
        return max(self.charge_estimate_, float(np.mean(since))) if since else self.charge_estimate_

    def expected_removals_left(self) -> int:
        """How many more single-row removals the budget is expected to allow before a retrain:
        ``floor(budget_left / expected_charge)``, at most the rows left minus one. An estimate (the
        charges vary between rows and grow as the weights move), not a promise.
        """
        check_is_fitted(self, "budget_")
        rows_left = int((self._active.sum(axis=1) > 0).sum()) if getattr(self, "_active", None) is not None else None
        if rows_left is None:
            rows_left = int((~self._removed).sum())
        cap = max(rows_left - 1, 0)
        per_row = self.expected_charge()
        if per_row <= 0.0:
            return cap
        return int(min(math.floor(self.budget_.remaining() / per_row), cap))

    def _unperturbed_weights(self) -> np.ndarray:
        """The same model (same λ, same remaining rows) trained without noise (``b = 0``)."""
        key = (self.retrain_count_, self.n_removed_)
        cached = getattr(self, "_unperturbed_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        if getattr(self, "_x", None) is None:
            raise InvalidConfigError("The unperturbed comparison needs the training data; load the model with X and y.")
        params = self._params
        w = np.empty_like(self._w)
        for j in range(w.shape[1]):
            res = _solver.newton(
                self._x,
                self._y[:, j],
                self._active[:, j],
                np.zeros(w.shape[0]),
                lam=params["lam"],
                loss=LOSSES[self._loss],
                w0=self._w[:, j],
                tol=params["tol"],
                max_iter=params["max_iter"],
            )
            w[:, j] = res.w
        self._unperturbed_cache = (key, w)
        return w

    def unperturbed_score(self, X: Any, y: Any) -> float:
        """Accuracy on ``X, y`` of the unperturbed fit of the same model: the same λ and remaining
        training rows, no noise (``b = 0``). Not certified: the comparison that shows what the
        certificate costs (:meth:`accuracy_cost`). Needs the training data attached.
        """
        check_is_fitted(self, "budget_")
        w = self._unperturbed_weights()
        scores = self._prepare(self._as_features(X, fitted=True)) @ w
        if self.mode_ == "binary":
            pred = self.classes_[(scores[:, 0] > 0).astype(int)]
        else:
            pred = self.classes_[np.argmax(scores, axis=1)]
        return float(np.mean(pred == np.asarray(y.detach().cpu().numpy() if hasattr(y, "detach") else y)))

    def accuracy_cost(self, X: Any, y: Any) -> dict[str, float]:
        """``{"certified", "unperturbed", "cost"}``: the accuracies on ``X, y`` of this model and of
        its unperturbed fit (:meth:`unperturbed_score`), and the difference (what certification costs).
        """
        certified = float(self.score(X, y))
        unperturbed = self.unperturbed_score(X, y)
        return {"certified": certified, "unperturbed": unperturbed, "cost": unperturbed - certified}

    @property
    def n_removed_(self) -> int:
        """How many training rows were removed so far."""
        check_is_fitted(self, "budget_")
        return int(self._removed.sum())

    @property
    def removed_(self) -> np.ndarray:
        """Sorted positions of the removed training rows."""
        check_is_fitted(self, "budget_")
        return np.flatnonzero(self._removed)

    def gradient_residual(self) -> float:
        """The true gradient residual of the current weights on the remaining data, from scratch
        (``+ b`` included; Euclidean norm over the class models). Needs the secret noise, so it is
        unavailable after :meth:`load` without ``secret_path``.
        """
        from .bounds import gradient_residual

        check_is_fitted(self, "budget_")
        if getattr(self, "_b", None) is None:
            raise InvalidConfigError(
                "The noise vector b is not loaded; pass secret_path= to load() to compute the true residual."
            )
        return gradient_residual(
            self._x, self._y, self._w, self._b, lam=self._params["lam"], loss=self._loss, weights=self._active
        )

    # ------------------------------------------------------------------ prediction
    @property
    def coef_(self) -> np.ndarray:
        check_is_fitted(self, "_w")
        d = self.n_features_in_
        return self._w[:d].T.copy()

    @property
    def intercept_(self) -> np.ndarray:
        check_is_fitted(self, "_w")
        return self._w[-1].copy() if self._params["fit_intercept"] else np.zeros(self._w.shape[1])

    def decision_function(self, X: Any) -> np.ndarray:
        """Scores ``x~^T w`` on the normalised rows: ``(n,)`` in binary mode (> 0 means
        ``classes_[1]``), ``(n, K)`` in ovr mode.
        """
        check_is_fitted(self, "_w")
        scores = self._prepare(self._as_features(X, fitted=True)) @ self._w
        return scores[:, 0] if self.mode_ == "binary" else scores

    def predict(self, X: Any) -> np.ndarray:
        """Class labels (argmax over the one-vs-rest scores, or the sign of the binary score)."""
        scores = self.decision_function(X)
        if self.mode_ == "binary":
            return self.classes_[(scores > 0).astype(int)]
        return self.classes_[np.argmax(scores, axis=1)]

    # ------------------------------------------------------------------ persistence
    def _public_state(self) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        check_is_fitted(self, "budget_")
        params = self.get_params()
        params["random_state"] = None  # a seed determines b: it goes to the secret file only
        tensors = {
            "weights": np.ascontiguousarray(self._w),
            "removed": self._removed.astype(np.uint8),
            "member": self._member.astype(np.uint8),
            "sq_norm": np.ascontiguousarray(self._sq_norm),
        }
        meta = {
            "format": FORMAT,
            "estimator": type(self).__name__,
            "params": json.dumps(params, default=_json_default),
            "classes": json.dumps(self.classes_.tolist(), default=_json_default),
            "mode": self.mode_,
            "n_features_in": str(self.n_features_in_),
            "data_sha256": self._data_digest,
            "budget": json.dumps(self.budget_.state_dict()),
            "retrain_count": str(self.retrain_count_),
            "resolved": json.dumps({"lam": self._params["lam"], "sigma": self._params["sigma"]}),
            "plan": json.dumps(self.plan_, default=_json_default),
            "charge_estimate": repr(self.charge_estimate_),
            "certificate_scope": self.certificate_scope_,
            "training_residual": repr(self.training_residual_),
            "history": json.dumps([r.to_dict() for r in self.history_], default=_json_default),
        }
        return tensors, meta

    def to_bytes(self) -> bytes:
        """The model as safetensors bytes: weights, removal state and certificate; never ``b``."""
        from safetensors.numpy import save

        tensors, meta = self._public_state()
        return save(tensors, metadata=meta)

    def save(self, path: str | os.PathLike[str], *, secret_path: str | os.PathLike[str] | None = None) -> Path:
        """Write the model (atomically) as safetensors. The noise ``b`` is *not* in it: it is only
        needed to compute the true residual (removals and retraining never need the old ``b``),
        and publishing it next to the weights would void the guarantee. Neither is the seed of a
        seeded fit, which determines ``b``. ``secret_path`` writes ``b`` (and the seed with the random
        secret of later retrainings' noise, if seeded) to a separate file (mode 0600), to be kept private.
        """
        from safetensors.numpy import save

        path = Path(path)
        atomic_write(path, self.to_bytes())
        if secret_path is not None:
            meta = {"format": FORMAT + "+secret", "data_sha256": self._data_digest, "model_sha256": file_digest(path)}
            if isinstance(self.random_state, (int, np.integer)):
                meta["random_state"] = str(int(self.random_state))
                if getattr(self, "_noise_secret", None) is not None:
                    meta["noise_secret"] = self._noise_secret.hex()
            atomic_write(secret_path, save({"noise": np.ascontiguousarray(self._b)}, metadata=meta), private=True)
        return path

    @classmethod
    def from_bytes(cls, data: bytes, X: Any = None, y: Any = None, *, secret: bytes | None = None) -> CertifiedLinearClassifier:
        """Rebuild a model from :meth:`to_bytes`; see :meth:`load`."""
        tensors, meta = read_safetensors(data)
        if meta.get("format") != FORMAT:
            raise IncompatibleModelError(f"Not a certified-removal model (format {meta.get('format')!r}, expected {FORMAT!r}).")
        if meta.get("estimator") != cls.__name__ and cls is not CertifiedLinearClassifier:
            raise IncompatibleModelError(f"The file holds a {meta.get('estimator')}, not a {cls.__name__}.")
        target = cls if cls is not CertifiedLinearClassifier else _ESTIMATORS[meta["estimator"]]
        model = target(**json.loads(meta["params"]))
        model._params = model._validated()
        resolved = json.loads(meta["resolved"]) if "resolved" in meta else {}
        for key in ("lam", "sigma"):  # the planned values (a file without them had both given)
            model._params[key] = float(resolved.get(key, model._params[key]))
        model.lam_, model.sigma_ = model._params["lam"], model._params["sigma"]
        model.plan_ = json.loads(meta["plan"]) if "plan" in meta else None
        model.charge_estimate_ = float(meta.get("charge_estimate", "0.0"))
        model.classes_ = np.asarray(json.loads(meta["classes"]))
        model.mode_ = meta["mode"]
        model.n_features_in_ = int(meta["n_features_in"])
        model._data_digest = meta["data_sha256"]
        model._w = np.array(tensors["weights"], dtype=np.float64)
        model._removed = tensors["removed"].astype(bool)
        model._member = tensors["member"].astype(np.float64)
        model._sq_norm = np.array(tensors["sq_norm"], dtype=np.float64)
        model.retrain_count_ = int(meta["retrain_count"])
        model.certificate_scope_ = meta.get("certificate_scope", "")
        model.training_residual_ = float(meta["training_residual"])
        p = model._params
        model.budget_ = RemovalBudget(sigma=p["sigma"], epsilon=p["epsilon"], delta=p["delta"])
        model.budget_.load_state_dict(json.loads(meta["budget"]))
        model.history_ = [RemovalReport(**{**r, "indices": tuple(r["indices"])}) for r in json.loads(meta["history"])]
        model._b = None
        model._noise_secret = None
        if secret is not None:
            s_tensors, s_meta = read_safetensors(secret)
            if s_meta.get("data_sha256") != model._data_digest or s_tensors["noise"].shape != model._w.shape:
                raise IncompatibleModelError("The secret file belongs to another model (its data digest or shape differs).")
            model._b = np.array(s_tensors["noise"], dtype=np.float64)
            if "random_state" in s_meta:  # a seeded fit: its seed continues the retraining stream
                model.random_state = int(s_meta["random_state"])
                # without the secret (a file from an older version) the retrainings draw from the OS
                model._noise_secret = bytes.fromhex(s_meta["noise_secret"]) if "noise_secret" in s_meta else None
        if X is not None:
            if y is None:
                raise InvalidConfigError("load() needs y together with X to resume removals.")
            model._attach(X, y)
        return model

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        X: Any = None,
        y: Any = None,
        *,
        secret_path: str | os.PathLike[str] | None = None,
        allow_insecure: bool = False,
    ) -> CertifiedLinearClassifier:
        """Load a saved model. Without ``X, y`` it predicts; with the training data it was fitted on
        (checked by digest) it can go on removing. ``secret_path`` restores ``b`` (for
        :meth:`gradient_residual` only) and, for a seeded fit, the seed of later retrainings'
        noise; without it that noise comes from operating-system entropy. A secret file that group
        or others can read is refused (``save`` writes it 0600) unless ``allow_insecure=True``.

        Raises:
            InvalidConfigError: the file does not exist, or the secret file is readable by others.
            IncompatibleModelError: not a model file, or ``X, y`` are not its training data.
        """
        path = Path(path)
        if not path.is_file():
            raise InvalidConfigError(f"Model file {str(path)!r} does not exist.")
        secret = read_secret_file(secret_path, allow_insecure=allow_insecure) if secret_path is not None else None
        return cls.from_bytes(path.read_bytes(), X, y, secret=secret)

    def _attach(self, X: Any, y: Any) -> None:
        """Re-attach the training data after loading and rebuild the removal state."""
        x = self._as_features(X, fitted=True)
        labels = np.asarray(y.detach().cpu().numpy() if hasattr(y, "detach") else y)
        if labels.ndim != 1 or labels.shape[0] != x.shape[0]:
            raise InvalidConfigError(f"y must be 1-D with one label per row of X ({x.shape[0]}); got shape {labels.shape}.")
        classes, y_index = np.unique(labels, return_inverse=True)
        if len(classes) != len(self.classes_) or self._digest(x, y_index) != self._data_digest:
            raise IncompatibleModelError("X, y are not the training data this model was fitted on (their SHA-256 differs).")
        self._x = self._prepare(x)
        self._x_op = _solver.operator_matrix(self._x)  # what the removal's Hessian-vector products read
        self._row_sq = np.einsum("ij,ij->i", self._x, self._x)
        k = self._w.shape[1]
        if self.mode_ == "binary":
            self._y = np.where(y_index == 1, 1.0, -1.0)[:, None]
        else:
            self._y = np.where(y_index[:, None] == np.arange(k)[None, :], 1.0, -1.0)
        self._active = self._member * (~self._removed)[:, None]
        self._z = self._x @ self._w
        lam = self._params["lam"]
        self._prec = []
        for j in range(k):
            shift = lam * float(self._active[:, j].sum())
            d = LOSSES[self._loss].d2(self._z[:, j], self._y[:, j])
            self._prec.append(_solver.Preconditioner(_solver.weighted_gram(self._x, self._active[:, j] * d, shift), d, shift))


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, as hex."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class CertifiedLogisticRegression(CertifiedLinearClassifier):
    """L2-regularised logistic regression with certified removal (Guo et al., ICML 2020,
    arXiv:1911.03030): objective perturbation, Newton removal, accumulated gradient-residual
    bound, (ε, δ) from σ, and retraining when the budget runs out (Algorithm 2).

    Data needs: the training features and labels (removal works on the remaining data). Cost:
    training ~5-10 Newton steps (an ``n p^2`` Hessian each, per class); one removal a few exact
    Hessian-vector products (one pass over the features each).

    The loss is ``l(z, y) = log(1 + exp(-y z))`` (``gamma`` = 1/4 in the paper, ``C`` = 1).
    Every parameter is documented on :class:`CertifiedLinearClassifier`.

    Example:
        >>> from sklearn.datasets import load_breast_cancer
        >>> X, y = load_breast_cancer(return_X_y=True)
        >>> model = CertifiedLogisticRegression(removals=20).fit(X, y)  # lam and sigma planned for 20 removals
        >>> model.plan_["rule"], model.budget_.budget >= 2 * 20 * model.plan_["expected_charge_per_removal"]
        ('lam and sigma planned', True)
        >>> report = model.remove([0, 1])
        >>> model.gradient_residual() <= model.residual_bound_
        True
    """

    _loss = "logistic"

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probabilities: ``[1 - s(f), s(f)]`` (binary) or the one-vs-rest sigmoids normalised to sum 1."""
        scores = self.decision_function(X)
        if self.mode_ == "binary":
            p1 = expit(scores)
            return np.column_stack([1.0 - p1, p1])
        probs = expit(scores)
        return probs / probs.sum(axis=1, keepdims=True)


class CertifiedRidgeClassifier(CertifiedLinearClassifier):
    """Ridge classifier (squared loss on ``+-1`` targets) with certified removal.

    With a quadratic loss the Newton step is exact (``gamma = 0``): removal equals retraining
    with the same noise up to the conjugate-gradient tolerance, and only that residual is charged.
    It is the oracle of the removal machinery. ``bound="worst"`` is refused (the squared loss has
    no gradient bound ``C``). Parameters as on :class:`CertifiedLinearClassifier`.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> X, y = rng.normal(size=(50, 3)), np.repeat([0, 1], 25)
        >>> model = CertifiedRidgeClassifier(lam=0.1, cg_tol=1e-12, random_state=0).fit(X, y)
        >>> _ = model.remove([3])
        >>> retrained = CertifiedRidgeClassifier(lam=0.1, random_state=0).fit(np.delete(X, 3, 0), np.delete(y, 3))
        >>> bool(np.abs(model.coef_ - retrained.coef_).max() < 1e-10)
        True
    """

    _loss = "squared"


_ESTIMATORS: dict[str, type[CertifiedLinearClassifier]] = {
    "CertifiedLogisticRegression": CertifiedLogisticRegression,
    "CertifiedRidgeClassifier": CertifiedRidgeClassifier,
}
