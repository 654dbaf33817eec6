"""The learned membership attack of Discriminative Adversarial Unlearning, as an evaluation.

:func:`mia_adversarial` trains a fresh attacker (:class:`obliviate.metrics.attacks.Attacker`)
on attack features ``[logits ‖ one-hot label ‖ sensitivity]`` of forget samples (members)
against held-out samples of the same distribution (non-members), and reports its accuracy on a
held-out part of both sets: 0.5 means the forget set looks unseen, 1.0 that it is fully
exposed. The retrained oracle is the target (goal "oracle").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..._utils import seeded
from ...errors import InvalidConfigError, MissingDataError
from ..attacks.attacker import Attacker, train_attacker
from ._common import as_array
from .mia import balanced_subsample

__all__ = ["mia_adversarial", "METRIC_ATTACKER"]

# The attacker used by the metric: the paper's architecture at the digits preset's size, small
# enough to train quickly on a CPU for a few hundred samples per side.
METRIC_ATTACKER: dict[str, Any] = {"dim": 16, "layers": 1, "heads": 2, "ff": 32, "dropout": 0.2, "hidden": 16}


def _features(values: Any, name: str) -> np.ndarray:
    arr = as_array(values, name, np.float32)
    if arr.ndim != 2 or arr.shape[1] == 0 or arr.shape[1] % 3:
        raise InvalidConfigError(
            f"The {name!r} argument must be an (N, 3C) array of attack features [logits, one-hot, sensitivity]; "
            f"got shape {arr.shape}."
        )
    if not np.all(np.isfinite(arr)):
        raise InvalidConfigError(f"The {name!r} attack features must be finite.")
    return arr


def mia_adversarial(
    members: Any,
    nonmembers: Any,
    *,
    seed: int = 0,
    test_fraction: float = 0.3,
    steps: int = 100,
    batch_size: int = 64,
    lr: float = 1e-3,
    attacker: dict[str, Any] | None = None,
) -> float:
    """Accuracy of a freshly trained attacker at telling members from non-members.

    The two sets are balanced by subsampling the larger one (seeded); a ``test_fraction`` of
    each is held out for scoring; an attacker is trained on the rest for ``steps`` Adam steps
    on balanced mini-batches (:func:`obliviate.metrics.attacks.train_attacker`), then
    scored in eval mode on the held-out part. Initialisation, dropout and batch draws all
    come from ``seed``, so the value is reproducible on the CPU.

    Args:
        members: ``(N_m, 3C)`` attack features of the forget set.
        nonmembers: ``(N_n, 3C)`` attack features of held-out samples.
        seed: Seed of the subsample, the split, the initialisation and the batches.
        test_fraction: Share of each balanced set kept for scoring. Default 0.3.
        steps: Training steps. Default 100.
        batch_size: Samples per side and step. Default 64.
        lr: Adam learning rate. Default 1e-3.
        attacker: Size of the :class:`~obliviate.metrics.attacks.Attacker` (keyword
            arguments); default :data:`METRIC_ATTACKER`.

    Returns:
        Balanced accuracy in [0, 1] on the scoring part (0.5: indistinguishable).

    Raises:
        MissingDataError: fewer than 2 samples on the smaller side.
        InvalidConfigError: malformed features or arguments.
    """
    m, n = _features(members, "members"), _features(nonmembers, "nonmembers")
    if m.shape[1] != n.shape[1]:
        raise InvalidConfigError(f"Members have {m.shape[1]} attack features, non-members {n.shape[1]}; they must match.")
    if not 0.0 < float(test_fraction) < 1.0:
        raise InvalidConfigError(f"The 'test_fraction' argument must be in (0, 1); got {test_fraction!r}.")
    m, n = balanced_subsample(m, n, seed)
    k = len(m)
    if k < 2:
        raise MissingDataError(f"mia_adversarial needs at least 2 members and 2 non-members; the smaller side has {k}.")
    n_score = min(k - 1, max(1, round(test_fraction * k)))
    rng = np.random.default_rng([seed, 3])
    pm, pn = rng.permutation(k), rng.permutation(k)
    train_m, score_m = torch.from_numpy(m[pm[n_score:]]), torch.from_numpy(m[pm[:n_score]])
    train_n, score_n = torch.from_numpy(n[pn[n_score:]]), torch.from_numpy(n[pn[:n_score]])
    with seeded(seed):
        net = Attacker(m.shape[1] // 3, **(METRIC_ATTACKER if attacker is None else attacker))
        train_attacker(
            net, train_m, train_n, steps=steps, batch_size=batch_size, lr=lr, generator=torch.Generator().manual_seed(seed)
        )
    net.eval()
    with torch.no_grad():
        pred = net(torch.cat([score_m, score_n])).argmax(1).numpy()
    truth = np.concatenate([np.ones(n_score), np.zeros(n_score)])
    return float(np.mean(pred == truth))
