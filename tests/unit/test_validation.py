from dataclasses import FrozenInstanceError, dataclass

import pytest

from obliviate._validation import Boolean, Config, Interval, IntSequence, Options, param
from obliviate.errors import InvalidConfigError, UnknownNameError


@dataclass(frozen=True, kw_only=True)
class Toy(Config):
    """Toy config.

    Args:
        rate: a rate.
        steps: a count.
        mode: a mode.
        flag: a flag.
        marks: milestones.
    """

    presets = {"fast": {"steps": 2}}

    rate: float = param(0.5, Interval(float, 0.0, 1.0, closed="right"))
    steps: int = param(10, Interval(int, 1))
    mode: str = param("a", Options("a", "b", allow_none=True))
    flag: bool = param(False, Boolean())
    marks: tuple | None = param(None, IntSequence(allow_none=True))


def test_valid_values_are_coerced_to_canonical_types():
    t = Toy(rate=1, marks=[3, 5])
    assert t.rate == 1.0 and isinstance(t.rate, float)
    assert t.marks == (3, 5)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"rate": 0.0}, "a float in (0, 1]"),
        ({"rate": 1.5}, "got 1.5"),
        ({"rate": "x"}, "'rate' parameter of Toy"),
        ({"rate": True}, "got True"),
        ({"rate": float("nan")}, "got nan"),
        ({"steps": 0}, "an int in [1, inf)"),
        ({"steps": 2.0}, "an int"),
        ({"mode": "c"}, "one of 'a', 'b' or None"),
        ({"flag": 1}, "a bool"),
        ({"marks": [5, 3]}, "strictly increasing"),
        ({"marks": "1,2"}, "strictly increasing"),
    ],
)
def test_invalid_values_raise_with_a_message_naming_parameter_constraint_and_value(kwargs, fragment):
    with pytest.raises(InvalidConfigError) as info:
        Toy(**kwargs)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)


def test_every_generated_invalid_example_is_rejected():
    for name, constraint in Toy.constraints().items():
        for bad in constraint.invalid_examples():
            with pytest.raises(InvalidConfigError):
                Toy(**{name: bad})


def test_to_dict_from_dict_round_trip_and_unknown_keys():
    t = Toy(rate=0.25, marks=(1, 2))
    d = t.to_dict()
    assert d["marks"] == [1, 2]
    assert Toy.from_dict(d) == t
    with pytest.raises(InvalidConfigError, match="Did you mean 'rate'"):
        Toy.from_dict({"rte": 0.1})


def test_instances_are_frozen():
    with pytest.raises(FrozenInstanceError):
        Toy().rate = 0.1  # type: ignore[misc]


def test_presets_apply_and_unknown_presets_are_named():
    assert Toy.from_preset("fast", rate=0.1) == Toy(steps=2, rate=0.1)
    with pytest.raises(UnknownNameError, match="Did you mean 'fast'"):
        Toy.from_preset("fsat")


def _tiny():
    import numpy as np

    import obliviate as ob

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    ds = ob.from_arrays(x, np.arange(40) % 2, x[:10], np.arange(10) % 2)
    return ob, ds


@pytest.mark.parametrize("seed", [2**70, 2**63, -1])
def test_out_of_range_seeds_are_refused_on_entry_everywhere(seed):
    ob, ds = _tiny()
    from obliviate.data.scenario import parse_scenario, validation_split

    model = ob.build_model("mlp", ds)
    calls = [
        lambda: ob.build_model("mlp", ds, seed=seed),
        lambda: ob.train(model, ds.train, epochs=1, seed=seed),
        lambda: ob.get_method("finetune")().unlearn(model, parse_scenario("random:0.1", ds), seed=seed),
        lambda: ob.evaluate(model, parse_scenario("random:0.1", ds), seed=seed),
        lambda: parse_scenario("random:0.1", ds, seed=seed),
        lambda: validation_split(ds, seed=seed),
    ]
    for call in calls:
        with pytest.raises(InvalidConfigError, match="seed"):
            call()


def test_the_largest_seed_is_accepted():
    from obliviate._validation import check_seed

    assert check_seed("x", 2**63 - 1) == 2**63 - 1
    with pytest.raises(InvalidConfigError, match="seed"):
        check_seed("x", 2**63)


def test_a_model_with_too_few_outputs_is_refused_on_entry():
    import torch.nn as nn

    import obliviate as ob
    from obliviate.data.scenario import parse_scenario
    from obliviate.errors import IncompatibleModelError

    ds = ob.load_dataset("digits")
    sc = parse_scenario("random:0.1", ds)
    narrow = nn.Sequential(nn.Flatten(), nn.Linear(64, 5))
    calls = [
        lambda: ob.train(narrow, sc.train, epochs=1),
        lambda: ob.get_method("finetune")().unlearn(narrow, sc),
        lambda: ob.evaluate(narrow, sc),
    ]
    for call in calls:
        with pytest.raises(IncompatibleModelError, match=r"5 outputs.*10 classes"):
            call()


def test_pruning_refuses_an_out_of_range_seed():
    import obliviate as ob
    from obliviate.pruning import prune

    model = ob.build_model("mlp", ob.load_dataset("digits"), seed=0)
    with pytest.raises(InvalidConfigError, match=r"\[0, 2\*\*63\)"):
        prune(model, 0.5, kind="random", seed=2**70)


def test_a_model_that_cannot_take_the_datas_inputs_is_incompatible_not_a_runtime_error() -> None:
    """Issue 13 item 9: data of another dataset (13 features for a digits CNN) is bad input, not a RuntimeError."""
    import numpy as np

    import obliviate as ob
    from obliviate.data.datasets import from_arrays
    from obliviate.errors import IncompatibleModelError

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 13)).astype("float32"), np.arange(60) % 3
    other = from_arrays(x, y, x[:30], y[:30], name="thirteen_features")
    model = ob.build_model("cnn", ob.load_dataset("digits"), seed=0)
    sc = ob.Scenario.classwise(other, forget_class=1, seed=0)
    with pytest.raises(IncompatibleModelError, match=r"cannot take the inputs.*\(13,\)"):
        ob.train(model, sc.train, epochs=1)
