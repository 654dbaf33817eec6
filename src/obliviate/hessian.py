"""The Hessian spectrum of a model's loss: Hessian-vector products, power iteration, Lanczos.

Hessian-vector products go through :mod:`torch.func` (forward-over-reverse ``jvp(grad(f))``,
falling back to autograd's double backward where an operation has no forward-mode rule; scaled
dot-product attention runs on its math backend, whose ops have second derivatives), with the
model as a pure function of its trainable parameters (frozen ones and buffers held fixed), so
nothing accumulates in ``.grad`` and no graph is kept between products.

* :func:`top_eigenvalue`: PyHessian's power iteration (random start, Rayleigh quotient,
  stop when the relative change is below ``tol`` or after ``max_iter`` products). It converges
  to the eigenvalue of largest magnitude and returns it with its sign.
* :func:`lanczos`: the ``k`` extreme eigenvalues by Lanczos with full reorthogonalisation.
* :func:`hessian_matrix`: the explicit Hessian (small models only; for tests and checks).

The unrolling-SGD paper's "largest singular value" of the (symmetric) Hessian is ``|λ|max``,
which is what power iteration converges to: ``sigma_mode="abs_eig"`` (default). The paper's
code took ``sqrt(λ)`` instead (NaN for a negative eigenvalue, which then poisons running
means): ``sigma_mode="sqrt_eig"`` reproduces it.

By default the loss is evaluated with the model in eval mode (BatchNorm running statistics,
dropout off), as PyHessian does, and every submodule's train/eval mode is restored afterwards
(PyHessian left the model in eval mode, so the training that followed ran BatchNorm on running
statistics). ``train_mode=True`` uses batch statistics instead, on a private copy whose
BatchNorm layers do not track running statistics, so the model's buffers never change.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, jvp

from ._utils import eval_mode
from .errors import InvalidConfigError, UnlearningWarning
from .models.adapter import logits_of

__all__ = ["HessianSpectrum", "SIGMA_MODES", "hvp_operator", "top_eigenvalue", "lanczos", "hessian_matrix", "sigma_of"]

SIGMA_MODES: tuple[str, ...] = ("abs_eig", "sqrt_eig")
LogitLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class HessianSpectrum:
    """Eigenvalues found by :func:`top_eigenvalue` or :func:`lanczos`.

    Attributes:
        eigenvalues: Signed eigenvalues, ordered as requested (largest magnitude first by
            default).
        sigma: The "singular value" of the first one: ``|λ|`` (``abs_eig``) or ``sqrt(λ)``
            (``sqrt_eig``, NaN when λ < 0).
        iterations: Hessian-vector products used.
        converged: Whether the stopping tolerance was met.
    """

    eigenvalues: np.ndarray
    sigma: float
    iterations: int
    converged: bool

    @property
    def eigenvalue(self) -> float:
        """The first (dominant) eigenvalue, signed."""
        return float(self.eigenvalues[0]) if len(self.eigenvalues) else float("nan")


def sigma_of(eigenvalue: float, sigma_mode: str = "abs_eig") -> float:
    """``|λ|`` (``abs_eig``, the largest singular value of a symmetric matrix) or the
    unrolling-SGD code's ``sqrt(λ)`` (``sqrt_eig``; NaN for λ < 0).
    """
    if sigma_mode not in SIGMA_MODES:
        raise InvalidConfigError(f"The 'sigma_mode' argument must be one of {', '.join(SIGMA_MODES)}; got {sigma_mode!r}.")
    if sigma_mode == "abs_eig":
        return abs(float(eigenvalue))
    if eigenvalue < 0:
        warnings.warn(
            f"sigma_mode='sqrt_eig' of a negative eigenvalue ({eigenvalue:.4g}) is NaN (the unrolling-SGD code's convention); "
            "use sigma_mode='abs_eig'.",
            UnlearningWarning,
            stacklevel=3,
        )
        return float("nan")
    return math.sqrt(float(eigenvalue))


def _default_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y)


class hvp_operator:  # noqa: N801 - used like a function
    """The Hessian of ``loss(model(x), y)`` with respect to the trainable parameters, as a
    linear operator on flat vectors.

    Args:
        model: The model (not changed; see the module docstring for its mode).
        x: Inputs of the batch the loss is taken over.
        y: Labels.
        loss: ``loss(logits, y) -> scalar``; default mean cross-entropy.
        train_mode: BatchNorm on batch statistics (on a private copy) instead of eval mode.

    Attributes:
        size: Number of trainable parameters P.
        dtype: Dtype of the parameters.
        device: Their device.
        calls: Products computed so far.
    """

    def __init__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, loss: LogitLoss | None = None, train_mode: bool = False
    ) -> None:
        self.loss = loss or _default_loss
        if train_mode:
            net = copy.deepcopy(model)
            torch.func.replace_all_batch_norm_modules_(net)
            net.train()
            for m in net.modules():
                if isinstance(m, nn.modules.dropout._DropoutNd):
                    m.eval()
            self.model, self._restore = net, False
        else:
            self.model, self._restore = model, True
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        if not named:
            raise InvalidConfigError(f"{type(model).__name__} has no trainable parameters; the Hessian is empty.")
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.params = {n: p.detach() for n, p in named}
        self.frozen = {n: p.detach() for n, p in self.model.named_parameters() if not p.requires_grad}
        self.buffers = {n: b.detach() for n, b in self.model.named_buffers()}
        self.size = sum(p.numel() for _, p in named)
        self.dtype = named[0][1].dtype
        self.device = named[0][1].device
        self.x, self.y = x, y
        self.calls = 0
        self._forward_mode = True

    def _f(self, p: dict[str, torch.Tensor]) -> torch.Tensor:
        out = functional_call(self.model, ({**p, **self.frozen}, self.buffers), (self.x,))
        return self.loss(logits_of(out), self.y)

    def split(self, v: torch.Tensor) -> dict[str, torch.Tensor]:
        """Cut a flat vector into ``{parameter name: tensor}``."""
        out, start = {}, 0
        for n, shape in zip(self.names, self.shapes, strict=True):
            k = math.prod(shape)
            out[n] = v[start : start + k].reshape(shape)
            start += k
        return out

    def flatten(self, d: dict[str, torch.Tensor]) -> torch.Tensor:
        """Concatenate ``{parameter name: tensor}`` into one flat vector."""
        return torch.cat([d[n].reshape(-1) for n in self.names])

    def _product(self, v: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        # fused attention kernels have no second derivative: attention runs on the math backend
        with sdpa_kernel([SDPBackend.MATH]):
            if self._forward_mode:
                try:
                    return jvp(grad(self._f), (self.params,), (v,))[1]
                except (RuntimeError, NotImplementedError):  # an op without a forward-mode rule
                    self._forward_mode = False
            # plain autograd double backward (torch.func's grad-of-grad is wrong for LayerNorm /
            # BatchNorm in torch 2.14: its Hessian is not even symmetric)
            with torch.enable_grad():
                params = {n: p.detach().requires_grad_(True) for n, p in self.params.items()}
                grads = torch.autograd.grad(self._f(params), list(params.values()), create_graph=True)
                dot = sum((g * v[n]).sum() for g, n in zip(grads, self.names, strict=True))
                hv = torch.autograd.grad(dot, list(params.values()), allow_unused=True)
            return {n: (h if h is not None else torch.zeros_like(p)) for (n, p), h in zip(params.items(), hv, strict=True)}

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` for a flat vector ``v`` (any dtype/device; returned like the parameters)."""
        v = v.to(device=self.device, dtype=self.dtype)
        self.calls += 1
        if self._restore:
            with eval_mode(self.model):
                return self.flatten(self._product(self.split(v)))
        return self.flatten(self._product(self.split(v)))


