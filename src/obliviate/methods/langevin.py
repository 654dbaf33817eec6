"""Langevin unlearning: projected noisy gradient descent on the retain set, with its Rényi accounting."""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset

from .._utils import resolve_device, seeded
from .._validation import Boolean, Interval, IntRange, Log, param
from ..data.base import iterate_batches
from ..data.scenario import SCENARIO_KINDS, Scenario
from ..errors import InvalidConfigError
from ..training import StepHook, TrainConfig
from .base import RunContext, UnlearningMethod, make_context, register_method

__all__ = [
    "Langevin",
    "langevin_learn",
    "LangevinCertificate",
    "renyi_unlearning_epsilon",
    "rdp_to_dp",
    "langevin_certificate",
    "linear_constants",
    "is_linear_model",
    "project_to_ball",
]

ALPHA_MAX = 1e4
"""Largest Rényi order searched when none is given (the authors search (1, 10^4])."""


def renyi_unlearning_epsilon(
    *, steps: int, lr: float, sigma: float, strong_convexity: float, lipschitz: float, n: int, removed: int, alpha: float
) -> float:
    """The ε of the (α, ε)-Rényi unlearning guarantee of K steps of PNGD, strongly convex case.

    Chien, Wang & Li (NeurIPS 2024, arXiv:2401.10371), Section 3: the unlearning theorem of the
    strongly convex case, with its log-Sobolev constant ``C_LSI = 2 σ² / m`` and the initial
    divergence ε₀ that the learning process's RDP theorem gives (the expression the authors' code
    evaluates, ``epsilon_expression`` in ``main_lmc.py``): the Rényi divergence between the learned distribution on D and the one
    on D' (S of the n points replaced) is at most ``ε₀(α) = 4 α S² M² / (m σ² n²)``, and each
    unlearning step contracts it by ``exp(-2 σ² η / (α C_LSI)) = exp(-m η / α)``::

        ε(α) = exp(-m η K / α) · 4 α S² M² / (m σ² n²)

    Assumptions (not checked here; see :func:`langevin_certificate`): the per-sample loss, with its
    L2 term, is L-smooth, m-strongly convex and M-Lipschitz (gradients bounded by M) on the
    projection set; ``η <= 1/L``; the model was learned by the same PNGD (same η, σ, regulariser,
    full batch) on D until its distribution was stationary; the unlearning runs that PNGD on D'.

    Args:
        steps: Unlearning iterations K (>= 0).
        lr: Step size η (> 0).
        sigma: Noise scale σ (> 0): each step adds ``sqrt(2 η σ²) N(0, I)``.
        strong_convexity: m (> 0).
        lipschitz: M (> 0), the bound on every per-sample gradient norm.
        n: Size of the training set D.
        removed: S, the number of points removed (replaced).
        alpha: Rényi order α (> 1).

    Returns:
        ε (>= 0); 0 when nothing is removed.
    """
    _positive("renyi_unlearning_epsilon", lr=lr, sigma=sigma, strong_convexity=strong_convexity, lipschitz=lipschitz, n=n)
    if steps < 0 or removed < 0 or not alpha > 1.0:
        raise InvalidConfigError(
            f"renyi_unlearning_epsilon needs steps >= 0, removed >= 0 and alpha > 1; got {steps}, {removed}, {alpha}."
        )
    eps0 = 4.0 * alpha * removed**2 * lipschitz**2 / (strong_convexity * sigma**2 * n**2)
    return math.exp(-strong_convexity * lr * steps / alpha) * eps0


def rdp_to_dp(renyi_epsilon: float, alpha: float, delta: float) -> float:
    """The (ε, δ) guarantee implied by an (α, ε_α) Rényi one: ``ε = ε_α + log(1/δ) / (α - 1)``.

    Mironov (2017), Proposition 3, the conversion the Langevin-unlearning paper (Section 2) uses.
    """
    if not alpha > 1.0 or not 0.0 < delta < 1.0:
        raise InvalidConfigError(f"rdp_to_dp needs alpha > 1 and delta in (0, 1); got alpha={alpha}, delta={delta}.")
    return renyi_epsilon + math.log(1.0 / delta) / (alpha - 1.0)


