"""Events: validation, immutability and JSON round trips."""

import dataclasses
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from privfl.accounting.events import (
    ComposedEvent,
    FixedSizeSampledEvent,
    GaussianEvent,
    PoissonSampledEvent,
    event_from_dict,
)
from privfl.errors import ConfigError

gaussians = st.builds(GaussianEvent, st.floats(min_value=1e-3, max_value=1e4))
events = st.recursive(
    gaussians,
    lambda inner: st.one_of(
        st.builds(PoissonSampledEvent, st.floats(min_value=1e-9, max_value=1.0), inner),
        st.builds(ComposedEvent, inner, st.integers(min_value=1, max_value=10**6)),
        st.builds(FixedSizeSampledEvent, st.just(10), st.integers(min_value=10, max_value=10**6), inner),
    ),
    max_leaves=4,
)


@given(events)
def test_json_round_trip(event):
    data = json.loads(json.dumps(event.to_dict()))
    assert event_from_dict(data) == event
    assert hash(event_from_dict(data)) == hash(event)


def test_events_are_frozen_and_normalised():
    event = GaussianEvent(2)
    assert isinstance(event.noise_multiplier, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.noise_multiplier = 3.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: GaussianEvent(0.0), "got 0.0"),
        (lambda: GaussianEvent(-1), "got -1"),
        (lambda: GaussianEvent(float("inf")), "got inf"),
        (lambda: GaussianEvent(True), "got True"),
        (lambda: GaussianEvent("1.0"), "got '1.0'"),
        (lambda: PoissonSampledEvent(0.0, GaussianEvent(1.0)), r"\(0, 1\], got 0.0"),
        (lambda: PoissonSampledEvent(1.01, GaussianEvent(1.0)), "got 1.01"),
        (lambda: PoissonSampledEvent(0.5, 1.0), "must be a DpEvent"),
        (lambda: ComposedEvent(GaussianEvent(1.0), 0), "got 0"),
        (lambda: ComposedEvent(GaussianEvent(1.0), 2.0), "integer >= 1, got 2.0"),
        (lambda: FixedSizeSampledEvent(11, 10, GaussianEvent(1.0)), "11 of 10"),
    ],
)
def test_invalid_events_name_the_value(build, message):
    with pytest.raises(ConfigError, match=message):
        build()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "must be a dict"),
        ({"kind": "laplace", "scale": 1.0}, "unknown event kind 'laplace'"),
        ({"noise_multiplier": 1.0}, "unknown event kind None"),
        ({"kind": "gaussian"}, "needs fields"),
        ({"kind": "gaussian", "noise_multiplier": 1.0, "extra": 1}, "needs fields"),
        ({"kind": "gaussian", "noise_multiplier": -1.0}, "got -1.0"),
        ({"kind": "poisson_sampled", "sampling_rate": 0.1, "event": "gaussian"}, "must be a dict"),
        ({"kind": "composed", "event": {"kind": "gaussian", "noise_multiplier": 1.0}, "count": "3"}, "integer"),
    ],
)
def test_event_from_dict_rejects_bad_data(data, message):
    with pytest.raises(ConfigError, match=message):
        event_from_dict(data)
