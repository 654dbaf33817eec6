"""The model zoo (a registry) and the adapter that reads logits, features and head of any classifier."""

from . import text  # noqa: F401 - registers "bert" (transformers is imported only when one is built)
from .adapter import ModelAdapter, find_head, logits_of
from .zoo import MLP, MODELS, SmallCNN, build_model, reinitialize

__all__ = ["MLP", "MODELS", "ModelAdapter", "SmallCNN", "build_model", "find_head", "logits_of", "reinitialize"]
