"""Every optional dependency fails the same way: MissingDependencyError naming the extra."""

from __future__ import annotations

import sys

import pytest

from obliviate import build_model
from obliviate._utils import require
from obliviate.errors import MissingDependencyError, UnlearningError


def test_require_returns_the_module_when_installed() -> None:
    assert require("math", "core", "a test").sqrt(4.0) == 2.0


@pytest.mark.parametrize(
    ("blocked", "call", "extra"),
    [
        ("timm", lambda: build_model("vit_tiny", input_shape=(1, 8, 8), num_classes=3), "vit"),
        ("transformers", lambda: __import__("obliviate.models.text", fromlist=["_transformers"])._transformers(), "text"),
        (
            "opacus",
            lambda: __import__("obliviate.certified.features", fromlist=["dp_epsilon"]).dp_epsilon(
                noise_multiplier=1.0, sample_rate=0.1, steps=10, delta=1e-5
            ),
            "dp",
        ),
        ("peft", lambda: __import__("obliviate.methods.lora", fromlist=["_peft"])._peft(), "lora"),
        ("ray", lambda: __import__("obliviate.bench.grid", fromlist=["_ray"])._ray(), "ray"),
    ],
)
def test_a_missing_extra_raises_missing_dependency_error_naming_it(monkeypatch, blocked, call, extra) -> None:
    monkeypatch.setitem(sys.modules, blocked, None)  # `import blocked` now raises ImportError
    with pytest.raises(MissingDependencyError, match=rf"pip install obliviate\[{extra}\]") as info:
        call()
    assert isinstance(info.value, UnlearningError) and info.value.exit_code == 2