def _check_common(max_iter: int, tol: float, sigma_mode: str) -> None:
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise InvalidConfigError(f"The 'max_iter' argument must be an int >= 1; got {max_iter!r}.")
    if not isinstance(tol, (int, float)) or isinstance(tol, bool) or not tol > 0:
        raise InvalidConfigError(f"The 'tol' argument must be a positive float; got {tol!r}.")
    if sigma_mode not in SIGMA_MODES:
        raise InvalidConfigError(f"The 'sigma_mode' argument must be one of {', '.join(SIGMA_MODES)}; got {sigma_mode!r}.")


def top_eigenvalue(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    loss: LogitLoss | None = None,
    max_iter: int = 100,
    tol: float = 1e-3,
    seed: int = 0,
    sigma_mode: str = "abs_eig",
    train_mode: bool = False,
) -> HessianSpectrum:
    """The eigenvalue of largest magnitude of the loss Hessian, by power iteration.

    PyHessian's defaults (``max_iter=100``, ``tol=1e-3``): stop when
    ``|λ_new - λ_old| / (|λ_old| + 1e-6) < tol``.

    Args:
        model: The model; its parameters, buffers and every submodule's mode are unchanged.
        x: Inputs of the batch (e.g. a fixed probe batch of training samples).
        y: Labels.
        loss: ``loss(logits, y) -> scalar``; default mean cross-entropy.
        max_iter: Maximum Hessian-vector products.
        tol: Relative tolerance on the eigenvalue.
        seed: Seed of the random start vector (its own generator; global RNGs untouched).
        sigma_mode: "abs_eig" (|λ|, default) or "sqrt_eig" (the paper code's sqrt(λ)).
        train_mode: Use BatchNorm batch statistics (see the module docstring).

    Returns:
        A :class:`HessianSpectrum` with one signed eigenvalue.

    Example:
        >>> from torch import nn
        >>> torch.manual_seed(0) and None
        >>> model = nn.Linear(3, 2)
        >>> spec = top_eigenvalue(model, torch.randn(16, 3), torch.randint(0, 2, (16,)), tol=1e-8, max_iter=500)
        >>> spec.sigma > 0
        True
    """
    _check_common(max_iter, tol, sigma_mode)
    op = hvp_operator(model, x, y, loss=loss, train_mode=train_mode)
    gen = torch.Generator().manual_seed(int(seed))
    v = torch.randn(op.size, generator=gen, dtype=torch.float64)
    v /= v.norm()
    lam: float | None = None
    converged = False
    for _ in range(max_iter):
        hv = op(v).double().cpu()
        new = float(hv @ v)
        norm = float(hv.norm())
        if norm == 0.0:
            lam, converged = 0.0, True
            break
        v = hv / norm
        if lam is not None and abs(new - lam) / (abs(lam) + 1e-6) < tol:
            lam, converged = new, True
            break
        lam = new
    value = float(lam)  # type: ignore[arg-type]
    return HessianSpectrum(np.array([value]), sigma_of(value, sigma_mode), op.calls, converged)


