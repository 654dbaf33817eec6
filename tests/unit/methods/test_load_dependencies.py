"""``UnlearningMethod.load_dependencies``: a declared hook that ``unlearn`` always calls (issue 12, item 6)."""

from __future__ import annotations

import pytest

import obliviate as ob
import obliviate.methods.lora as lora_module
from obliviate.testing import toy_model, toy_scenario


class Called(Exception):
    """Raised by the probes below, so ``unlearn`` stops before any training."""


def test_unlearn_calls_the_declared_hook_before_running():
    retrain = ob.METHODS.get("retrain")

    class Probe(retrain):
        def load_dependencies(self) -> None:
            raise Called

    with pytest.raises(Called):
        Probe().unlearn(toy_model(), toy_scenario())


def test_the_former_private_hook_still_works_with_a_deprecation_warning():
    retrain = ob.METHODS.get("retrain")

    class Legacy(retrain):
        def _load_dependencies(self) -> None:
            raise Called

    with pytest.warns(DeprecationWarning, match="_load_dependencies"), pytest.raises(Called):
        Legacy().unlearn(toy_model(), toy_scenario())


@pytest.mark.parametrize("name", ["finetune", "l1_sparse", "random_label", "prune_lora"])
def test_lora_methods_import_peft_through_the_hook_only_when_they_train_adapters(name, monkeypatch):
    def fake_peft():
        raise Called

    monkeypatch.setattr(lora_module, "_peft", fake_peft)
    cls = ob.METHODS.get(name)
    with_lora = cls.from_dict({"use_lora": True}) if "use_lora" in cls.field_names() else cls()
    with pytest.raises(Called):
        with_lora.load_dependencies()
    with pytest.raises(Called):  # the former name reaches the same hook (demo, older callers)
        with_lora._load_dependencies()
    if "use_lora" in cls.field_names():
        cls.from_dict({"use_lora": False}).load_dependencies()  # no adapters: peft is not needed


def test_the_base_hook_is_a_no_op():
    assert ob.METHODS.get("ssd")().load_dependencies() is None
