"""kwatt.wire.documents: the retained status and inventory documents (DESIGN §4): the exact bytes
the agent publishes, round trips, and errors that name the field."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kwatt.wire.documents import (
    CAUSES,
    DocumentError,
    Status,
    decode_inventory,
    decode_status,
    encode_inventory,
    encode_status,
)
from kwatt.wire.model import DeviceInfo

SINCE = 1_760_000_000_123_456_789


def test_status_bytes_are_the_wire_of_design_section_4() -> None:
    assert encode_status(Status("online", "0.1.0", SINCE)) == (
        b'{"state":"online","agent":"0.1.0","since":1760000000123456789}'
    )
    assert encode_status(Status("offline", "0.1.0", SINCE, "lost")) == (
        b'{"state":"offline","agent":"0.1.0","since":1760000000123456789,"cause":"lost"}'
    )
    # what the agent wrote before the codec: json.dumps of the dict, compact
    for cause in (None, *CAUSES):
        doc: dict[str, object] = {"state": "offline", "agent": "1.2.3", "since": SINCE}
        if cause is not None:
            doc["cause"] = cause
        assert (
            encode_status(Status("offline", "1.2.3", SINCE, cause))
            == json.dumps(doc, separators=(",", ":")).encode()
        )


def test_inventory_bytes_list_every_key_with_null_for_absent() -> None:
    devices = [
        DeviceInfo("furiosa", "rngd", "npu0", "rngd", "2.0", None, "0000:6d:00.0"),
        DeviceInfo("nvidia", "h100", "GPU-ü", "nvml"),
    ]
    want = json.dumps([dataclasses.asdict(d) for d in devices], separators=(",", ":")).encode()
    assert encode_inventory(devices) == want
    assert encode_inventory(devices).startswith(
        b'[{"vendor":"furiosa","model":"rngd","id":"npu0","collector":"rngd",'
        b'"driver_version":"2.0","firmware_version":null,"bus_id":"0000:6d:00.0"}'
    )
    assert b"\\u00fc" in want  # ASCII with escapes, as json.dumps writes it
    assert encode_inventory([]) == b"[]"


def test_a_status_without_agent_or_since_decodes_with_none() -> None:
    assert decode_status(b'{"state":"offline"}') == Status("offline")
    assert decode_status(b'{"state":"online","agent":"0.1.0","extra":[1]}') == Status(
        "online", "0.1.0"
    )


texts = st.text(max_size=20)
statuses = st.one_of(
    st.builds(
        Status,
        st.just("online"),
        st.none() | texts,
        st.none() | st.integers(0, 2**63 - 1),
    ),
    st.builds(
        Status,
        st.just("offline"),
        st.none() | texts,
        st.none() | st.integers(0, 2**63 - 1),
        st.none() | st.sampled_from(CAUSES),
    ),
)
devices = st.builds(
    DeviceInfo,
    texts,
    texts,
    texts,
    texts,
    st.none() | texts,
    st.none() | texts,
    st.none() | texts,
)


@given(statuses)
def test_status_round_trip(status: Status) -> None:
    assert decode_status(encode_status(status)) == status


@given(st.lists(devices, max_size=5))
def test_inventory_round_trip(inventory: list[DeviceInfo]) -> None:
    assert decode_inventory(encode_inventory(inventory)) == tuple(inventory)


@given(st.binary(max_size=64))
def test_any_bytes_decode_or_raise_document_error(payload: bytes) -> None:
    for decode in (decode_status, decode_inventory):
        with contextlib.suppress(DocumentError):
            decode(payload)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"{bad json", "status: not a JSON document"),
        (b"\xff", "status: not a JSON document"),
        (b"[" * 100_000, "status: not a JSON document"),
        (b'["online"]', "status: expected a JSON object, got list"),
        (b'{"agent":"0.1.0"}', "status.state: missing"),
        (b'{"state":"up"}', "status.state: expected one of online, offline, got 'up'"),
        (b'{"state":"online","agent":7}', "status.agent: expected a string or null, got int 7"),
        (b'{"state":"online","since":"x"}', "status.since: expected an integer"),
        (b'{"state":"online","since":1.5}', "status.since: expected an integer"),
        (b'{"state":"online","since":true}', "status.since: expected an integer"),
        (b'{"state":"online","since":-1}', "status.since: -1 ns is outside 0..2^63-1"),
        (b'{"state":"offline","cause":"gone"}', "status.cause: expected one of lost, stopped"),
        (b'{"state":"online","cause":"lost"}', "status.cause: only an offline status has one"),
    ],
)
def test_bad_status_names_the_field(payload: bytes, message: str) -> None:
    with pytest.raises(DocumentError, match="^" + re.escape(message)):
        decode_status(payload)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "inventory: not a JSON document"),
        (b'{"vendor":"x"}', "inventory: expected a JSON list, got dict"),
        (b"[1]", "inventory[0]: expected a JSON object, got int"),
        (
            b'[{"vendor":"a","model":"b","id":"c","collector":"d"},{"vendor":"a"}]',
            "inventory[1].model: missing",
        ),
        (
            b'[{"vendor":null,"model":"b","id":"c","collector":"d"}]',
            "inventory[0].vendor: expected a string, got null",
        ),
        (
            b'[{"vendor":"a","model":"b","id":"c","collector":"d","bus_id":3}]',
            "inventory[0].bus_id: expected a string or null, got int 3",
        ),
    ],
)
def test_bad_inventory_names_the_entry_and_field(payload: bytes, message: str) -> None:
    with pytest.raises(DocumentError, match="^" + re.escape(message)):
        decode_inventory(payload)


def test_optional_inventory_keys_may_be_absent() -> None:
    assert decode_inventory(b'[{"vendor":"a","model":"b","id":"c","collector":"d"}]') == (
        DeviceInfo("a", "b", "c", "d"),
    )


def test_a_status_cannot_be_built_inconsistent() -> None:
    with pytest.raises(DocumentError, match="only an offline status"):
        Status("online", cause="lost")
    assert isinstance(DocumentError("x"), ValueError)