@dataclass(frozen=True)
class LangevinCertificate:
    """What :func:`langevin_certificate` returns.

    Attributes:
        renyi_epsilon: ε of the (α, ε)-Rényi unlearning bound at ``alpha``.
        alpha: The Rényi order used (given, or the one minimising ``epsilon``).
        epsilon: ε of the (ε, δ) guarantee (:func:`rdp_to_dp`).
        delta: δ.
        step_condition: Whether ``η <= 1/L`` (False when L is unknown).
    """

    renyi_epsilon: float
    alpha: float
    epsilon: float
    delta: float
    step_condition: bool


def langevin_certificate(
    *,
    steps: int,
    lr: float,
    sigma: float,
    strong_convexity: float,
    lipschitz: float,
    n: int,
    removed: int,
    smoothness: float | None = None,
    alpha: float | None = None,
    delta: float | None = None,
) -> LangevinCertificate:
    """The unlearning guarantee of K steps of PNGD (:func:`renyi_unlearning_epsilon`), as (α, ε) and (ε, δ).

    With ``alpha=None`` the order minimising the (ε, δ) conversion is searched over (1, 10⁴]
    (a log grid refined by a bounded scalar search), as the authors do; ``delta=None`` takes the
    authors' δ = 1/n. The bound is a certificate only under the assumptions listed in
    :func:`renyi_unlearning_epsilon`; ``step_condition`` reports the one checkable from the
    constants (``η <= 1/L``; False when ``smoothness`` is unknown).

    Args:
        steps: Unlearning iterations K.
        lr: Step size η.
        sigma: Noise scale σ.
        strong_convexity: m.
        lipschitz: M.
        n: Size of the training set D.
        removed: S, the number of removed points.
        smoothness: L, or None when unknown.
        alpha: Rényi order, or None to minimise ε over it.
        delta: δ of the (ε, δ) conversion, or None for 1/n.

    Returns:
        A :class:`LangevinCertificate`.
    """
    delta = 1.0 / n if delta is None else float(delta)

    def dp(a: float) -> float:
        eps = renyi_unlearning_epsilon(
            steps=steps, lr=lr, sigma=sigma, strong_convexity=strong_convexity, lipschitz=lipschitz, n=n, removed=removed, alpha=a
        )
        return rdp_to_dp(eps, a, delta)

    if alpha is None:
        grid = [1.0 + 10.0 ** (-4.0 + 8.0 * i / 400) for i in range(401)]  # 1 + 1e-4 ... 1 + 1e4
        values = [dp(a) for a in grid]
        best = min(range(len(grid)), key=values.__getitem__)
        alpha = grid[best]
        lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
        if hi > lo:
            from scipy.optimize import minimize_scalar

            refined = minimize_scalar(dp, bounds=(lo, hi), method="bounded", options={"xatol": 1e-9})
            if refined.success and float(refined.fun) < values[best]:
                alpha = float(refined.x)
    renyi = renyi_unlearning_epsilon(
        steps=steps, lr=lr, sigma=sigma, strong_convexity=strong_convexity, lipschitz=lipschitz, n=n, removed=removed, alpha=alpha
    )
    return LangevinCertificate(
        renyi_epsilon=renyi,
        alpha=float(alpha),
        epsilon=rdp_to_dp(renyi, alpha, delta),
        delta=delta,
        step_condition=smoothness is not None and lr <= 1.0 / smoothness,
    )


