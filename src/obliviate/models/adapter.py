"""Logits, penultimate features and the classification head of any classifier.

Methods that look inside a model (feature-level losses, head-only updates) go through
:class:`ModelAdapter` instead of assuming an architecture. The head is found by running one
forward pass with hooks and taking the last ``nn.Linear`` whose output *is* the model's output,
so it works for torchvision, timm and Hugging Face classifiers alike; the features are the
head's input, captured by a forward pre-hook. All hooks are removed before returning.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .._utils import eval_mode
from ..errors import IncompatibleModelError

__all__ = ["ModelAdapter", "logits_of", "find_head"]


def logits_of(output: Any) -> torch.Tensor:
    """The logits in a model's output: the tensor itself, ``.logits`` (Hugging Face), or the
    first element of a tuple (models that also return features).
    """
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise IncompatibleModelError(
        f"Cannot find logits in a model output of type {type(output).__name__}; return a tensor, a tuple "
        "starting with the logits, or an object with a .logits tensor."
    )


def find_head(model: nn.Module, example: torch.Tensor) -> tuple[str, nn.Linear]:
    """Name and module of the classification head: the last ``nn.Linear`` producing the output.

    Args:
        model: The classifier.
        example: A small input batch (one sample is enough).

    Raises:
        IncompatibleModelError: no ``nn.Linear`` produces the logits.
    """
    names = {m: n for n, m in model.named_modules()}
    produced: list[tuple[nn.Module, torch.Tensor]] = []
    handles = [
        m.register_forward_hook(lambda mod, _inp, out: produced.append((mod, out)))
        for m in model.modules()
        if isinstance(m, nn.Linear)
    ]
    try:
        with eval_mode(model), torch.no_grad():
            logits = logits_of(model(example))
    finally:
        for h in handles:
            h.remove()
    for module, out in reversed(produced):
        if isinstance(out, torch.Tensor) and out.shape == logits.shape and torch.equal(out, logits):
            return names[module], module  # type: ignore[return-value]
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear) and m.out_features == logits.shape[-1]]
    if linears:
        return linears[-1]  # type: ignore[return-value]
    raise IncompatibleModelError(
        f"{type(model).__name__} has no nn.Linear layer producing its {logits.shape[-1]} logits; "
        "methods that need features or the head cannot run on it."
    )


class ModelAdapter:
    """A view of a classifier as logits, features and head.

    Args:
        model: Any classifier returning logits (or a tuple / object holding them).
        example: A small input batch; when given, the head is located at once, otherwise on
            the first call that sees an input.

    Example:
        >>> from obliviate.models import build_model
        >>> m = build_model("mlp", input_shape=(4,), num_classes=3)
        >>> ad = ModelAdapter(m, example=torch.zeros(1, 4))
        >>> ad.head_name, ad.features(torch.zeros(2, 4)).shape
        ('head', torch.Size([2, 128]))
    """

    def __init__(self, model: nn.Module, example: torch.Tensor | None = None) -> None:
        self.model = model
        self._head: tuple[str, nn.Linear] | None = None
        if example is not None:
            self._locate(example)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The model's logits for ``x``."""
        return logits_of(self.model(x))

    def _locate(self, x: torch.Tensor) -> tuple[str, nn.Linear]:
        if self._head is None:
            self._head = find_head(self.model, x[:1])
        return self._head

    def head(self, example: torch.Tensor) -> nn.Linear:
        """The classification head (found with ``example`` on first use)."""
        return self._locate(example)[1]

    @property
    def head_name(self) -> str:
        """Qualified name of the head module.

        Raises:
            IncompatibleModelError: the head was not located yet (pass ``example=`` or call
                :meth:`features` / :meth:`head` with an input first).
        """
        if self._head is None:
            raise IncompatibleModelError(
                "The head is located from an input: pass example= to ModelAdapter or call features(x) first."
            )
        return self._head[0]

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Penultimate features (the head's input, flattened) and logits, in one forward pass."""
        _, head = self._locate(x)
        captured: list[torch.Tensor] = []
        handle = head.register_forward_pre_hook(lambda _m, inp: captured.append(inp[0]))
        try:
            logits = self.logits(x)
        finally:
            handle.remove()
        if not captured:
            raise IncompatibleModelError("The head was not called in the forward pass; cannot read features.")
        return captured[-1].flatten(1), logits

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features of ``x``."""
        return self.features_and_logits(x)[0]

    def head_parameters(self) -> dict[str, nn.Parameter]:
        """Qualified name -> parameter, for the head only."""
        prefix = self.head_name
        return {n: p for n, p in self.model.named_parameters() if n.startswith(prefix + ".")}
