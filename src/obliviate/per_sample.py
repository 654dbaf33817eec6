"""Per-sample gradients, vectorised with ``torch.func`` (``vmap`` over ``grad``) and chunked.

Every method that needs per-example gradients (SSD's per-sample importance, Fisher
forgetting, influence functions, sensitivities) goes through :func:`per_sample_gradients`;
there is no Python loop over samples. The model is evaluated in eval mode (BatchNorm on its
running statistics, dropout off), as a single-sample forward must be.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, jacrev, vmap
from torch.utils.data import Dataset

from ._utils import eval_mode
from .data.base import iterate_batches
from .errors import InvalidConfigError
from .models.adapter import logits_of

__all__ = ["per_sample_gradients", "per_sample_sum", "minibatch_sum", "per_sample_fisher", "FISHER_KINDS", "LOSSES"]

SampleLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y)


def _logit_norm(logits: torch.Tensor, _y: torch.Tensor) -> torch.Tensor:
    return logits.pow(2).sum(dim=-1).mean()


LOSSES: dict[str, SampleLoss] = {"cross_entropy": _cross_entropy, "logit_norm": _logit_norm}


def _loss_fn(loss: str | SampleLoss) -> SampleLoss:
    fn = LOSSES.get(loss) if isinstance(loss, str) else loss
    if fn is None:
        raise InvalidConfigError(f"Unknown per-sample loss {loss!r}; valid: {', '.join(LOSSES)} or a callable.")
    return fn


def per_sample_gradients(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    loss: str | SampleLoss = "cross_entropy",
    chunk_size: int | None = None,
) -> dict[str, torch.Tensor]:
    """Gradient of the loss of each sample with respect to each trainable parameter.

    Args:
        model: The model; evaluated in eval mode (its mode is restored afterwards).
        x: Inputs ``(B, ...)``.
        y: Labels ``(B,)`` (ignored by label-free losses).
        loss: "cross_entropy", "logit_norm" (squared L2 norm of the logits), or a function
            ``loss(logits (1, C), y (1,)) -> scalar``.
        chunk_size: Samples per vectorised chunk (bounds memory); None: all at once.

    Returns:
        Parameter name -> tensor of shape ``(B, *parameter.shape)``.

    Example:
        >>> from obliviate.models import build_model
        >>> m = build_model("mlp", input_shape=(4,), num_classes=3)
        >>> g = per_sample_gradients(m, torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1]))
        >>> g["head.weight"].shape
        torch.Size([5, 3, 128])
    """
    fn = _loss_fn(loss)
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def sample_loss(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, ({**p, **frozen}, buffers), (xi.unsqueeze(0),))
        return fn(logits_of(out), yi.unsqueeze(0))

    with eval_mode(model):
        return vmap(grad(sample_loss), in_dims=(None, 0, 0), chunk_size=chunk_size)(params, x, y)


def per_sample_sum(
    model: nn.Module,
    data: Dataset,
    transform: Callable[[torch.Tensor], torch.Tensor],
    *,
    loss: str | SampleLoss = "cross_entropy",
    batch_size: int = 64,
    device: torch.device,
    counter: dict[str, int] | None = None,
) -> tuple[dict[str, torch.Tensor], int]:
    """Sum over ``data`` of ``transform(per-sample gradient)``, per parameter.

    Used for per-sample Fisher-type statistics: ``transform=torch.square`` gives the diagonal
    empirical Fisher times N, ``torch.abs`` LFSSD's importance times N.

    Returns:
        (parameter name -> summed tensor, number of samples).
    """
    totals: dict[str, torch.Tensor] = {}
    n = 0
    for x, y in iterate_batches(data, batch_size, device=device):
        grads = per_sample_gradients(model, x, y, loss=loss)
        for name, g in grads.items():
            contribution = transform(g).sum(dim=0)
            totals[name] = totals[name] + contribution if name in totals else contribution
        n += x.shape[0]
        if counter is not None:
            counter["samples"] = counter.get("samples", 0) + x.shape[0]
    return totals, n


def minibatch_sum(
    model: nn.Module,
    data: Dataset,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    *,
    loss: str | SampleLoss = "cross_entropy",
    names: Sequence[str] | None = None,
    batch_size: int = 64,
    device: torch.device,
    counter: dict[str, int] | None = None,
) -> tuple[dict[str, torch.Tensor], int]:
    """Sum over the mini-batches of ``data`` of ``transform(gradient of the batch's loss)``, per parameter.

    The mini-batch counterpart of :func:`per_sample_sum` (one backward pass per batch, model in
    eval mode): SSD's importance is ``transform=torch.square`` of the batch-mean cross-entropy's
    gradient, and a loss with ``reduction="sum"`` without ``transform`` gives ``Σ_i ∇ loss_i``.

    Args:
        model: The model; evaluated in eval mode (its mode is restored afterwards).
        data: The samples, in order (not shuffled).
        transform: Applied to each batch's gradient before summing; None: the gradient itself.
        loss: "cross_entropy", "logit_norm" or ``loss(logits, y) -> scalar`` on a whole batch.
        names: Only these trainable parameters (None: every trainable parameter).
        batch_size: Samples per batch.
        device: Where to compute.
        counter: ``counter["samples"]`` is increased by the samples back-propagated.

    Returns:
        (parameter name -> summed tensor, number of batches).
    """
    fn = _loss_fn(loss)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad and (names is None or n in names)}
    tensors = list(params.values())
    totals = {n: torch.zeros_like(p) for n, p in params.items()}
    batches = 0
    with eval_mode(model):
        for x, y in iterate_batches(data, batch_size, device=device):
            grads = torch.autograd.grad(fn(logits_of(model(x)), y), tensors, allow_unused=True)
            for name, g in zip(params, grads, strict=True):
                if g is not None:
                    totals[name] += g if transform is None else transform(g)
            batches += 1
            if counter is not None:
                counter["samples"] = counter.get("samples", 0) + x.shape[0]
    return totals, batches


FISHER_KINDS = ("expected", "empirical")


def per_sample_fisher(
    model: nn.Module,
    data: Dataset,
    *,
    kind: str = "expected",
    batch_size: int = 64,
    chunk_size: int | None = None,
    device: torch.device,
    counter: dict[str, int] | None = None,
) -> tuple[dict[str, torch.Tensor], int]:
    """Sum over ``data`` of each sample's diagonal Fisher information, per parameter.

    ``kind="expected"``: the true Fisher of the model's predictive distribution,
    ``F_i = E_{k ~ p(.|x_i)} (∂ log p_k(x_i) / ∂θ)² = Σ_k p_k(x_i) (∂ log p_k(x_i) / ∂θ)²``
    (no labels are read). Per sample, the Jacobian of the C log-probabilities is taken with
    ``vmap(jacrev(...))`` (one forward and C vectorised backward passes per sample, vmapped over
    the samples: no Python loop over samples or classes); the probabilities come from the same
    forward and are constants. ``kind="empirical"``: ``(∂ log p_{y_i}(x_i) / ∂θ)²`` with the true
    labels (:func:`per_sample_gradients`).

    Args:
        model: The classifier; evaluated in eval mode (its mode is restored).
        data: The samples.
        kind: "expected" or "empirical".
        batch_size: Samples per batch.
        chunk_size: Samples per vectorised chunk (bounds memory: the expected Fisher holds
            ``chunk × C × P`` floats). None: as many as fit in about 1 GiB of float32 for the
            expected Fisher, the whole batch for the empirical one.
        device: Device of the model.
        counter: ``counter["samples"]`` grows by the samples back-propagated (``C`` per sample
            for the expected Fisher).

    Returns:
        (parameter name -> summed Fisher of the parameter's shape, number of samples). Divide by
        the count for the mean.
    """
    if kind not in FISHER_KINDS:
        raise InvalidConfigError(f"The 'kind' argument of per_sample_fisher must be one of {FISHER_KINDS}; got {kind!r}.")
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    size = sum(p.numel() for p in params.values())

    def log_probs(p: dict[str, torch.Tensor], xi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = torch.log_softmax(logits_of(functional_call(model, ({**p, **frozen}, buffers), (xi.unsqueeze(0),))), dim=-1)[0]
        return out, out.detach().exp()

    totals: dict[str, torch.Tensor] = {}
    n = 0

    def add(name: str, contribution: torch.Tensor) -> None:
        totals[name] = totals[name] + contribution if name in totals else contribution

    for x, y in iterate_batches(data, batch_size, device=device):
        if kind == "empirical":
            for name, g in per_sample_gradients(model, x, y, chunk_size=chunk_size).items():
                add(name, g.square().sum(dim=0))
            passes = 1
        elif x.shape[0] == 1:  # one sample: C plain backward passes beat the vmap machinery's overhead
            names = list(params)
            tensors = [p for n, p in model.named_parameters() if n in params]
            with eval_mode(model):
                log_p = torch.log_softmax(logits_of(model(x)), dim=-1)[0]
                probs = log_p.detach().exp()
                passes = log_p.shape[0]
                for k in range(passes):
                    grads = torch.autograd.grad(log_p[k], tensors, retain_graph=k < passes - 1, allow_unused=True)
                    for name, g in zip(names, grads, strict=True):
                        if g is not None:
                            add(name, probs[k].to(g.dtype) * g.square())
        else:
            with eval_mode(model):
                classes = logits_of(model(x[:1])).shape[-1]
                chunk = chunk_size or max(1, 2**28 // max(1, classes * size))
                jac, probs = vmap(jacrev(log_probs, has_aux=True), in_dims=(None, 0), chunk_size=chunk)(params, x)
            for name, j in jac.items():  # j: (B, C, *shape)
                weight = probs.to(j.dtype).reshape(*probs.shape, *([1] * (j.dim() - 2)))
                add(name, (weight * j.square()).sum(dim=(0, 1)))
            passes = classes
        n += x.shape[0]
        if counter is not None:
            counter["samples"] = counter.get("samples", 0) + passes * x.shape[0]
    return totals, n
