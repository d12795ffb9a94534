"""Every vendor-unit conversion of wire/units.py, with the vendor's own spellings."""

from __future__ import annotations

import math

import pytest

from kwatt.wire import units


@pytest.mark.parametrize(
    ("fn", "raw", "si"),
    [
        (units.mw_to_w, 300000, 300.0),  # RNGD power_limit_mw default
        (units.uw_to_w, 38_400_000, 38.4),  # hwmon power1_average
        (units.mj_to_j, 123_456, 123.456),  # NVML total energy
        (units.uj_to_j, 262_143_328_850, 262_143.32885),  # RAPL max_energy_range_uj
        (units.mhz_to_hz, 2000, 2e9),
        (units.millic_to_c, 41330, 41.33),
        (units.c_to_c, 41, 41.0),
        (units.pct_to_ratio, 87.5, 0.875),
        (units.ns_to_s, 1_500_000, 0.0015),
        (units.us_to_s, 250, 0.00025),
        (units.ms_to_s, 12, 0.012),
    ],
)
def test_named_conversions(fn, raw, si):
    assert math.isclose(fn(raw), si, rel_tol=1e-12)


def test_byte_conversions_are_exact_ints():
    assert units.mib_to_bytes(20475) == 20475 * 1024 * 1024
    assert units.kib_to_bytes(3) == 3072
    assert isinstance(units.mib_to_bytes(1.5), int)


@pytest.mark.parametrize(
    ("text", "expect", "value"),
    [
        ("38.40 W", "W", 38.4),  # furiosa-smi power
        ("41.33°C", "degC", 41.33),  # furiosa-smi temperature
        ("2000 MHz", "Hz", 2e9),  # furiosa-smi core_clock
        ("20475 MiB", "B", 20475 * 1024**2),  # nvidia-smi memory
        ("80 %", "1", 0.8),
        ("67.03 W", "W", 67.03),
        ("1500 mW", "W", 1.5),
        ("12", "W", 12.0),  # bare number: already in the expected unit
        ("  7.5e2 mJ ", "J", 0.75),
    ],
)
def test_parse_quantity(text, expect, value):
    got = units.parse_quantity(text, expect)
    assert got is not None and math.isclose(got, value, rel_tol=1e-12)


@pytest.mark.parametrize("text", ["N/A", "[N/A]", "[Not Supported]", "-", "", "  n/a "])
def test_parse_quantity_not_available_is_absent(text):
    assert units.parse_quantity(text, "W") is None


@pytest.mark.parametrize(
    ("text", "expect"),
    [("38.40 W", "degC"), ("hot", "degC"), ("12 parsecs", "W"), ("inf W", "W"), ("nan", "W")],
)
def test_parse_quantity_rejects_with_the_text_in_the_message(text, expect):
    with pytest.raises(units.QuantityError) as e:
        units.parse_quantity(text, expect)
    assert repr(text.strip())[1:-1] in str(e.value) or text in str(e.value)
