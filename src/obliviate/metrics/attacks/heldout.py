"""The non-members of membership attacks: held-out samples from the forget set's distribution.

Two sets, both views over a :class:`~obliviate.data.Scenario`'s index arrays (no split of the
scenario changes):

* :func:`attack_heldout_split` (= :attr:`Scenario.attack_heldout`): test-split samples only,
  the non-members of the ``mia_adversarial`` metric;
* :func:`heldout_split`: validation samples, the non-members of the ``adversarial``
  method's game (the defender may read the validation split, never the test split).
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

from ...data.base import Concat, Subset
from ...data.scenario import Scenario

__all__ = ["attack_heldout_split", "heldout_split"]


def _forget_groups(scenario: Scenario) -> tuple[np.ndarray, np.ndarray]:
    """(the validation samples' group labels, the groups of the forget set).

    A group is the fine label for sub-class forgetting and the class otherwise.
    """
    ds = scenario.dataset
    if scenario.kind == "subclass" and ds.train_fine is not None:
        return np.asarray(ds.train_fine)[scenario.val_idx], np.asarray([scenario.params["fine_class"]])
    labels = ds.train_targets
    if scenario.kind == "classwise":
        return labels[scenario.val_idx], np.asarray([scenario.params["forget_class"]])
    return labels[scenario.val_idx], np.unique(labels[scenario.forget_idx])


def heldout_split(scenario: Scenario, *, restrict: bool = True, include_test: bool = False) -> Dataset:
    """Held-out samples from the forget set's distribution: the non-members of the ``adversarial`` game.

    Validation samples (the defender may read the validation split; the ``mia_adversarial``
    metric scores against :func:`attack_heldout_split`, test samples, instead). A view over
    ``val_idx`` (and ``test_idx`` with ``include_test``); no split of the scenario changes.

    Args:
        scenario: The scenario.
        restrict: Keep only validation samples of the forget set's class(es): the forgotten
            class of a class-wise scenario, the forgotten sub-class of a sub-class scenario,
            the classes present in D_f otherwise (all of them for random forgetting).
            False: the whole validation split.
        include_test: Also add the test samples of the forgotten (sub-)class (class-wise and
            sub-class scenarios only; the validation split alone holds ~10 % of a class).

    Returns:
        A dataset (a view of the train split, or of train and test concatenated).
    """
    val_groups, wanted = _forget_groups(scenario)
    idx = scenario.val_idx[np.isin(val_groups, wanted)] if restrict else scenario.val_idx
    val = Subset(scenario.dataset.train, idx)
    if include_test and scenario.test_forget is not None:
        return Concat([val, scenario.test_forget])
    return val


def attack_heldout_split(scenario: Scenario) -> Subset:
    """The non-members of the ``mia_adversarial`` metric: test-split samples like the forget set.

    Only the test split is used: it is disjoint from the training set and from the validation
    split, which methods may read (the ``adversarial`` defender trains against the validation
    samples, so scoring against them would flatter it). For class-wise and sub-class forgetting
    these are the test samples of the forgotten (sub-)class (:attr:`Scenario.test_forget`); for
    random and custom forgetting, the test samples of the classes present in D_f. The same
    view as :attr:`Scenario.attack_heldout`.

    Args:
        scenario: The scenario.

    Returns:
        A view of ``scenario.dataset.test``.
    """
    return scenario.attack_heldout