def linear_constants(feature_norm: float, weight_decay: float, radius: float) -> tuple[float, float, float]:
    """(L, m, M) of softmax cross-entropy plus ``weight_decay/2 · ||w||²`` for a linear model.

    For logits ``W x + b`` with ``||x||² + 1 <= B²`` (the bias as a constant feature), the
    per-sample gradient ``(p - e_y) [x; 1]ᵀ + λ w`` has norm at most ``√2 B + λ R`` on the ball
    ``||w|| <= R``; the Hessian ``(diag p - p pᵀ) ⊗ [x; 1][x; 1]ᵀ + λ I`` has eigenvalues in
    ``[λ, B²/2 + λ]`` (those of ``diag p - p pᵀ`` lie in [0, 1/2]).

    Args:
        feature_norm: The largest ``||x||`` over the training set.
        weight_decay: λ.
        radius: R.

    Returns:
        ``(smoothness L, strong_convexity m, lipschitz M)``.
    """
    b2 = feature_norm**2 + 1.0
    return b2 / 2.0 + weight_decay, weight_decay, math.sqrt(2.0 * b2) + weight_decay * radius


def is_linear_model(model: nn.Module) -> bool:
    """Whether ``model`` is one ``nn.Linear`` over flattened inputs (its leaf modules are a single
    Linear plus Flatten / Identity / Dropout(p=0)): the convex case of the theorem.

    A heuristic on the module tree: a custom ``forward`` that adds a non-linearity is not seen.
    """
    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    linear = [m for m in leaves if isinstance(m, nn.Linear)]
    others = [
        m
        for m in leaves
        if not isinstance(m, (nn.Linear, nn.Flatten, nn.Identity)) and not (isinstance(m, nn.Dropout) and m.p == 0.0)
    ]
    return len(linear) == 1 and not others


def project_to_ball(
    params: list[nn.Parameter], radius: float, masks: dict[str, torch.Tensor] | None = None, names: list[str] | None = None
) -> None:
    """Project the parameter vector onto ``{||w|| <= radius}`` in place (the Proj of PNGD).

    With masks, the set is the ball intersected with "frozen coordinates keep their values": its
    projection leaves the frozen part and scales the trainable part onto the radius
    ``sqrt(R² - ||w_frozen||²)``. That set must not be empty.

    Raises:
        InvalidConfigError: the frozen coordinates alone are longer than ``radius``.
    """
    masks = masks or {}
    names = names or [""] * len(params)
    with torch.no_grad():
        free_sq, frozen_sq = 0.0, 0.0
        for name, p in zip(names, params, strict=True):
            m = masks.get(name)
            if m is None:
                free_sq += float(p.double().pow(2).sum())
            else:
                free_sq += float(p[m].double().pow(2).sum())
                frozen_sq += float(p[~m].double().pow(2).sum())
        room = radius**2 - frozen_sq
        if room < 0:
            raise InvalidConfigError(
                f"The projection radius {radius:g} is smaller than the norm of the frozen coordinates "
                f"({math.sqrt(frozen_sq):g}); use a larger radius."
            )
        if free_sq <= room:
            return
        scale = math.sqrt(room / free_sq)
        for name, p in zip(names, params, strict=True):
            m = masks.get(name)
            if m is None:
                p.mul_(scale)
            else:
                p.copy_(torch.where(m, p * scale, p))


