"""Every registered method declares what ob.tune searches, and every point of its space is a valid configuration
(issue 14, item 2).
"""

from __future__ import annotations

import pytest

import obliviate as ob
from obliviate._validation import Choice, SearchSpace

NAMES = ob.METHODS.names()


@pytest.mark.parametrize("name", NAMES)
def test_method_declares_at_least_one_searchable_hyperparameter(name):
    cls = ob.METHODS.get(name)
    space = cls.search_space()
    assert space, f"{name} declares no param(..., search=...) range; ob.tune has nothing to search"
    for field, rng in space.items():
        assert isinstance(rng, SearchSpace) and field in cls.field_names()


@pytest.mark.parametrize("name", NAMES)
def test_every_point_of_the_space_passes_validation(name):
    cls = ob.METHODS.get(name)
    space = cls.search_space()
    defaults = cls().to_dict()
    for field, rng in space.items():
        points = rng.points()
        assert len(points) >= (len(rng.values) if isinstance(rng, Choice) else 2)
        for point in points:
            assert rng.contains(point), (name, field, point)
            made = cls(**{field: point})  # one field at a range point, the others at their defaults
            assert getattr(made, field) == point
    # the corners: every searched field at its low end, at its middle point, at its high end together
    for i in (0, None, -1):
        values = {f: (r.points()[len(r.points()) // 2] if i is None else r.points()[i]) for f, r in space.items()}
        cls(**values)
    assert cls().to_dict() == defaults
