"""Feature extractors for certified removal: raw inputs, frozen torch modules, a DP-SGD extractor.

Certified removal covers the linear model on top of the features. Guo et al. (§3.8 of
``theory-seeds.md``) use either a *public* extractor (trained on other data, so removals do not
concern it) or a *differentially private* one trained on the private data: (ε, δ)-DP implies
certified removal of one sample by doing nothing, and k removals cost ``(k ε, k e^{(k-1) ε} δ)``
by group privacy, which is what limits the number of certified removals in the paper's SVHN
experiment.

Differences from the seed code: the whole network, head included, is trained with DP-SGD (its
``private`` mode left the head non-private, which the extractor's gradients depend on); Opacus
draws Poisson-sampled batches, which is what the RDP accountant assumes (the seed code shuffled
fixed-size batches); the clipping norm is a parameter (it was hard-coded to 4).
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from .._utils import eval_mode, require, resolve_device, seeded
from .._validation import check_choice, check_interval, check_seed
from ..data import iterate_batches
from ..errors import InvalidConfigError
from ..models import ModelAdapter

__all__ = ["RawFeatures", "TorchFeatures", "DPFeatureExtractor", "train_dp_extractor", "dp_epsilon", "group_privacy"]


def _batches(data: Any, batch_size: int, device: torch.device) -> Any:
    """Input batches of a Dataset (labels dropped), a tensor or an array."""
    if isinstance(data, Dataset):
        for x, _ in iterate_batches(data, batch_size, device=device):
            yield x
        return
    arr = data if isinstance(data, torch.Tensor) else torch.as_tensor(np.asarray(data))
    for start in range(0, arr.shape[0], batch_size):
        yield arr[start : start + batch_size].to(device)


class RawFeatures:
    """The inputs themselves, flattened to ``(n, prod(input_shape))`` float64 (the paper's MNIST setting).

    Example:
        >>> RawFeatures().transform(torch.zeros(2, 1, 8, 8)).shape
        (2, 64)
    """

    def transform(self, data: Any, *, batch_size: int = 1024) -> np.ndarray:
        """Features of a Dataset, tensor or array."""
        parts = [x.reshape(x.shape[0], -1).double().cpu().numpy() for x in _batches(data, batch_size, torch.device("cpu"))]
        return np.concatenate(parts) if parts else np.zeros((0, 0))

    def describe(self) -> dict[str, Any]:
        """JSON description (recorded in run directories)."""
        return {"kind": "raw"}


class TorchFeatures:
    """Features from a frozen torch module, e.g. a model trained with ``ob.train``.

    The module is run in eval mode without gradients and is never changed (each submodule's
    train/eval mode is restored). With ``penultimate=True`` the features are the input of the
    classification head, found by :class:`~obliviate.models.ModelAdapter`; otherwise the module's
    output, flattened.

    Args:
        module: Any ``nn.Module``.
        penultimate: Take the head's input (True, default) or the output (False).
        batch_size: Rows per forward pass.
        device: "cpu", "cuda", "auto" (default "cpu").

    Example:
        >>> import obliviate as ob
        >>> net = ob.build_model("mlp", input_shape=(4,), num_classes=3, seed=0)
        >>> TorchFeatures(net).transform(torch.zeros(5, 4)).shape
        (5, 128)
    """

    def __init__(self, module: nn.Module, *, penultimate: bool = True, batch_size: int = 512, device: str = "cpu") -> None:
        if not isinstance(module, nn.Module):
            raise InvalidConfigError(f"TorchFeatures needs an nn.Module; got {type(module).__name__}.")
        self.module = module
        self.penultimate = bool(penultimate)
        self.batch_size = check_interval(self, "batch_size", batch_size, int, low=1)
        self.device = resolve_device(device)

    def transform(self, data: Any) -> np.ndarray:
        """Features of a Dataset, tensor or array, as float64 ``(n, features)``."""
        model_device = next((p.device for p in self.module.parameters()), self.device)
        moved = model_device != self.device
        if moved:
            self.module.to(self.device)
        adapter = ModelAdapter(self.module) if self.penultimate else None
        parts = []
        try:
            with eval_mode(self.module), torch.no_grad():
                for x in _batches(data, self.batch_size, self.device):
                    x = x.float()
                    out = adapter.features(x) if adapter is not None else self.module(x)
                    parts.append(out.reshape(out.shape[0], -1).double().cpu().numpy())
        finally:
            if moved:
                self.module.to(model_device)
        return np.concatenate(parts) if parts else np.zeros((0, 0))

    def describe(self) -> dict[str, Any]:
        """JSON description (recorded in run directories)."""
        return {"kind": "torch", "module": type(self.module).__name__, "penultimate": self.penultimate}


def group_privacy(epsilon: float, delta: float, k: int) -> tuple[float, float]:
    """(ε, δ)-DP for groups of ``k`` samples: ``(k ε, k e^{(k-1) ε} δ)`` (the standard group-privacy bound).

    This is what removing ``k`` samples "for free" from a DP extractor costs.

    Example:
        >>> group_privacy(0.1, 1e-5, 1)
        (0.1, 1e-05)
    """
    k = check_interval("group_privacy", "k", k, int, low=1)
    return k * epsilon, k * math.exp((k - 1) * epsilon) * delta


def dp_epsilon(
    *,
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    delta: float,
    orders: list[float] | None = None,
    conversion: str = "improved",
) -> float:
    """ε of the Poisson-subsampled Gaussian mechanism after ``steps`` steps, from its Rényi DP
    (Opacus' RDP analysis).

    Args:
        noise_multiplier: Noise std over the clipping norm (σ of DP-SGD).
        sample_rate: Poisson sampling rate ``q = B / n``.
        steps: Number of noisy steps ``T``.
        delta: Target δ.
        orders: Rényi orders (default: Opacus' ``RDPAccountant.DEFAULT_ALPHAS``).
        conversion: "improved" (Opacus' RDP -> (ε, δ) conversion, tighter, the default) or
            "classic" (``min_a T RDP_a + log(1/δ) / (a - 1)``, what the seed's pytorch-dp used).

    Raises:
        MissingDependencyError: Opacus is not installed (``pip install obliviate[dp]``).
    """
    conversion = check_choice("dp_epsilon", "conversion", conversion, ("improved", "classic"))
    require("opacus", "dp", "dp_epsilon")
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis import rdp

    alphas = list(orders) if orders is not None else list(RDPAccountant.DEFAULT_ALPHAS)
    values = np.asarray(
        rdp.compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=steps, orders=alphas), dtype=float
    )
    ok = np.isfinite(values)  # very large orders overflow in Opacus' series
    a, values = np.asarray(alphas, dtype=float)[ok], values[ok]
    if conversion == "classic":
        return float(np.min(values + math.log(1.0 / delta) / (a - 1.0)))
    eps, _ = rdp.get_privacy_spent(orders=list(a), rdp=list(values), delta=delta)
    return float(eps)


@dataclass
class DPFeatureExtractor(TorchFeatures):
    """A feature extractor trained with DP-SGD, with the privacy it spent.

    Built by :func:`train_dp_extractor`. Attributes beyond :class:`TorchFeatures`: ``epsilon``
    and ``delta`` (the guarantee of the whole training run, RDP accountant), the DP-SGD settings,
    and :meth:`group_privacy`.
    """

    module: nn.Module
    epsilon: float
    delta: float
    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float
    steps: int
    epochs: int
    penultimate: bool = True
    batch_size: int = 512
    device: Any = field(default_factory=lambda: torch.device("cpu"))
    history: list[float] = field(default_factory=list)
    seeded: bool = False

    def group_privacy(self, k: int) -> tuple[float, float]:
        """The (ε, δ) this extractor guarantees for a group of ``k`` samples (k removals)."""
        return group_privacy(self.epsilon, self.delta, k)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "dp",
            "module": type(self.module).__name__,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "noise_multiplier": self.noise_multiplier,
            "max_grad_norm": self.max_grad_norm,
            "sample_rate": self.sample_rate,
            "steps": self.steps,
            "epochs": self.epochs,
            "noise_source": "seed (reproducible)" if self.seeded else "operating-system entropy",
        }


def train_dp_extractor(
    model: nn.Module,
    dataset: Dataset,
    *,
    epochs: int = 5,
    lr: float = 0.1,
    batch_size: int = 64,
    noise_multiplier: float = 1.0,
    max_grad_norm: float = 1.0,
    delta: float = 1e-5,
    seed: int | None = None,
    device: str = "cpu",
) -> DPFeatureExtractor:
    """Train a copy of ``model`` (all of it, head included) with DP-SGD through Opacus and return
    it as a frozen feature extractor with its privacy spent.

    Abadi et al. 2016 (arXiv:1607.00133): per-sample gradients clipped to ``max_grad_norm``, summed,
    plus ``N(0, (noise_multiplier * max_grad_norm)^2)`` noise, averaged; Poisson-sampled batches of
    expected size ``batch_size``; SGD. BatchNorm layers are replaced by GroupNorm first
    (``ModuleValidator.fix``): BatchNorm mixes samples, which DP-SGD cannot account for. The
    caller's model is not changed.

    Args:
        model: A classifier (its penultimate features become the extractor's output).
        dataset: The private training data (``(input, label)`` items).
        epochs: Passes over the data (default 5).
        lr: SGD learning rate (default 0.1).
        batch_size: Expected batch size (Opacus samples each row with probability
            ``1 / ceil(n / batch_size)``; default 64).
        noise_multiplier: σ of DP-SGD (default 1.0; the paper's SVHN extractor used 6).
        max_grad_norm: Clipping norm C (default 1.0; the seed code hard-coded 4).
        delta: δ at which ε is reported (default 1e-5).
        seed: Seed of the batch sampling, the DP-SGD noise and the training's other draws
            (dropout). None (the default) seeds them from operating-system entropy
            (``os.urandom``), fresh for each call; a deployment must not use a known seed, which
            makes the noise known and the reported ε void. The generators are torch's (Mersenne
            Twister): Opacus' ``secure_mode`` needs ``torchcsprng``, which does not install beside a
            current torch, so Opacus' "Secure RNG turned off" warning is left to show.
        device: "cpu", "cuda" or "auto".

    Raises:
        MissingDependencyError: Opacus is not installed (``pip install obliviate[dp]``).
    """
    require("opacus", "dp", "train_dp_extractor")
    from opacus import PrivacyEngine
    from opacus.validators import ModuleValidator

    owner = "train_dp_extractor"
    epochs = check_interval(owner, "epochs", epochs, int, low=1)
    lr = check_interval(owner, "lr", lr, low=0.0, closed="neither")
    batch_size = check_interval(owner, "batch_size", batch_size, int, low=1)
    noise_multiplier = check_interval(owner, "noise_multiplier", noise_multiplier, low=0.0, closed="neither")
    max_grad_norm = check_interval(owner, "max_grad_norm", max_grad_norm, low=0.0, closed="neither")
    delta = check_interval(owner, "delta", delta, low=0.0, high=1.0, closed="neither")
    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        raise InvalidConfigError("train_dp_extractor needs a non-empty dataset.")
    if seed is not None:
        seed = check_seed(owner, seed)
    dev = resolve_device(device)

    def draw_seed(offset: int) -> int:
        """The seed of one generator: from ``seed`` when given, else 8 fresh bytes of OS entropy."""
        if seed is None:
            return int.from_bytes(os.urandom(8), "little")
        return int(seed) + offset

    net = ModuleValidator.fix(copy.deepcopy(model)).to(dev)
    net.train()
    gen = torch.Generator().manual_seed(draw_seed(0))  # Poisson sampling (Opacus uses the loader's generator)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=gen)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    engine = PrivacyEngine(accountant="rdp")  # warns that secure mode is off (see ``seed``): not silenced
    noise_gen = torch.Generator(device=dev).manual_seed(draw_seed(1))  # the DP-SGD noise
    with seeded(draw_seed(2), dev):
        private, optimizer, loader = engine.make_private(
            module=net,
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            poisson_sampling=True,
            noise_generator=noise_gen,
        )
        losses = []
        loss_fn = nn.CrossEntropyLoss()
        for _ in range(epochs):
            total, count = 0.0, 0
            for x, y in loader:
                if len(x) == 0:  # Poisson sampling can draw an empty batch
                    continue
                optimizer.zero_grad()
                loss = loss_fn(private(x.to(dev).float()), torch.as_tensor(y).long().to(dev))
                loss.backward()
                optimizer.step()
                total, count = total + float(loss) * len(x), count + len(x)
            losses.append(total / max(count, 1))
    epsilon = float(engine.get_epsilon(delta))
    steps = int(sum(entry[2] for entry in engine.accountant.history))
    sample_rate = float(engine.accountant.history[0][1]) if engine.accountant.history else 1.0 / len(loader)
    private._close()  # remove Opacus' hooks; `net` is the trained module
    for p in net.parameters():
        p.requires_grad_(False)
    net.eval()
    return DPFeatureExtractor(
        module=net,
        epsilon=epsilon,
        delta=delta,
        noise_multiplier=noise_multiplier,
        max_grad_norm=max_grad_norm,
        sample_rate=sample_rate,
        steps=steps,
        epochs=epochs,
        device=dev,
        history=losses,
        seeded=seed is not None,
    )