def lanczos(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    k: int = 1,
    loss: LogitLoss | None = None,
    num_iter: int | None = None,
    which: str = "LM",
    tol: float = 1e-6,
    seed: int = 0,
    sigma_mode: str = "abs_eig",
    train_mode: bool = False,
) -> HessianSpectrum:
    """The ``k`` extreme eigenvalues of the loss Hessian by Lanczos iteration.

    Full reorthogonalisation (twice) against all previous Lanczos vectors keeps the Ritz values
    free of spurious copies; memory is ``num_iter`` vectors of P parameters.

    Args:
        model: The model (unchanged, modes restored).
        x: Inputs of the batch.
        y: Labels.
        k: How many eigenvalues.
        loss: ``loss(logits, y) -> scalar``; default mean cross-entropy.
        num_iter: Lanczos steps (Hessian-vector products); default ``min(P, max(2k + 20, 40))``.
            With ``num_iter = P`` the result is exact up to rounding.
        which: "LM" (largest magnitude, default) or "LA" (largest algebraic).
        tol: Convergence test on the Ritz residuals, relative to the largest Ritz value.
        seed: Seed of the start vector.
        sigma_mode: "abs_eig" or "sqrt_eig", applied to the first eigenvalue.
        train_mode: Use BatchNorm batch statistics.

    Returns:
        A :class:`HessianSpectrum` with ``k`` signed eigenvalues in the requested order.
    """
    from scipy.linalg import eigh_tridiagonal

    _check_common(1 if num_iter is None else num_iter, tol, sigma_mode)
    if which not in ("LM", "LA"):
        raise InvalidConfigError(f"The 'which' argument must be 'LM' or 'LA'; got {which!r}.")
    op = hvp_operator(model, x, y, loss=loss, train_mode=train_mode)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= op.size:
        raise InvalidConfigError(f"The 'k' argument must be an int in [1, {op.size}] (the number of parameters); got {k!r}.")
    m = min(op.size, max(2 * k + 20, 40)) if num_iter is None else min(num_iter, op.size)
    if m < k:
        raise InvalidConfigError(f"The 'num_iter' argument must be at least k={k}; got {num_iter}.")
    gen = torch.Generator().manual_seed(int(seed))
    q = torch.randn(op.size, generator=gen, dtype=torch.float64)
    q /= q.norm()
    basis = torch.zeros(m, op.size, dtype=torch.float64)
    alphas, betas = [], []
    for j in range(m):
        basis[j] = q
        w = op(q).double().cpu()
        alpha = float(w @ q)
        alphas.append(alpha)
        for _ in range(2):  # full reorthogonalisation, twice ("twice is enough")
            w -= basis[: j + 1].T @ (basis[: j + 1] @ w)
        beta = float(w.norm())
        if j == m - 1 or beta <= 1e-12 * max(1.0, abs(alpha)):
            betas.append(beta)
            break
        betas.append(beta)
        q = w / beta
    n = len(alphas)
    theta, s = eigh_tridiagonal(np.array(alphas), np.array(betas[: n - 1]))
    order = np.argsort(-np.abs(theta)) if which == "LM" else np.argsort(-theta)
    chosen = order[: min(k, n)]
    residuals = np.abs(betas[n - 1] * s[-1, chosen])
    scale = max(float(np.max(np.abs(theta))), 1e-12)
    converged = bool(np.all(residuals <= tol * scale)) or n == op.size
    values = theta[chosen]
    return HessianSpectrum(values, sigma_of(float(values[0]), sigma_mode), op.calls, converged)


def hessian_matrix(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, loss: LogitLoss | None = None) -> torch.Tensor:
    """The explicit ``(P, P)`` Hessian of the loss (eval mode), for small models and tests.

    Built column by column from :class:`hvp_operator`, in the parameters' dtype.
    """
    op = hvp_operator(model, x, y, loss=loss)
    eye = torch.eye(op.size, dtype=op.dtype, device=op.device)
    return torch.stack([op(eye[i]) for i in range(op.size)], dim=1)
