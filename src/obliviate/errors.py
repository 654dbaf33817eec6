"""Every exception and warning raised by obliviate, in one hierarchy.

Each exception also inherits the built-in error a caller would naturally catch
(``InvalidConfigError`` is a ``ValueError`` and a ``TypeError``, as scikit-learn's
``InvalidParameterError`` is), so ``except ValueError`` keeps working.

``exit_code`` is what the command-line interface exits with: 2 for bad input of any kind
(an unknown name, a wrong value, missing data, an incompatible checkpoint), 1 for a run that
failed on good input (a diverging method).
"""

from __future__ import annotations

__all__ = [
    "UnlearningError",
    "InvalidConfigError",
    "UnknownNameError",
    "MissingDataError",
    "DatasetNotFoundError",
    "IncompatibleModelError",
    "TrainingSetMismatchError",
    "MissingDependencyError",
    "DivergenceError",
    "BudgetExhaustedError",
    "LedgerError",
    "DuplicateRequestError",
    "UnknownSampleError",
    "UnlearningWarning",
    "DivergenceWarning",
    "ReproducibilityWarning",
    "ConvergenceWarning",
    "UncheckedTrainingSetWarning",
]


class UnlearningError(Exception):
    """Base class of every error obliviate raises on purpose."""

    exit_code: int = 2


class InvalidConfigError(UnlearningError, ValueError, TypeError):
    """A parameter has the wrong type or lies outside its allowed range."""


class UnknownNameError(UnlearningError, KeyError):
    """A registry lookup failed (dataset, model, method, metric, preset ...).

    The message lists the valid names and suggests the closest ones.
    """

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class MissingDataError(UnlearningError, ValueError):
    """A method or metric needs a data split that is absent or empty."""


class DatasetNotFoundError(MissingDataError, FileNotFoundError):
    """A dataset's files are not under the given root and downloading was not asked for."""


class IncompatibleModelError(UnlearningError, ValueError):
    """A model or checkpoint does not fit what it is used with.

    Examples: a checkpoint that is not a safetensors file, a state dict whose keys or shapes
    differ from the model, an architecture that cannot take the dataset's input size.
    """


class TrainingSetMismatchError(InvalidConfigError):
    """A scenario does not split the data the model was trained on.

    Raised by ``unlearn`` and ``evaluate`` when the model's training set is known (a
    ``TrainResult``, an ``UnlearningResult`` or a run directory) and differs from what the
    scenario says it was: its "retain" rows would hold samples the model never saw, or its
    held-out validation rows samples it did.
    """


class MissingDependencyError(UnlearningError, ImportError):
    """An optional dependency is not installed; the message names the extra to install
    (e.g. ``pip install obliviate[vit]``).
    """


class DivergenceError(UnlearningError, ArithmeticError):
    """A loss or the weights became NaN or infinite; the run stopped instead of returning garbage."""

    exit_code = 1


class BudgetExhaustedError(UnlearningError, RuntimeError):
    """A certified removal would spend more than the removal budget and retraining is off.

    Raised by :meth:`obliviate.certified.CertifiedLogisticRegression.remove` with
    ``auto_retrain=False``; the model is left unchanged. The request itself was valid, so the CLI
    exits 1 (not 2): retrain (``auto_retrain=True``) or raise the budget (larger ``sigma`` or
    ``epsilon``).
    """

    exit_code = 1


class LedgerError(UnlearningError):
    """The deletion ledger cannot be used as asked: a request is pending, the ledger and the saved
    model disagree beyond what the recovery rule can repair, or the file is not an obliviate ledger.

    Exit code 1 (a failure of stored state, not of the command's arguments); its subclasses
    :class:`DuplicateRequestError` and :class:`UnknownSampleError` are bad input and exit 2.
    """

    exit_code = 1


class DuplicateRequestError(LedgerError, ValueError):
    """A deletion request repeats a sample id, names one already removed, or reuses a request id."""

    exit_code = 2


class UnknownSampleError(LedgerError, KeyError):
    """A deletion request names a sample id that is not in the training set."""

    exit_code = 2

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class UnlearningWarning(UserWarning):
    """Base class of obliviate's warnings."""


class DivergenceWarning(UnlearningWarning):
    """Training became numerically unstable but could go on (for example a clipped step)."""


class ReproducibilityWarning(UnlearningWarning):
    """A result may not be bit-for-bit reproducible (non-deterministic kernels, no seed)."""


class ConvergenceWarning(UnlearningWarning):
    """An optimiser stopped before reaching its tolerance (the result is still returned and,
    for certified removal, the leftover gradient norm is charged to the certificate).
    """


class UncheckedTrainingSetWarning(UnlearningWarning):
    """A bare ``nn.Module`` was given, so whether the scenario splits its training set could not be
    checked (pass the ``TrainResult``, ``UnlearningResult`` or run directory instead).
    """
