"""Text classifiers (extra ``text``: transformers): token datasets, BERT from a config, frozen encoders.

Two ways to unlearn on text, both through the same API as images:

* **Fine-tuned sequence classifiers**: any Hugging Face ``*ForSequenceClassification`` model
  takes a batch of token ids and returns an object with ``.logits``, which the training loop,
  the methods and the metrics read (:func:`~obliviate.models.adapter.logits_of`). Token ids
  live in an :class:`~obliviate.data.ArrayDataset` of integers (:func:`token_dataset`), which
  hands them out unchanged (no float conversion). ``build_model("bert", ds, ...)`` builds a
  BERT classifier from a ``BertConfig`` (nothing is downloaded); a pretrained model from
  ``from_pretrained`` works the same way.
* **Frozen encoder + linear head**, the unrolling paper's "BERT" experiment (a linear 768->2
  classifier trained with SGD on pooled BERT features): :func:`encode_dataset` runs a frozen
  encoder once over a token dataset and returns a float feature dataset; the head is
  ``build_model("mlp", features, hidden=())`` (a single linear layer). Unlearning, retraining
  and every metric then concern the head only, as in the paper.

Inputs are token ids only: the attention mask is all ones, so use sequences of equal length
(or pad with a token the model has learned to ignore).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .._utils import require, resolve_device, seeded
from .._validation import check_choice, check_interval
from ..data.base import ArrayDataset, DatasetSplits, iterate_batches
from ..errors import IncompatibleModelError, InvalidConfigError
from .zoo import MODELS

__all__ = ["token_dataset", "encode_dataset", "bert_classifier", "POOLINGS"]

POOLINGS: tuple[str, ...] = ("cls", "mean", "pooler")


def _transformers() -> Any:
    return require("transformers", "text", "Text models")


def token_dataset(
    train_ids: Any,
    train_labels: Any,
    test_ids: Any,
    test_labels: Any,
    *,
    name: str = "text",
    num_classes: int | None = None,
    classes: Sequence[str] | None = None,
) -> DatasetSplits:
    """A dataset of token-id sequences (e.g. a tokenizer's ``input_ids``) and labels.

    Args:
        train_ids: ``(N, L)`` integer token ids of the train split.
        train_labels: Train labels.
        test_ids: ``(M, L)`` token ids of the test split.
        test_labels: Test labels.
        name: Name recorded in scenarios and run records.
        num_classes: Defaults to ``len(classes)`` or ``max(label) + 1``.
        classes: Optional class names.

    Example:
        >>> ds = token_dataset([[1, 2, 3], [4, 5, 6]], [0, 1], [[1, 2, 2]], [0])
        >>> ds.train[1][0].dtype, ds.input_shape
        (torch.int64, (3,))
    """
    splits = []
    for label, ids, y in (("train_ids", train_ids, train_labels), ("test_ids", test_ids, test_labels)):
        t = ids if isinstance(ids, torch.Tensor) else torch.as_tensor(np.asarray(ids))
        if t.dim() != 2 or t.is_floating_point() or t.dtype in (torch.bool, torch.uint8):
            raise InvalidConfigError(
                f"The {label!r} argument of token_dataset must be a 2-D array of integer token ids; "
                f"got {t.dtype} {tuple(t.shape)}."
            )
        if t.numel() and int(t.min()) < 0:
            raise InvalidConfigError(f"The {label!r} token ids must be non-negative; found {int(t.min())}.")
        splits.append(ArrayDataset(t.long(), y))
    if splits[0].input_shape != splits[1].input_shape:
        raise InvalidConfigError(
            f"Train and test sequences must have the same length; got {splits[0].input_shape} and {splits[1].input_shape}."
        )
    seen = max(int(s.targets.max()) for s in splits if len(s)) + 1
    k = num_classes if num_classes is not None else (len(classes) if classes is not None else seen)
    k = check_interval("token_dataset", "num_classes", k, kind=int, low=max(2, seen))
    return DatasetSplits(
        name=name,
        train=splits[0],
        test=splits[1],
        num_classes=k,
        classes=tuple(classes) if classes is not None else tuple(str(c) for c in range(k)),
        input_shape=splits[0].input_shape,
        info={"source": "token_dataset"},
    )


def bert_classifier(
    num_classes: int,
    *,
    vocab_size: int,
    max_length: int = 512,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    intermediate: int | None = None,
    dropout: float = 0.0,
    seed: int = 0,
) -> nn.Module:
    """A ``BertForSequenceClassification`` built from a ``BertConfig`` (no download), seeded.

    Args:
        num_classes: Number of labels.
        vocab_size: Token vocabulary size.
        max_length: Maximum sequence length (position embeddings).
        hidden: Hidden size.
        layers: Transformer layers.
        heads: Attention heads (must divide ``hidden``).
        intermediate: Feed-forward size (default ``4 * hidden``).
        dropout: Hidden and attention dropout (0 keeps runs replayable).
        seed: Initialisation seed.
    """
    tf = _transformers()
    if hidden % heads:
        raise InvalidConfigError(f"bert_classifier: hidden={hidden} must be a multiple of heads={heads}.")
    config = tf.BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate or 4 * hidden,
        max_position_embeddings=max_length,
        num_labels=num_classes,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    with seeded(seed):
        return tf.BertForSequenceClassification(config)


@MODELS.register("bert")
def _bert(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    vocab_size: int = 30522,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    dropout: float = 0.0,
) -> nn.Module:
    """A small BERT sequence classifier from a config (extra ``text``); inputs are token ids."""
    if len(input_shape) != 1:
        raise IncompatibleModelError(f"The 'bert' model takes token-id sequences (L,); got input shape {input_shape}.")
    return bert_classifier(
        num_classes,
        vocab_size=check_interval("bert", "vocab_size", vocab_size, kind=int, low=2),
        max_length=max(int(input_shape[0]), 2),
        hidden=check_interval("bert", "hidden", hidden, kind=int, low=1),
        layers=check_interval("bert", "layers", layers, kind=int, low=1),
        heads=check_interval("bert", "heads", heads, kind=int, low=1),
        dropout=check_interval("bert", "dropout", dropout, low=0.0, high=1.0, closed="left"),
    )


@torch.no_grad()
def encode_dataset(
    encoder: nn.Module,
    dataset: DatasetSplits,
    *,
    pooling: str = "cls",
    batch_size: int = 64,
    device: str | torch.device = "auto",
    name: str | None = None,
) -> DatasetSplits:
    """Features of a frozen encoder for every sample: the input of a linear head.

    Args:
        encoder: A Hugging Face encoder (e.g. ``BertModel``, or ``classifier.bert``) returning
            ``last_hidden_state`` (and ``pooler_output`` for ``pooling="pooler"``), or any module
            returning a ``(B, L, H)`` or ``(B, H)`` tensor. Run in eval mode (restored).
        dataset: A token dataset (:func:`token_dataset`).
        pooling: "cls" (the first token's state), "mean" (mean over tokens) or "pooler"
            (BERT's pooled output, as in the paper's features).
        batch_size: Encoding batch size.
        device: "auto", "cpu", "cuda" ...
        name: Name of the feature dataset (default ``"<name>-features"``).

    Returns:
        A :class:`~obliviate.data.DatasetSplits` of float32 features with the same labels.
    """
    from .._utils import eval_mode

    pooling = check_choice("encode_dataset", "pooling", pooling, POOLINGS)
    dev = resolve_device(device)
    encoder = encoder.to(dev)
    feats = []
    with eval_mode(encoder):
        for part in (dataset.train, dataset.test):
            out = []
            for x, _ in iterate_batches(part, batch_size, device=dev):
                h = encoder(x)
                if pooling == "pooler":
                    pooled = getattr(h, "pooler_output", None)
                    if pooled is None:
                        raise IncompatibleModelError("pooling='pooler' needs an encoder with a pooler_output (e.g. BertModel).")
                    out.append(pooled.float().cpu())
                    continue
                states = h if isinstance(h, torch.Tensor) else getattr(h, "last_hidden_state", None)
                if not isinstance(states, torch.Tensor):
                    raise IncompatibleModelError("The encoder must return a tensor or an object with last_hidden_state.")
                if states.dim() == 2:
                    out.append(states.float().cpu())
                else:
                    out.append((states[:, 0] if pooling == "cls" else states.mean(dim=1)).float().cpu())
            feats.append(torch.cat(out) if out else torch.zeros(0, 0))
    train = ArrayDataset(feats[0], dataset.train_targets)
    test = ArrayDataset(feats[1], dataset.test_targets)
    return DatasetSplits(
        name=name or f"{dataset.name}-features",
        train=train,
        test=test,
        num_classes=dataset.num_classes,
        classes=dataset.classes,
        input_shape=tuple(feats[0].shape[1:]),
        info={"source": "encode_dataset", "pooling": pooling, "from": dataset.name},
    )