class _NoiseAndProject(StepHook):
    """After each gradient step: add ``sqrt(2 η σ²) N(0, I)`` to the trainable coordinates, then project."""

    def __init__(self, lr: float, sigma: float, radius: float, generator: torch.Generator, masks: dict[str, torch.Tensor]):
        self.std = math.sqrt(2.0 * lr * sigma**2)
        self.radius = radius
        self.generator = generator
        self.masks = masks

    def start(self, model: nn.Module, optimizer: torch.optim.Optimizer, config: TrainConfig, *, custom_loss: bool) -> None:
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]

    def after_step(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        with torch.no_grad():
            for name, p in zip(self.names, self.params, strict=True):
                noise = torch.randn(p.shape, generator=self.generator, dtype=p.dtype).to(p.device) * self.std
                m = self.masks.get(name)
                p.add_(noise if m is None else noise * m)
        project_to_ball(self.params, self.radius, self.masks, self.names)


@register_method("langevin")
@dataclass(frozen=True, kw_only=True)
class Langevin(UnlearningMethod):
    """Langevin unlearning (Chien, Wang & Li, NeurIPS 2024, arXiv:2401.10371): noisy gradient descent on D_r.

    Unlearning continues the projected noisy gradient descent (PNGD) that learned the model, on the
    retain set D' = D_r, from the trained weights, for K full-batch steps (the paper's PNGD update,
    the same for learning on D and unlearning on D')::

        w <- Proj_{||w|| <= R}(w - η ∇[L(w; D') + λ/2 ||w||²] + sqrt(2 η σ²) N(0, I))

    and accounts for them: after K steps the result is (α, ε)-Rényi-unlearned with
    ``ε = exp(-m η K / α) · 4 α S² M² / (m σ² n²)`` (Section 3's theorem for the strongly convex
    case, with ``C_LSI = 2σ²/m`` and the learning side's ε₀; :func:`renyi_unlearning_epsilon`),
    converted to (ε, δ) by ``ε + log(1/δ)/(α - 1)`` at the best α (:func:`langevin_certificate`).
    Here n = |D| (the scenario's training set), S = |D_f|, m = λ (the L2 term's strong convexity).
    The result's ``diagnostics`` hold ``renyi_epsilon``, ``alpha``, ``epsilon``, ``delta``,
    ``smoothness`` (L, NaN when unknown), ``strong_convexity``, ``lipschitz``, ``radius`` and
    ``assumptions_hold``.

    Certified only in the convex case. For a linear (softmax-regression) model with λ > 0 the
    constants are computable (:func:`linear_constants`: L = B²/2 + λ, m = λ, M = √2 B + λR from
    the largest input norm B), and ``assumptions_hold`` is 1 when also ``η <= 1/L``, a given M is
    not below the derived one, and ``secret_noise`` is on. One assumption stays with the
    caller: the model must have been learned by this same PNGD on D (same η, σ, λ, R) until its
    distribution was stationary (:func:`langevin_learn`); ``ob.train``'s noiseless SGD is not it. For a deep network the loss is
    not convex, L is unknown and M is the value given (default 1, the authors'): the number is the
    theorem's expression evaluated under assumptions that do not hold, not a guarantee, and
    ``assumptions_hold`` is 0.

    Randomness: the noise is drawn from the run's generator, so it is reproducible from the run's
    seed, and anyone who knows the seed can subtract it: no privacy guarantee holds then. With
    ``secret_noise=True`` it is drawn from a generator seeded from ``os.urandom`` (a different
    result every run; not reproducible).

    Scenario kinds: all. The theorem bounds the removal of any S of the n points, whichever they
    are (a whole class only makes S, and the bound, large); the paper's experiments remove random
    points.

    Data needs: forget (only its size, for the accounting), retain; the training set's size (and,
    for a linear model, its largest input norm). Cost: ``steps`` full-batch passes over D_r (plus
    one pass over D's inputs for the largest input norm of a linear model); memory holds the whole
    retain set in one batch, as in the paper's full-batch setting.

    Differences from the authors' code (github.com/Graph-COM/Langevin_unlearning, ``langevin.py``,
    ``main_lmc.py``): they run binary logistic regression on unit-norm features and clip every
    per-sample gradient to norm M, which makes M hold by construction; here the loss is the
    model's cross-entropy, not clipped, and M is derived (linear model) or given. Their projection,
    when enabled, rescales w onto the sphere ``||w|| = R`` at every step; here it is the
    projection onto the ball the paper states (w moves only when outside). They set η = 1/L and
    search K for a target ε; here K, η and σ are fields and ε is reported. The accounting is the
    same expression as their ``epsilon_expression`` (with ``C_LSI = 2σ²/m``) and their α search
    over (1, 10⁴] with δ = 1/n.

    Args:
        steps: Unlearning iterations K (full-batch steps on D_r). The authors search K per target
            ε (their code's fixed fallback, ``--finetune_step``, is 50); default 50.
        lr: Step size η (the paper: 1/L). Default 0.1.
        sigma: Noise scale σ; each step adds ``sqrt(2 η σ²)`` standard normal noise per
            coordinate. The authors' code default is 0.03 (their figures use 0.05 to 1);
            default 0.03.
        weight_decay: λ of the L2 term ``λ/2 ||w||²`` (the strong convexity m of a linear
            model). Default 5e-4 (the demo recipe's).
        radius: Projection radius R, or None for the norm of the input model's weights (the
            projection then binds only if the weights grow). Default None.
        lipschitz: The per-sample gradient bound M used by the accounting, or None: derived for a
            linear model, 1.0 (the authors' default) for any other. Default None.
        delta: δ of the (ε, δ) conversion, or None for 1/n (the authors'). Default None.
        secret_noise: Draw the noise from a generator seeded by ``os.urandom`` instead of the
            run's seed. Default False.

    Presets:
        digits: 100 full-batch steps at η 0.3 with σ 0.015 and the demo recipe's λ 5e-4 on the
            demo's CNN: the noise moves every weight while only the retain gradient pulls back,
            so what D_r does not support (a forgotten class) decays. σ 0.02 collapsed one seed's
            random forget set (the retained classes eroded faster than the gradient restored
            them); η 0.1 at σ 0.02 left most of the class recognised. Its 100 full-batch steps are
            about 90 passes over D, more than the demo recipe's 30 epochs of retraining: at this
            scale it is no cheaper than the oracle. The accounting is reported but is no
            certificate for this deep, non-convex model. Results:
            ``benchmarks/results/recent_methods.json`` (``python benchmarks/recent_methods.py``).
    """

    requires: ClassVar[frozenset[str]] = frozenset({"forget", "retain"})
    kinds: ClassVar[frozenset[str]] = frozenset(SCENARIO_KINDS)
    presets: ClassVar[dict] = {
        "digits": {"steps": 100, "lr": 0.3, "sigma": 0.015, "weight_decay": 5e-4},
    }

    steps: int = param(50, Interval(int, 1), search=IntRange(5, 200))
    lr: float = param(0.1, Interval(float, 0.0, closed="neither"), search=Log(1e-3, 0.5))
    sigma: float = param(0.03, Interval(float, 0.0, closed="neither"), search=Log(1e-3, 0.1))
    weight_decay: float = param(5e-4, Interval(float, 0.0), search=Log(1e-5, 1e-1))
    radius: float | None = param(None, Interval(float, 0.0, closed="neither", allow_none=True))
    lipschitz: float | None = param(None, Interval(float, 0.0, closed="neither", allow_none=True))
    delta: float | None = param(None, Interval(float, 0.0, 1.0, closed="neither", allow_none=True))
    secret_noise: bool = param(False, Boolean())

    def _unlearn(self, model: nn.Module, scenario: Scenario, ctx: RunContext) -> nn.Module:
        radius = self.descend(model, scenario.retain, ctx)
        self._account(model, scenario, ctx, radius)
        return model

    def descend(self, model: nn.Module, data: Dataset, ctx: RunContext) -> float:
        """Run the K PNGD steps on ``data`` (full batch) in place; return the projection radius used.

        The learning process of the paper is this same update on D: :func:`langevin_learn`.
        """
        params = [p for p in model.parameters() if p.requires_grad]
        with torch.no_grad():
            start = math.sqrt(sum(float(p.double().pow(2).sum()) for p in params))
        radius = start if self.radius is None else self.radius
        if self.secret_noise:
            noise_gen = torch.Generator().manual_seed(int.from_bytes(os.urandom(8), "little") & ((1 << 63) - 1))
        else:
            noise_gen = ctx.generator
        hook = _NoiseAndProject(self.lr, self.sigma, radius, noise_gen, ctx.masks)
        full = len(data)  # type: ignore[arg-type]

        def batches(_epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            yield from iterate_batches(data, full, device=ctx.device)  # the whole set: one full-batch step

        config = TrainConfig(
            epochs=self.steps,
            lr=self.lr,
            optimizer="sgd",
            momentum=0.0,
            weight_decay=self.weight_decay,
            batch_size=full,
            schedule="constant",
        )
        ctx.fit(model, batches, config, steps_per_epoch=1, step_hook=hook, desc="langevin")
        return radius

    def _account(self, model: nn.Module, scenario: Scenario, ctx: RunContext, radius: float) -> None:
        """Put the accounting of the K steps into ``ctx.diagnostics``."""
        n, removed = len(scenario.train), len(scenario.forget)  # type: ignore[arg-type]
        linear = is_linear_model(model) and self.weight_decay > 0
        smoothness: float | None = None
        derived: float | None = None
        if linear:
            norm = 0.0
            for x, _ in iterate_batches(scenario.train, 1024, device=ctx.device):
                norm = max(norm, float(x.flatten(1).double().norm(dim=1).max()))
            smoothness, _, derived = linear_constants(norm, self.weight_decay, radius)
        lipschitz = self.lipschitz if self.lipschitz is not None else (derived if derived is not None else 1.0)
        m = self.weight_decay if self.weight_decay > 0 else math.nan
        ctx.diagnostics.update(
            {"strong_convexity": self.weight_decay, "lipschitz": lipschitz, "radius": radius, "smoothness": math.nan}
        )
        if smoothness is not None:
            ctx.diagnostics["smoothness"] = smoothness
        if not m > 0:  # no strong convexity: the strongly convex theorem says nothing
            ctx.diagnostics.update(
                {"renyi_epsilon": math.inf, "alpha": math.nan, "epsilon": math.inf, "delta": 1.0 / n, "assumptions_hold": 0.0}
            )
            return
        cert = langevin_certificate(
            steps=self.steps,
            lr=self.lr,
            sigma=self.sigma,
            strong_convexity=m,
            lipschitz=lipschitz,
            n=n,
            removed=removed,
            smoothness=smoothness,
            delta=self.delta,
        )
        # a given M must not undercut the derived bound; the noise must be secret for any privacy meaning
        holds = linear and derived is not None and lipschitz >= derived and cert.step_condition and self.secret_noise
        ctx.diagnostics.update(
            {
                "renyi_epsilon": cert.renyi_epsilon,
                "alpha": cert.alpha,
                "epsilon": cert.epsilon,
                "delta": cert.delta,
                "assumptions_hold": float(holds),
            }
        )


def _positive(owner: str, **values: float) -> None:
    for name, value in values.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise InvalidConfigError(f"The {name!r} argument of {owner} must be a finite number > 0; got {value!r}.")


def langevin_learn(
    model: nn.Module, data: Dataset, method: Langevin, *, seed: int = 0, device: str | torch.device = "cpu"
) -> nn.Module:
    """The paper's learning process: ``method``'s PNGD run on ``data`` (the training set D) from ``model``.

    A model meant to be certified by :class:`Langevin` must be learned this way, with the same
    η, σ, λ and R, for enough steps that its distribution is (close to) stationary; the unlearning
    then continues the same chain on D'. Returns a trained copy (``model`` is not changed); with
    the method's ``secret_noise`` off, the result is reproducible from ``seed``.

    Args:
        model: The initial model (the paper draws it from a Gaussian; any initialisation runs).
        data: The training set D.
        method: A :class:`Langevin` instance: its ``steps`` are the learning steps T.
        seed: Seed of the noise (unless ``secret_noise``) and of any dropout.
        device: Where to run.
    """
    if not isinstance(method, Langevin):
        raise InvalidConfigError(f"langevin_learn needs a Langevin method instance; got {type(method).__name__}.")
    dev = resolve_device(device)
    net = copy.deepcopy(model).to(dev)
    ctx = make_context(net, dev, seed=seed, masks=None, progress=False, recording=None)
    with seeded(seed, dev):
        method.descend(net, data, ctx)
    return net.eval()
