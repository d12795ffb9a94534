"""The sample model: DESIGN §3/§4 tables, absent is not 0, tag and type validation."""

from __future__ import annotations

import pytest

from kwatt.wire.model import (
    FIELDS,
    MEASUREMENTS,
    FieldType,
    Measurement,
    Sample,
    validate_tag_value,
)

TS = 1_700_000_000_000_000_000


def test_every_design_field_has_its_unit_in_the_name():
    for name, spec in FIELDS.items():
        suffix = {"W": "_w", "J": "_j", "degC": "_c", "Hz": "_hz", "B": "_bytes", "s": "_s"}.get(
            spec.unit
        )
        if suffix:
            assert name.endswith(suffix), name


def test_every_measurement_field_is_known():
    for spec in MEASUREMENTS.values():
        assert spec.fields <= set(FIELDS)


def test_absent_is_not_zero():
    s = Sample.accel(TS, vendor="furiosa", model="rngd", device="sn1", power_w=40.0, temp_c=None)
    assert s.field("power_w") == 40.0
    assert s.field("temp_c") is None
    assert [k for k, _ in s.fields] == ["power_w"]


def test_types_are_coerced_once_and_fixed():
    s = Sample.accel(
        TS, vendor="v", model="m", device="d", power_w=40, mem_used_bytes=1024.0, throttled=True
    )
    assert type(s.field("power_w")) is float
    assert type(s.field("mem_used_bytes")) is int
    assert s.field("throttled") == 1
    with pytest.raises(ValueError, match="integer field"):
        Sample.accel(TS, vendor="v", model="m", device="d", mem_used_bytes=1.5)
    assert FIELDS["energy_j"].type is FieldType.FLOAT


@pytest.mark.parametrize("bad", ["", "a b", "a,b", "a=b", "a\nb", 'a"b', "a\\b"])
def test_bad_tag_values_are_rejected_with_the_tag_name(bad):
    with pytest.raises(ValueError, match="'device'"):
        Sample.accel(TS, vendor="v", model="m", device=bad, power_w=1.0)
    with pytest.raises(ValueError):
        validate_tag_value("x", bad)


def test_a_collector_cannot_speak_for_a_node():
    with pytest.raises(ValueError, match="added by the agent"):
        Sample(Measurement.AGENT, TS, (("node", "other"),), (("seq", 1),))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"bogus_w": 1.0}, "unknown field 'bogus_w'"),
        ({"seq": 1}, "field 'seq' not allowed"),
        ({"power_w": float("nan")}, "finite"),
        ({"power_w": float("inf")}, "finite"),
        ({}, "at least one field"),
    ],
)
def test_bad_fields(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Sample.accel(TS, vendor="v", model="m", device="d", **kwargs)


def test_missing_required_tag_and_bad_timestamp():
    with pytest.raises(ValueError, match="missing tag"):
        Sample.build(Measurement.ACCEL, TS, {"vendor": "v", "model": "m"}, {"power_w": 1.0})
    with pytest.raises(ValueError, match="ts_ns"):
        Sample.host(0, source="rapl", energy_j=1.0)


def test_samples_are_frozen_and_hashable():
    s = Sample.host(TS, source="rapl", zone="package-0", energy_j=12.5)
    with pytest.raises(AttributeError):
        s.ts_ns = 1  # type: ignore[misc]
    assert hash(s) == hash(Sample.host(TS, source="rapl", zone="package-0", energy_j=12.5))
