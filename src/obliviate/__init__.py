"""obliviate: machine unlearning for PyTorch classifiers, and how well it worked.

The data flow is one way: data -> scenario -> model -> train -> unlearn -> evaluate -> report.

Example:
    >>> import obliviate as ob
    >>> ds = ob.load_dataset("digits")
    >>> sc = ob.Scenario.classwise(ds, forget_class=3, seed=0)
    >>> model = ob.build_model("cnn", ds, seed=0)
    >>> base = ob.train(model, sc.train, epochs=3, lr=0.05, batch_size=64, progress=False)
    >>> out = ob.unlearn(base.model, sc, "ssd")
    >>> ev = ob.evaluate(out.model, sc, metrics=["forget_acc"])
    >>> 0.0 <= ev.metrics["forget_acc"] <= 1.0
    True
"""

from . import errors, requests
from ._version import __version__
from .data import DatasetSplits, Scenario, from_arrays, from_dataset, load_dataset
from .evaluation import Evaluation, evaluate
from .methods import METHODS, UnlearningMethod, UnlearningResult, get_method, register_method, unlearn
from .metrics import METRICS
from .models import MODELS, ModelAdapter, build_model
from .training import TrainConfig, TrainResult, train
from .tuning import TuneResult, tune

__all__ = [
    "METHODS",
    "METRICS",
    "MODELS",
    "DatasetSplits",
    "Evaluation",
    "ModelAdapter",
    "Scenario",
    "TrainConfig",
    "TrainResult",
    "TuneResult",
    "UnlearningMethod",
    "UnlearningResult",
    "__version__",
    "build_model",
    "errors",
    "evaluate",
    "from_arrays",
    "from_dataset",
    "get_method",
    "load_dataset",
    "register_method",
    "requests",
    "train",
    "tune",
    "unlearn",
]
