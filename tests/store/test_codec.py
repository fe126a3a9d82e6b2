"""Column encodings shared by the backends (properties checked with hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integration_hub.store._codec import (
    decode_str_dict,
    decode_str_tuple,
    encode_str_dict,
    encode_str_list,
    parse_utc_iso,
    require_utc,
    utc_iso,
)

offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
aware_datetimes = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(9000, 1, 1), timezones=offsets
)


# too_slow: generation is fast, but a loaded CI machine can stall it past hypothesis's 1 s.
@settings(suppress_health_check=[HealthCheck.too_slow])
@given(aware_datetimes)
def test_sqlite_time_text_round_trips_to_the_same_instant_in_utc(moment: datetime) -> None:
    parsed = parse_utc_iso(utc_iso(moment))
    assert parsed == moment
    assert parsed.tzinfo is UTC


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(aware_datetimes, aware_datetimes)
def test_sqlite_time_text_sorts_like_the_instants(a: datetime, b: datetime) -> None:
    # ORDER BY on the TEXT column must be time order.
    assert (utc_iso(a) < utc_iso(b)) == (a < b)


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        require_utc(datetime(2025, 1, 1))


@given(st.dictionaries(st.text(), st.text()))
def test_string_maps_round_trip(value: dict[str, str]) -> None:
    assert decode_str_dict(encode_str_dict(value)) == value


@given(st.lists(st.text()))
def test_string_lists_round_trip_as_tuples(value: list[str]) -> None:
    assert decode_str_tuple(encode_str_list(value)) == tuple(value)


def test_json_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(TypeError):
        decode_str_dict("[]")
    with pytest.raises(TypeError):
        decode_str_tuple("{}")
