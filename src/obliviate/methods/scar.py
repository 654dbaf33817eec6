"""SCAR: retain-free unlearning by Mahalanobis metric learning plus distillation on surrogate data."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from .._validation import Interval, IntRange, Linear, Log, Options, param
from ..data.base import iterate_batches
from ..data.scenario import Scenario
from ..errors import IncompatibleModelError, InvalidConfigError, MissingDataError
from ..models.adapter import ModelAdapter, logits_of
from ..training import accuracy
from ._helpers import frozen_copy
from .base import FineTuneRecipe, RunContext, UnlearningMethod, register_method

__all__ = ["SCAR", "SURROGATES", "tukey", "shrink_covariance", "class_statistics", "mahalanobis", "nearest_wrong_class"]

SURROGATES: tuple[str, ...] = ("noise", "uniform", "synthetic32", "digits")
"""The surrogate (out-of-distribution) data :class:`SCAR` can use: generated images or an embedded dataset."""

_SAME_IMAGES = {"digits": {"digits", "digits_coarse"}, "synthetic32": {"synthetic32"}}
"""For an embedded surrogate dataset, the datasets whose images it shares (it is in-distribution for them)."""


def tukey(x: torch.Tensor, delta: float) -> torch.Tensor:
    """Tukey's ladder of powers ``sign(x) |x|^delta``, with a finite gradient at 0.

    The paper applies ``x^delta`` to non-negative (post-ReLU) features; the sign keeps it defined
    for features of any sign, and the clamp keeps the gradient at exactly 0 finite (it is 0 there).
    """
    return torch.sign(x) * x.abs().clamp_min(1e-12).pow(delta)


def shrink_covariance(cov: torch.Tensor, gamma_diag: float, gamma_off: float) -> torch.Tensor:
    """Covariance shrinkage ``Σ + γ1 V1 I + γ2 V2 (1 - I)`` (FeCAM's, which SCAR uses).

    ``V1`` is the mean of the diagonal, ``V2`` the mean of the non-zero off-diagonal entries.
    """
    d = cov.shape[0]
    eye = torch.eye(d, dtype=cov.dtype, device=cov.device)
    v1 = torch.diagonal(cov).mean()
    off = cov * (1 - eye)
    nonzero = (off != 0).sum()
    v2 = off.sum() / nonzero if bool(nonzero) else torch.zeros((), dtype=cov.dtype, device=cov.device)
    return cov + gamma_diag * v1 * eye + gamma_off * v2 * (1 - eye)


def class_statistics(
    features: torch.Tensor, labels: torch.Tensor, classes: list[int], *, delta: float, gamma_diag: float, gamma_off: float
) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """Per-class means and inverse shrunk correlation matrices of Tukey-transformed features.

    Args:
        features: ``(n, d)`` features.
        labels: ``(n,)`` class of each row.
        classes: The classes to describe; a class with fewer than 2 rows is left out.
        delta: Tukey exponent.
        gamma_diag: Shrinkage γ1 (applied twice, as in the authors' code).
        gamma_off: Shrinkage γ2.

    Returns:
        The classes described, their means ``(K, d)`` (of the transformed features, L2-normalised)
        and the inverses ``(K, d, d)`` of their normalised shrunk covariances.
    """
    kept, means, inverses = [], [], []
    for c in classes:  # a loop over classes, not samples
        rows = tukey(features[labels == c].double(), delta)
        if rows.shape[0] < 2:
            continue
        cov = shrink_covariance(shrink_covariance(torch.cov(rows.T), gamma_diag, gamma_off), gamma_diag, gamma_off)
        sigma = torch.sqrt(torch.diagonal(cov)).clamp_min(1e-12)
        corr = cov / (sigma[:, None] * sigma[None, :])
        kept.append(c)
        means.append(F.normalize(rows.mean(0), dim=0))
        inverses.append(torch.linalg.pinv(corr))
    if not kept:
        return [], features.new_zeros(0, features.shape[1]), features.new_zeros(0, features.shape[1], features.shape[1])
    return kept, torch.stack(means).float(), torch.stack(inverses).float()


def mahalanobis(features: torch.Tensor, means: torch.Tensor, inverses: torch.Tensor, delta: float) -> torch.Tensor:
    """``(n, K)`` squared Mahalanobis distances ``(u - m_k)ᵀ S_k⁻¹ (u - m_k)`` of the L2-normalised
    Tukey-transformed features ``u`` to each class's normalised mean ``m_k`` (the paper's modified
    Mahalanobis distance; no square root, as in the authors' code).
    """
    u = F.normalize(tukey(features, delta), dim=1)
    out = []
    for k in range(means.shape[0]):  # classes, not samples
        diff = u - means[k]
        out.append(((diff @ inverses[k]) * diff).sum(1))
    return torch.stack(out, dim=1) if out else u.new_zeros(u.shape[0], 0)


def nearest_wrong_class(
    features: torch.Tensor, labels: torch.Tensor, kept: list[int], means: torch.Tensor, inverses: torch.Tensor, delta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample's target: the class, among ``kept`` (those with statistics), nearest in
    :func:`mahalanobis` distance other than the sample's own label.

    Returns:
        The target's position in ``kept`` (0 where there is none) and whether the sample has one.
    """
    if not kept:
        none = torch.zeros_like(labels)
        return none, none.bool()
    dist = mahalanobis(features, means, inverses, delta)
    own = torch.as_tensor(kept, dtype=torch.long, device=labels.device)[None, :] == labels[:, None]
    dist = torch.where(own, torch.full_like(dist, math.inf), dist)
    return dist.argmin(1), torch.isfinite(dist).any(1)


def _shares_images(pool: torch.Tensor, images: torch.Tensor) -> bool:
    """Whether any of ``images`` occurs exactly (same shape and values) in ``pool``."""
    if tuple(pool.shape[1:]) != tuple(images.shape[1:]):
        return False
    seen = {row.numpy().tobytes() for row in pool.float().flatten(1)}
    return any(row.numpy().tobytes() in seen for row in images.float().flatten(1))


def _inputs(data: Dataset, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for x, y in iterate_batches(data, 1024, device=device):
        xs.append(x)
        ys.append(y)
    return torch.cat(xs), torch.cat(ys)


@register_method("scar")
@dataclass(frozen=True, kw_only=True)
class SCAR(UnlearningMethod, FineTuneRecipe):
    """SCAR (Bonato, Cotogni & Sabetta, ECCV'24, arXiv:2404.12922): retain-free unlearning.

    "Selective-distillation for Class and Architecture-agnostic unleaRning" reads no retain data.
    It trains a copy of the model (the student) with two terms:

    - *metric forgetting* on D_f: each forget sample's penultimate feature vector f is pulled
      towards the distribution of its nearest *wrong* class k (the closest class other than its
      own, and other than a forgotten class): ``L_fgt = mean_i d_M(f_i, k_i)`` with the paper's
      modified Mahalanobis distance ``d_M(f, k) = (u - m_k)ᵀ S_k⁻¹ (u - m_k)``, where
      ``u = normalize(T(f))`` is the L2-normalised Tukey transform ``T(f) = f^δ`` of the feature,
      ``m_k`` the normalised mean of ``T(f)`` over class k, and ``S_k`` its covariance shrunk
      twice (``Σ + γ1 V1 I + γ2 V2 (1 - I)``, V1 / V2 the mean diagonal / off-diagonal entry) and
      normalised to a correlation matrix (the FeCAM recipe the paper adopts). The target class k_i
      is chosen once per sample, with the original model's features, and kept;
    - *distillation trick* on out-of-distribution surrogate images x_s: the student matches the
      original model (the teacher, frozen, eval mode): ``L_ret = KL(p_teacher(x_s) ‖ p_student(x_s))``
      (the authors' code uses this KL, ``batchmean``; the paper's figure names it a Jensen–Shannon
      divergence). For class removal the surrogate images the teacher files under a forgotten
      class are dropped and the teacher's logit of every forgotten class is set to the lowest
      logit of its row, so the student is taught that the class is absent.

    The paper's full text was not available here, so its equation numbers are not cited: the
    terms above are those its abstract and overview figure name, in the form the authors' code
    computes them. The loss of a step is ``λ1 L_fgt + λ2 L_ret`` over one forget batch and one
    surrogate batch; each forget batch is used for ``surrogate_batches`` steps, each with a fresh
    surrogate batch.
    Training stops early once the accuracy on D_f (checked after each epoch) falls below
    ``stop_accuracy``. On a random forget set, as in the authors' code, the surrogate batches are
    drawn class-balanced by the teacher's prediction (weights ``1/count``), and after each epoch
    the distances of a class whose forget accuracy fell below ``class_gate`` stop counting (the
    others are weighted by their class's forget accuracy).

    Surrogate data (``surrogate``): the paper distils on real out-of-distribution images (the
    authors' README: 10k images sampled from ImageNet, COCO or another dataset; their code also
    reads a Gaussian-noise set). Here the default is generated noise: ``"noise"`` (Gaussian) or
    ``"uniform"`` images of the input shape, with the per-channel mean and standard deviation (``"uniform"``:
    range) of the forget inputs, drawn from the run's generator. An embedded dataset can serve
    instead: ``"synthetic32"`` (3x32x32 generated class templates) or ``"digits"`` (8x8 digits),
    converted to the model's input shape (channels averaged then repeated, bilinear resizing
    with anti-aliasing) and standardised per channel to the forget inputs' mean and standard
    deviation. A surrogate that shares images with the scenario's dataset (``"digits"`` for a
    ``digits``/``digits_coarse`` model, or any forget image found in it) is refused: it would be
    in-distribution.

    Class statistics (``statistics``): the means and covariances come from the original model's
    features of ``"surrogate"`` (default; retain-free): the surrogate images, each under the
    teacher's predicted class, together with the forget samples under their own labels; or from
    ``"val"``, the scenario's held-out validation split (never trained on, so not retain data,
    but data of the retained classes). A class with fewer than two samples gets no statistics
    and is never a target; a forget sample with no possible target has no forgetting term.

    Differences from the authors' code (github.com/jbonato1/SCAR, read, not copied):

    - the code computes the class means and covariances from the embeddings of the whole
      retain set (``train_retain_loader``, in SCAR and in SCAR-self alike), which contradicts the
      retain-free claim; here they come from the surrogate and D_f (or the val split);
    - the code picks each forget sample's nearest wrong class at the sample's first step (its
      forget loader is not shuffled, so the choice stays with the sample), with the model as
      earlier steps left it; here it is picked once, before training, with the original model.
      With a class removed the code also compares an index into the list of remaining classes
      with the true label, so when the nearest class is the one just above the removed class it
      takes the second nearest; here classes are compared by index;
    - a forgotten class's teacher logit is set to its row's minimum, not the whole batch's;
    - the teacher's logits on the surrogate are computed once, without the code's random
      crop and flip of the surrogate images;
    - the early stop is checked after each epoch rather than after each step; on a random
      forget set the code stops once D_f's accuracy falls 1.5 points below the original's
      *test* accuracy; here the default uses the held-out *val* split instead (the val split is
      read only for this; without it all epochs run);
    - the code adds 1e-4 to the logits and log-probabilities before the KL (no effect) and
      divides only the teacher's logits by the temperature; here too, without the constants;
    - the self-forget variant (no D_f, forgotten class found among surrogate images) is not
      implemented.

    Data needs: forget (inputs and labels), plus generated or embedded surrogate images; a random
    forget set's default stop rule also reads the val split (held out). Cost: ``epochs`` x
    ``ceil(|D_f| / batch_size)`` x ``surrogate_batches`` steps (fewer when it stops early), each
    one backward over a forget batch and a surrogate batch; plus one forward of the original
    model over the surrogate set and D_f, and one accuracy pass over D_f per epoch.

    Args:
        epochs: Most epochs (passes over D_f). Default 30 (authors' code: 30, with early stop).
        lr: Learning rate. Default 5e-4 (authors' code).
        optimizer: "sgd", "adam" or "adamw". Default "adam" (authors' code).
        momentum: SGD momentum (unused by Adam). Default 0.9.
        weight_decay: Weight decay. Default 0 (authors' code).
        batch_size: Forget and surrogate batch size. Default 1024 (authors' code).
        schedule: "constant" or "cosine". Default "constant" (authors' code: its scheduler is off).
        surrogate_batches: Steps per forget batch, each with a new surrogate batch. Default 6
            (authors' code: ``num_retain_samp`` + 1 on CIFAR).
        lambda_forget: Weight λ1 of the Mahalanobis forgetting term. Default 1 (authors' code).
        lambda_distill: Weight λ2 of the distillation term. Default 5 (authors' code).
        temperature: Divides the teacher's logits in the distillation (authors' code). Default 1.
        tukey_delta: Exponent δ of the Tukey transform. Default 0.5 (authors' code).
        shrink_diag: Shrinkage γ1 of the covariance diagonal. Default 3 (authors' code).
        shrink_offdiag: Shrinkage γ2 of the off-diagonal entries. Default 3 (authors' code).
        surrogate: "noise", "uniform", "synthetic32" or "digits" (see above). Default "noise".
        surrogate_size: Number of surrogate images. Default 10000 (the authors' 10k).
        statistics: Where the class distributions come from: "surrogate" or "val". Default
            "surrogate".
        stop_accuracy: Stop once the accuracy on D_f falls below this. None: the paper's rule,
            0.01 for class removal, the original model's val accuracy minus 0.015 for a random
            forget set. Default None.
        class_gate: Random forget sets: a class whose forget accuracy is below this stops being
            pushed. Default 0.8 (authors' code; 0 turns the gate off).

    Presets:
        digits: 20 epochs of Adam at 1e-3, batch 64, 4 surrogate batches per forget batch,
            2000 noise images. The paper's batch of 1024 holds the whole forget set of the demo's
            digits (a class is about 130 images), so with its learning rate the 6k-parameter CNN
            takes a handful of steps per epoch; smaller batches and a larger step forget within
            the epoch budget. Results: ``benchmarks/results/recent_methods.json``
            (``python benchmarks/recent_methods.py``).
    """

    requires: ClassVar[frozenset[str]] = frozenset({"forget"})
    kinds: ClassVar[frozenset[str]] = frozenset({"classwise", "random"})
    presets: ClassVar[dict] = {
        "digits": {"epochs": 20, "lr": 1e-3, "batch_size": 64, "surrogate_batches": 4, "surrogate_size": 2000},
    }

    epochs: int = param(30, Interval(int, 1), search=IntRange(1, 30))
    lr: float = param(5e-4, Interval(float, 0.0, closed="neither"), search=Log(1e-5, 1e-2))
    optimizer: str = param("adam", Options("sgd", "adam", "adamw"))
    weight_decay: float = param(0.0, Interval(float, 0.0))
    batch_size: int = param(1024, Interval(int, 1))
    surrogate_batches: int = param(6, Interval(int, 1), search=IntRange(1, 10))
    lambda_forget: float = param(1.0, Interval(float, 0.0), search=Log(0.1, 10.0))
    lambda_distill: float = param(5.0, Interval(float, 0.0), search=Log(0.5, 50.0))
    temperature: float = param(1.0, Interval(float, 0.0, closed="neither"))
    tukey_delta: float = param(0.5, Interval(float, 0.0, 1.0, closed="right"))
    shrink_diag: float = param(3.0, Interval(float, 0.0))
    shrink_offdiag: float = param(3.0, Interval(float, 0.0))
    surrogate: str = param("noise", Options(*SURROGATES))
    surrogate_size: int = param(10000, Interval(int, 1))
    statistics: str = param("surrogate", Options("surrogate", "val"))
    stop_accuracy: float | None = param(None, Interval(float, 0.0, 1.0, allow_none=True))
    class_gate: float = param(0.8, Interval(float, 0.0, 1.0), search=Linear(0.0, 1.0))

    # ----------------------------------------------------------------- surrogate data
    def _surrogate(self, scenario: Scenario, forget_x: torch.Tensor, ctx: RunContext) -> torch.Tensor:
        """``surrogate_size`` images of the forget inputs' shape, on ``ctx.device``."""
        shape = tuple(forget_x.shape[1:])
        n = self.surrogate_size
        dims = [0] + list(range(2, forget_x.dim()))
        mean = forget_x.mean(dim=dims, keepdim=True).cpu()
        std = forget_x.std(dim=dims, keepdim=True, correction=0).clamp_min(1e-6).cpu()
        if self.surrogate == "noise":
            return (mean + std * torch.randn((n, *shape), generator=ctx.generator)).to(ctx.device)
        if self.surrogate == "uniform":
            low = forget_x.amin(dim=dims, keepdim=True).cpu()
            high = forget_x.amax(dim=dims, keepdim=True).cpu()
            return (low + (high - low) * torch.rand((n, *shape), generator=ctx.generator)).to(ctx.device)
        if forget_x.dim() != 4:
            raise IncompatibleModelError(
                f"SCAR's surrogate {self.surrogate!r} holds images; the forget inputs have shape {shape}. "
                "Use 'noise' or 'uniform'."
            )
        from ..data.datasets import load_dataset

        everything, _ = _inputs(load_dataset(self.surrogate).train, torch.device("cpu"))
        if scenario.dataset.name in _SAME_IMAGES[self.surrogate] or _shares_images(everything, forget_x.cpu()):
            raise InvalidConfigError(
                f"The 'surrogate' parameter of SCAR cannot be {self.surrogate!r} for a model of {scenario.dataset.name!r}: "
                "they share images, so the surrogate would be in-distribution. Use 'noise', 'uniform' or another dataset."
            )
        take = min(n, everything.shape[0])
        x = everything[torch.sort(torch.randperm(everything.shape[0], generator=ctx.generator)[:take]).values]
        x = x.float().mean(1, keepdim=True).expand(-1, shape[0], -1, -1)
        if tuple(x.shape[2:]) != shape[1:]:
            x = F.interpolate(x, size=shape[1:], mode="bilinear", align_corners=False, antialias=True)
        x = (x - x.mean(dim=(0, 2, 3), keepdim=True)) / x.std(dim=(0, 2, 3), keepdim=True, correction=0).clamp_min(1e-6)
        return (mean + std * x).to(ctx.device)

    # ----------------------------------------------------------------- the run
    def _unlearn(self, model: nn.Module, scenario: Scenario, ctx: RunContext) -> nn.Module:
        classwise = scenario.kind == "classwise"
        num_classes = scenario.dataset.num_classes
        forgotten = sorted({int(c) for c in scenario.forget.targets}) if classwise else []
        forget_x, forget_y = _inputs(scenario.forget, ctx.device)
        sur_x = self._surrogate(scenario, forget_x, ctx)
        teacher = frozen_copy(model)
        probe = ModelAdapter(teacher, example=forget_x[:1])

        def features_logits(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            feats, logits = [], []
            with torch.no_grad():
                for start in range(0, x.shape[0], 1024):
                    f, z = probe.features_and_logits(x[start : start + 1024])
                    feats.append(f)
                    logits.append(z)
            return torch.cat(feats), torch.cat(logits)

        f_forget, _ = features_logits(forget_x)
        f_sur, z_sur = features_logits(sur_x)
        sur_pred = z_sur.argmax(1)

        # class statistics (retain-free by default) and each forget sample's nearest wrong class
        allowed = [c for c in range(num_classes) if c not in forgotten]
        if self.statistics == "val":
            if len(scenario.val) == 0:
                raise MissingDataError("SCAR with statistics='val' needs a non-empty 'val' split; use statistics='surrogate'.")
            val_x, val_y = _inputs(scenario.val, ctx.device)
            stat_f, stat_y = features_logits(val_x)[0], val_y
        else:
            stat_f, stat_y = torch.cat([f_sur, f_forget]), torch.cat([sur_pred, forget_y])
        kept, means, inverses = class_statistics(
            stat_f, stat_y, allowed, delta=self.tukey_delta, gamma_diag=self.shrink_diag, gamma_off=self.shrink_offdiag
        )
        with torch.no_grad():
            slot, has_target = nearest_wrong_class(f_forget, forget_y, kept, means, inverses, self.tukey_delta)
        ctx.diagnostics["classes_with_statistics"] = float(len(kept))
        ctx.diagnostics["forget_without_target"] = float((~has_target).sum())

        # the surrogate pool the teacher is distilled on, and its teacher targets
        pool = torch.arange(sur_x.shape[0], device=ctx.device)
        teacher_z = z_sur / self.temperature
        if classwise:
            pool = pool[~torch.isin(sur_pred, torch.as_tensor(forgotten, device=ctx.device))]
            teacher_z = teacher_z.clone()
            teacher_z[:, forgotten] = teacher_z.min(dim=1, keepdim=True).values
        if pool.numel() == 0:
            raise MissingDataError(
                f"The original model files every SCAR surrogate image under the forgotten class; try another 'surrogate' "
                f"than {self.surrogate!r} or a larger surrogate_size."
            )
        counts = torch.bincount(sur_pred, minlength=num_classes).float()
        weights = (1.0 / torch.where(counts < 3, torch.full_like(counts, 5.0), counts))[sur_pred].cpu()

        # stop rule and per-class gate
        stop = self.stop_accuracy
        if stop is None:
            if classwise:
                stop = 0.01
            elif len(scenario.val):
                stop = accuracy(teacher, scenario.val, device=ctx.device) - 0.015
        gate = torch.ones(num_classes, device=ctx.device)

        n_f, bs = forget_x.shape[0], self.batch_size
        forget_batches = math.ceil(n_f / bs)
        steps = forget_batches * self.surrogate_batches

        def surrogate_stream() -> Iterator[torch.Tensor]:
            while True:
                if classwise:
                    order = pool[torch.randperm(pool.numel(), generator=ctx.generator).to(ctx.device)]
                    for start in range(0, order.numel(), bs):
                        yield order[start : start + bs]
                else:
                    yield torch.multinomial(weights, bs, replacement=True, generator=ctx.generator).to(ctx.device)

        sur_batches = surrogate_stream()

        def batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            order = torch.randperm(n_f, generator=ctx.generator).to(ctx.device)
            for start in range(0, n_f, bs):
                rows = order[start : start + bs]
                for _ in range(self.surrogate_batches):
                    sur = next(sur_batches)
                    # ids >= 0: forget rows; ids < 0: surrogate rows (-1 - index)
                    yield torch.cat([forget_x[rows], sur_x[sur]]), torch.cat([rows, -1 - sur])

        adapter = ModelAdapter(model, example=forget_x[:1])

        def loss(net: nn.Module, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
            is_f = ids >= 0
            rows, sur = ids[is_f], -1 - ids[~is_f]
            total = x.new_zeros(())
            use = rows[has_target[rows]]
            if self.lambda_forget > 0 and use.numel():
                feats, _ = adapter.features_and_logits(x[is_f][has_target[rows]])
                u = F.normalize(tukey(feats, self.tukey_delta), dim=1)
                d = x.new_zeros(use.numel())
                for k in torch.unique(slot[use]).tolist():  # the target classes of the batch, not its samples
                    pick = slot[use] == k
                    diff = u[pick] - means[k]
                    d = d.index_put((pick.nonzero(as_tuple=True)[0],), ((diff @ inverses[k]) * diff).sum(1))
                if not classwise:
                    d = d * gate[forget_y[use]]
                total = total + self.lambda_forget * d.sum() / rows.numel()
            if sur.numel():
                log_s = F.log_softmax(logits_of(net(x[~is_f])), dim=1)
                log_t = F.log_softmax(teacher_z[sur], dim=1)
                total = total + self.lambda_distill * F.kl_div(log_s, log_t, reduction="batchmean", log_target=True)
            return total

        def epoch_end(epoch: int, net: nn.Module) -> bool:
            with torch.no_grad():
                was = net.training
                net.eval()
                pred = torch.cat([logits_of(net(forget_x[s : s + 1024])).argmax(1) for s in range(0, n_f, 1024)])
                net.train(was)
            right = (pred == forget_y).float()
            acc = float(right.mean())
            ctx.diagnostics["stop_epoch"] = float(epoch + 1)
            ctx.diagnostics["forget_acc_last"] = acc
            if not classwise:
                per = torch.bincount(forget_y, weights=right, minlength=num_classes)
                seen = torch.bincount(forget_y, minlength=num_classes).clamp_min(1)
                rate = per / seen
                gate.copy_(torch.where(rate < self.class_gate, torch.zeros_like(rate), rate))
            return stop is not None and acc < stop and epoch >= 2

        ctx.fit(model, batches, self.recipe(), loss_fn=loss, steps_per_epoch=steps, epoch_end=epoch_end, desc="scar")
        return model
