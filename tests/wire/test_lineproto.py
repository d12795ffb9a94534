"""Line protocol codec (DESIGN §4/§5): encode agrees with influxdb_client's Point byte for byte,
encode → parse round-trips every valid sample, and the strict parser names what is wrong."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from influxdb_client.client.write.point import Point as InfluxPoint
from influxdb_client.domain.write_precision import WritePrecision

from kwatt.wire import lineproto
from kwatt.wire.lineproto import (
    MAX_LINE_COPY,
    MIN_TS_NS,
    LineError,
    LineProtocolError,
    Point,
    encode,
    format_float,
    parse_line,
    parse_payload,
    scan_payload,
)
from kwatt.wire.model import (
    BOUNDS,
    FIELDS,
    MEASUREMENTS,
    NODE_TAGS,
    FieldType,
    Measurement,
    Sample,
    validate_tag_value,
)

TS = 1_700_000_000_000_000_000
NOW = 1_763_700_000_000_000_000
HEAD = "accel,device=d1,model=rngd,node=n1,site=s1,vendor=furiosa"
GOOD = f"{HEAD} power_w=40.5 {TS}"
# heads whose device tag is written with an escape (or a lone backslash)
ESC_SPACE, ESC_COMMA, ESC_EQ, BACKSLASH = (
    HEAD.replace("d1", d) for d in ("d\\ 1", "d\\,1", "d\\=1", "d\\1")
)

CI = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------------------------ strategies


def _is_tag_value(value: str) -> bool:
    try:
        validate_tag_value("t", value)
    except ValueError:
        return False
    return True


# Printable characters outside the separators line protocol would need escaped (DESIGN §4).
_tag_chars = st.characters(
    categories=("L", "M", "N", "P", "S"), exclude_characters=',="\\', codec="utf-8"
)
tag_values = st.one_of(
    st.from_regex(r"[a-z0-9][a-z0-9._:-]{0,23}", fullmatch=True),
    st.text(_tag_chars, min_size=1, max_size=24),
    st.text(st.sampled_from("ab:-"), min_size=250, max_size=256),  # up to the 256-character limit
).filter(_is_tag_value)

finite_floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**60), 2**60).map(float),  # whole values: Point writes them without ".0"
    st.sampled_from(
        [
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.1,
            1e-7,
            1e15,
            1e16,
            1e22,
            123456789012345678.0,
            5e-324,
            2.2250738585072014e-308,
            1.7976931348623157e308,
            -1.7976931348623157e308,
        ]
    ),
)
int64s = st.integers(-(2**63), 2**63 - 1)
timestamps = st.one_of(st.integers(MIN_TS_NS, 2**63 - 1), st.integers(TS - 10**15, TS + 10**15))


def field_values(measurement: str, name: str) -> st.SearchStrategy[float] | st.SearchStrategy[int]:
    """Any value the wire accepts for the field: finite, typed, within its plausible range."""
    b = BOUNDS.get(measurement, {}).get(name)
    is_float = FIELDS[name].type is FieldType.FLOAT
    if b is None:
        return finite_floats if is_float else int64s
    hi = None if math.isinf(b.hi) else b.hi
    if is_float:
        edges = [x for x in (b.lo, hi, 0.0, 1.0) if x is not None and b.lo <= x <= b.hi]
        ranged = st.floats(b.lo, hi, allow_nan=False, allow_infinity=False)
        return st.one_of(ranged, st.sampled_from(edges))
    return st.integers(int(b.lo), 2**63 - 1 if hi is None else int(hi))


@st.composite
def samples(draw: st.DrawFn, measurement: Measurement | None = None) -> Sample:
    """Any valid sample of any measurement: required tags, some optional ones, >= 1 field."""
    m = draw(st.sampled_from(list(Measurement))) if measurement is None else measurement
    spec = MEASUREMENTS[m]
    tags = {k: draw(tag_values) for k in sorted(spec.required_tags - NODE_TAGS)}
    for k in sorted(spec.optional_tags - NODE_TAGS):
        if draw(st.booleans()):
            tags[k] = draw(tag_values)
    names = draw(st.lists(st.sampled_from(sorted(spec.fields)), min_size=1, unique=True))
    fields = {n: draw(field_values(m.value, n)) for n in names}
    if fields.get("mem_used_bytes", 0) > fields.get("mem_total_bytes", 2**63):
        fields["mem_used_bytes"], fields["mem_total_bytes"] = (
            fields["mem_total_bytes"],
            fields["mem_used_bytes"],
        )
    return Sample(m, draw(timestamps), tuple(sorted(tags.items())), tuple(sorted(fields.items())))


batches = st.lists(samples(), min_size=1, max_size=12)


def influx_point_payload(batch: list[Sample], site: str, node: str) -> bytes:
    """The oracle: influxdb_client's own serializer on the same data."""
    lines = []
    for s in batch:
        p = InfluxPoint(s.measurement.value).tag("site", site).tag("node", node)
        for k, v in s.tags:
            p.tag(k, v)
        for k, v in s.fields:
            p.field(k, v)
        lines.append(p.time(s.ts_ns, WritePrecision.NS).to_line_protocol())
    return ("\n".join(lines) + "\n").encode()


def exact(fields: tuple[tuple[str, float | int], ...]) -> list[tuple[str, str, str]]:
    """Fields compared bit-exactly (-0.0 is not 0.0 here) and by type."""
    return [(k, type(v).__name__, repr(v)) for k, v in fields]


# ------------------------------------------------------------------------------------- encoding


@CI
@given(batch=batches, site=tag_values, node=tag_values)
def test_encode_is_byte_identical_to_influxdb_client_point(batch, site, node):
    assert encode(batch, site=site, node=node) == influx_point_payload(batch, site, node)


@CI
@given(batch=batches, site=tag_values, node=tag_values)
def test_encode_then_parse_round_trips(batch, site, node):
    payload = encode(batch, site=site, node=node)
    result = parse_payload(payload, max_bytes=len(payload))
    assert result.errors == []
    assert len(result.points) == len(batch)
    for s, p in zip(batch, result.points, strict=True):
        assert p.measurement == s.measurement.value
        assert p.tags == tuple(sorted((*s.tags, ("site", site), ("node", node))))
        assert exact(p.fields) == exact(s.fields)
        assert p.ts_ns == s.ts_ns


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (-0.0, "-0"),
        (0.1, "0.1"),
        (40.0, "40"),
        (1e15, "1000000000000000"),
        (1e16, "1e+16"),
        (1e-7, "1e-07"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
    ],
)
def test_floats_are_formatted_as_point_formats_them(value, text):
    assert format_float(value) == text
    point_line = InfluxPoint("m").field("f", value).to_line_protocol()
    assert point_line == f"m f={text}"


def test_encode_layout_sorted_tags_int_suffix_trailing_newline():
    s = Sample.accel(
        TS,
        vendor="furiosa",
        model="rngd",
        device="sn1",
        power_w=40,
        temp_c=41.33,
        mem_used_bytes=1024,
        throttled=False,
    )
    a = Sample.agent(TS + 1, seq=7)
    assert encode([s, a], site="seoul", node="n1") == (
        b"accel,device=sn1,model=rngd,node=n1,site=seoul,vendor=furiosa "
        b"mem_used_bytes=1024i,power_w=40,temp_c=41.33,throttled=0i 1700000000000000000\n"
        b"agent,node=n1,site=seoul seq=7i 1700000000000000001\n"
    )
    assert encode([], site="seoul", node="n1") == b""


def test_encode_cached_prefixes_follow_site_and_node():
    s = Sample.host(TS, source="rapl", zone="package-0", energy_j=1.5)
    assert encode([s], site="a", node="x").startswith(b"host,node=x,site=a,source=rapl,zone=")
    assert encode([s], site="b", node="y").startswith(b"host,node=y,site=b,source=rapl,zone=")
    assert encode([s], site="a", node="x").startswith(b"host,node=x,site=a,")


def test_encode_writes_non_ascii_tags_as_utf8():
    s = Sample.accel(TS, vendor="리벨리온", model="ATOM", device="µ-1", power_w=1.5)
    out = encode([s], site="서울", node="n1")
    assert out == influx_point_payload([s], "서울", "n1")
    assert parse_payload(out).points[0].tags[-1] == ("vendor", "리벨리온")


@pytest.mark.parametrize(
    ("site", "node", "bad"),
    [("a b", "n", "'site'"), ("s", "", "'node'"), ("s", "n,1", "'node'"), ("s=1", "n", "'site'")],
)
def test_encode_validates_site_and_node(site, node, bad):
    s = Sample.agent(TS, seq=1)
    with pytest.raises(ValueError, match=bad):
        encode([s], site=site, node=node)


# ------------------------------------------------------------------------------------- decoding


def reasons(payload, **kw):
    return [e.reason for e in parse_payload(payload, **kw).errors]


def test_a_good_line_parses_to_a_canonical_point():
    p = parse_line(
        f"accel,vendor=furiosa,site=s1,node=n1,model=rngd,device=d1 temp_c=1,power_w=2 {TS}"
    )
    assert p == Point(
        "accel",
        (
            ("device", "d1"),
            ("model", "rngd"),
            ("node", "n1"),
            ("site", "s1"),
            ("vendor", "furiosa"),
        ),
        (("power_w", 2.0), ("temp_c", 1.0)),
        TS,
    )
    assert type(p.fields[0][1]) is float  # "2" is a float in line protocol


@pytest.mark.parametrize(
    ("line", "key", "message"),
    [
        # types
        (
            f"{HEAD} power_w=40i {TS}",
            "power_w",
            "field 'power_w': expected a float literal (no 'i'",
        ),
        (
            f"{HEAD} power_w=40u {TS}",
            "power_w",
            "field 'power_w': expected a float literal (no 'u'",
        ),
        (
            f"{HEAD} mem_used_bytes=1.5 {TS}",
            "mem_used_bytes",
            "field 'mem_used_bytes': expected an integer with the 'i' suffix",
        ),
        (
            f"{HEAD} mem_used_bytes=1024 {TS}",
            "mem_used_bytes",
            "field 'mem_used_bytes': expected an integer with the 'i' suffix",
        ),
        (f"{HEAD} mem_used_bytes=5u {TS}", "mem_used_bytes", "expected a signed integer"),
        (f"{HEAD} mem_used_bytes=9223372036854775808i {TS}", "mem_used_bytes", "outside int64"),
        (f"{HEAD} throttled=true {TS}", "throttled", "field 'throttled': boolean 'true'"),
        (f"{HEAD} power_w=T {TS}", "power_w", "field 'power_w': boolean 'T'"),
        (f"{HEAD} power_w=1_0 {TS}", "power_w", "expected a float literal like 1.5, got '1_0'"),
        (f"{HEAD} power_w=٣ {TS}", "power_w", "expected a float literal"),
        (f"{HEAD} power_w=0x10 {TS}", "power_w", "expected a float literal"),
        # NaN and infinity, spelled any way, and overflow
        (
            f"{HEAD} power_w=NaN {TS}",
            "power_w",
            "field 'power_w': expected a finite float, got 'NaN'",
        ),
        (f"{HEAD} power_w=inf {TS}", "power_w", "expected a finite float"),
        (f"{HEAD} power_w=-Infinity {TS}", "power_w", "expected a finite float"),
        (f"{HEAD} power_w=+inf {TS}", "power_w", "expected a finite float"),
        (f"{HEAD} power_w=1e999 {TS}", "power_w", "'1e999' overflows a float"),
        (f"{HEAD} mem_used_bytes=nan {TS}", "mem_used_bytes", "expected an integer"),
        # string fields: parsed (escapes included), then refused
        (
            f'{HEAD} power_w="40.5" {TS}',
            "power_w",
            "field 'power_w': string value '40.5'; kwatt has no",
        ),
        (f'{HEAD} power_w="a \\"q\\" b",temp_c=1 {TS}', "power_w", "string value 'a \"q\" b'"),
        (f'{HEAD} power_w="unterminated {TS}', "power_w", "unterminated string value"),
        # unknown names and missing tags
        (
            f"gpu,device=d1,node=n1,site=s1 power_w=1 {TS}",
            None,
            "unknown measurement 'gpu'; expected one of accel",
        ),
        (f"{HEAD},rack=r1 power_w=1 {TS}", "rack", "unknown tag 'rack' for measurement 'accel'"),
        (f"{HEAD} watts=1 {TS}", "watts", "unknown field 'watts' for measurement 'accel'"),
        (f"{HEAD} tokens_total=1i,seq=1i {TS}", "seq", "unknown field 'seq'"),
        (
            f"accel,model=rngd,node=n1,site=s1,vendor=furiosa power_w=1 {TS}",
            "device",
            "measurement 'accel': missing required tag(s) 'device'",
        ),
        (f"host,node=n1,site=s1 power_w=1 {TS}", "source", "missing required tag(s) 'source'"),
        (f"agent seq=1i {TS}", "node", "missing required tag(s) 'node', 'site'"),
        (f"{HEAD},device=d2 power_w=1 {TS}", "device", "tag 'device' given twice"),
        (f"{HEAD} power_w=1,power_w=2 {TS}", "power_w", "field 'power_w' given twice"),
        # escapes are understood, and the result is then refused by validation
        (f"{ESC_SPACE} power_w=1 {TS}", "device", "tag 'device': value 'd 1' contains"),
        (f"{ESC_COMMA} power_w=1 {TS}", "device", "tag 'device': value 'd,1' contains"),
        (f"{ESC_EQ} power_w=1 {TS}", "device", "tag 'device': value 'd=1' contains"),
        (f"{HEAD},ra\\ ck=1 power_w=1 {TS}", "ra ck", "unknown tag 'ra ck'"),
        (f"{HEAD} pow\\=er=1 {TS}", "pow=er", "unknown field 'pow=er'"),
        (f"acc\\ el,device=d1 power_w=1 {TS}", None, "unknown measurement 'acc el'"),
        (f"{BACKSLASH} power_w=1 {TS}", "device", "'d\\\\1' contains"),
        # syntax
        (f"{HEAD},device power_w=1 {TS}", "device", "tag 'device': no '=<value>'"),
        (f"{HEAD},device= power_w=1 {TS}", "device", "tag 'device': empty value"),
        (f"{HEAD},x=a=b power_w=1 {TS}", "x", "unescaped '=' in the value"),
        (f"{HEAD},=x power_w=1 {TS}", None, "empty tag key"),
        (f"{HEAD} power_w {TS}", "power_w", "field 'power_w': no '=<value>'"),
        (f"{HEAD} power_w= {TS}", "power_w", "field 'power_w': empty value"),
        (f"{HEAD} =1 {TS}", None, "empty field key"),
        (HEAD, None, "no fields"),
        (f" {GOOD}", None, "line starts with whitespace"),
        (f"{HEAD}  power_w=1 {TS}", None, "more than one space before the fields"),
        (f"{HEAD} power_w=1  {TS}", None, "more than one space before the timestamp"),
        (f"{GOOD} ", None, "trailing whitespace"),
        (f"{GOOD}\r", None, "carriage return"),
        (f"{GOOD} 5", None, "unexpected text after the timestamp"),
        (f"# a comment {GOOD}", None, "comment lines are not allowed"),
        (f"#{GOOD}", None, "comment lines are not allowed"),
        # timestamps
        (f"{HEAD} power_w=1", None, "no timestamp; expected an integer number of ns"),
        (f"{HEAD} power_w=1 1700000000", None, "timestamp 1700000000 is before 2000-01-01"),
        (f"{HEAD} power_w=1 1700000000000", None, "before 2000-01-01"),
        (f"{HEAD} power_w=1 -5", None, "before 2000-01-01"),
        (f"{HEAD} power_w=1 1.7e18", None, "timestamp '1.7e18' is not an integer"),
        (f"{HEAD} power_w=1 ١٧٠٠٠٠٠٠٠٠٠٠٠٠٠٠٠٠٠٠", None, "is not an integer"),
        (f"{HEAD} power_w=1 9223372036854775808", None, "outside int64"),
        (f"{HEAD} power_w=1 {'9' * 5000}", None, "outside int64"),
        (f"{HEAD} mem_used_bytes={'9' * 5000}i {TS}", "mem_used_bytes", "outside int64"),
    ],
)
def test_bad_lines_are_rejected_precisely(line, key, message):
    with pytest.raises(LineProtocolError) as e:
        parse_line(line)
    assert message in str(e.value)
    assert e.value.key == key
    # the same line inside a payload: one error, naming line 2, the good lines around it kept
    result = parse_payload(f"{GOOD}\n{line}\n{GOOD}\n".encode())
    assert [p.ts_ns for p in result.points] == [TS, TS]
    assert [(err.line, err.reason) for err in result.errors] == [(2, str(e.value))]
    copy = line if len(line) <= MAX_LINE_COPY else line[: MAX_LINE_COPY - 1] + "…"
    assert result.errors[0].text == copy


def test_timestamps_from_the_future_are_rejected_only_against_a_clock():
    ahead = NOW + 2 * 86_400 * 10**9
    line = f"{GOOD[: -len(str(TS))]}{ahead}"
    assert parse_line(line).ts_ns == ahead
    with pytest.raises(LineProtocolError, match=r"timestamp \d+ is in the future"):
        parse_line(line, now_ns=NOW)
    assert parse_line(line, now_ns=NOW, max_skew_s=3 * 86_400).ts_ns == ahead
    assert parse_line(f"{GOOD[: -len(str(TS))]}{NOW + 10**9}", now_ns=NOW).ts_ns == NOW + 10**9
    assert reasons(f"{line}\n".encode(), now_ns=NOW) == [
        f"timestamp {ahead} is in the future (> {NOW + 86_400 * 10**9} ns allowed)"
    ]


def test_parse_line_refuses_newlines():
    with pytest.raises(LineProtocolError, match="may not contain"):
        parse_line(f"{GOOD}\n")


def test_partly_bad_payload_keeps_good_lines_and_reports_each_bad_one():
    lines = [GOOD, f"{HEAD} power_w=nan {TS}", GOOD.replace("40.5", "41"), "garbage", "", GOOD]
    result = parse_payload(("\n".join(lines) + "\n").encode())
    assert [p.fields for p in result.points] == [
        (("power_w", 40.5),),
        (("power_w", 41.0),),
        (("power_w", 40.5),),
    ]
    assert [e.line for e in result.errors] == [2, 4, 5]
    assert "finite" in result.errors[0].reason
    assert (
        result.errors[1].reason
        == "no fields; expected '<measurement>[,<tags>] <fields> <timestamp>'"
    )
    assert result.errors[2].reason.startswith("blank line")
    assert str(result.errors[0]).startswith("line 2: field 'power_w'")
    assert not result.ok


def test_trailing_newline_is_optional_but_blank_lines_are_not():
    assert len(parse_payload(GOOD.encode()).points) == 1
    assert len(parse_payload(f"{GOOD}\n".encode()).points) == 1
    assert reasons(f"{GOOD}\n\n".encode()) == ["blank line; only a final newline is allowed"]
    assert [e.line for e in parse_payload(f"\n{GOOD}\n  \n".encode()).errors] == [1, 3]


def test_payload_level_errors_are_one_error_with_line_zero():
    bad_utf8 = f"{GOOD}\n".encode() + b"accel,device=\xff\xfe power_w=1 1\n" + f"{GOOD}\n".encode()
    result = parse_payload(bad_utf8)
    assert result.points == []
    assert len(result.errors) == 1
    err = result.errors[0]
    assert err.line == 0
    assert err.reason.startswith("payload is not UTF-8")
    assert "line 2" in err.reason
    assert str(err).startswith("payload: payload is not UTF-8")
    assert len(err.text) <= MAX_LINE_COPY

    big = (f"{GOOD}\n" * 100).encode()
    result = parse_payload(big, max_bytes=len(big) - 1)
    assert result.points == []
    assert [(e.line, e.reason) for e in result.errors] == [
        (0, f"payload of {len(big)} bytes exceeds the {len(big) - 1}-byte limit")
    ]
    assert len(parse_payload(big, max_bytes=len(big)).points) == 100
    assert [e.line for e in parse_payload(b"").errors] == [0]


def test_line_errors_keep_a_bounded_copy():
    line = f"{HEAD},service={'x' * 300} power_w=1 {TS}"
    err = parse_payload(line.encode()).errors[0]
    assert len(err.text) == MAX_LINE_COPY
    assert err.text.endswith("…")
    assert "longer than 256" in err.reason
    assert isinstance(err, LineError)


# ---------------------------------------------------------------------------- parser robustness

_syntax_chars = st.sampled_from([*',= "\\\n\rit.-+e0159xé', "\x00", "\xff", "nan"])


@st.composite
def mutated_payloads(draw: st.DrawFn) -> bytes:
    """A valid payload with a few characters inserted, deleted or replaced."""
    batch = draw(st.lists(samples(), min_size=1, max_size=4))
    text = encode(batch, site="s1", node="n1").decode()
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        c = draw(_syntax_chars)
        if op == "insert":
            text = text[:i] + c + text[i:]
        elif op == "delete":
            text = text[:i] + text[i + 1 :]
        else:
            text = text[:i] + c + text[i + 1 :]
    return text.encode()


@settings(max_examples=300, deadline=None)
@given(st.one_of(mutated_payloads(), st.binary(max_size=200)))
def test_parser_never_raises_and_accounts_for_every_line(payload):
    """Every line is a point or an error (what ingest/worker.py relies on to pair them up)."""
    result = parse_payload(payload)
    if any(e.line == 0 for e in result.errors):
        assert result.points == []
        assert len(result.errors) == 1
        return
    lines = payload.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    bad = {e.line for e in result.errors}
    assert len(bad) == len(result.errors)
    assert bad <= set(range(1, len(lines) + 1))
    assert len(result.points) + len(bad) == len(lines)
    for p in result.points:  # whatever got through is valid kwatt data
        spec = MEASUREMENTS[Measurement(p.measurement)]
        assert spec.required_tags <= {k for k, _ in p.tags} <= spec.tags
        for k, v in p.fields:
            assert k in spec.fields
            want = float if FIELDS[k].type is FieldType.FLOAT else int
            assert type(v) is want
            assert math.isfinite(v)
        assert p.ts_ns >= MIN_TS_NS


# Tokens for lines of the ``agent`` measurement's shape: (valid choices, invalid choices).
_BAD_FLOATS = [
    "1i",
    "+1",
    "--1",
    "1e999",
    "nan",
    "-inf",
    "Infinity",
    "1_0",
    "٣",
    "0x1",
    "t",
    "1u",
    "1.5i",
    ".",
    "-",
    "e5",
    "1e",
]
_BAD_INTS = [
    "1",
    "+1i",
    "1.5",
    "1.5i",
    "٣i",
    "1u",
    "i",
    "-i",
    "9223372036854775808i",
    "-9223372036854775809i",
    "nan",
    "t",
]
_GOOD = {
    float: [
        "1",
        "1.5",
        "-0",
        "1e5",
        "1e+5",
        "1E-5",
        ".5",
        "5.",
        "-3",
        "12.25",
        "1.7976931348623157e308",
    ],
    int: ["0i", "5i", "-7i", "9223372036854775807i", "-9223372036854775808i"],
}
_TOKENS = {
    "measurement": (["agent"], ["accel", "host", "acc", "#agent", "agent\\ ", ""]),
    "tags": (
        [",site=s1,node=n1", ",node=n1,site=s1", ",collector=c1,node=n1,site=s1"],
        [",site=s1", ",site=s1,node=n1,x=1", ",site=s1,node=n\\ 1", ",site=s1,node=", ",site"],
    ),
    "sep": ([" "], ["  ", "\t", ","]),
    "ts": (
        [str(TS), str(MIN_TS_NS), "9223372036854775807"],
        [str(MIN_TS_NS - 1), "9223372036854775808", f"0{TS}", f"{TS}i", "-1", "1.7e18", ""],
    ),
}
_FIELD_KINDS = {"seq": int, "spool_bytes": int, "collect_ok": int, "collect_duration_s": float}


@st.composite
def near_valid_lines(draw: st.DrawFn) -> str:
    """``agent`` lines in which each token is, independently, usually valid and sometimes not."""
    rnd = draw(st.randoms(use_true_random=False))

    def pick(good: list[str], bad: list[str]) -> str:
        return rnd.choice(good if rnd.random() < 0.85 else bad)

    measurement, tags, sep, ts = (pick(*_TOKENS[k]) for k in ("measurement", "tags", "sep", "ts"))
    names = rnd.sample([*_FIELD_KINDS, "power_w", "bogus"], rnd.randint(1, 3))
    if rnd.random() < 0.05:
        names.append(names[0])  # duplicate
    fields = []
    for name in names:
        kind = _FIELD_KINDS.get(name, float)
        fields.append(f"{name}={pick(_GOOD[kind], _BAD_INTS if kind is int else _BAD_FLOATS)}")
    return f"{measurement}{tags}{sep}{','.join(fields)} {ts}"


def _full_or_none(line: str, max_ts: int) -> Point | None:
    try:
        return lineproto._parse_full(line, max_ts)
    except LineProtocolError:
        return None


@settings(max_examples=1500, deadline=None)
@given(near_valid_lines(), st.sampled_from([2**63 - 1, TS]))
def test_fast_path_accepts_a_subset_of_the_full_parser_with_equal_results(line, max_ts):
    """The split-based fast path is only a shortcut: where it accepts, the full grammar agrees."""
    fast = lineproto._parse_fast(line, max_ts)
    if fast is not None:
        full = _full_or_none(line, max_ts)
        assert full is not None
        assert (fast.measurement, fast.tags, fast.ts_ns) == (
            full.measurement,
            full.tags,
            full.ts_ns,
        )
        assert exact(fast.fields) == exact(full.fields)


@settings(max_examples=200, deadline=None)
@given(mutated_payloads())
def test_fast_path_agrees_on_mutated_encoder_output(payload):
    for line in payload.decode("utf-8", "replace").split("\n"):
        fast = lineproto._parse_fast(line, 2**63 - 1)
        if fast is not None:
            full = _full_or_none(line, 2**63 - 1)
            assert full is not None
            assert exact(fast.fields) == exact(full.fields)
            assert (fast.tags, fast.ts_ns) == (full.tags, full.ts_ns)


def _scan_matches_parse(payload: bytes, now_ns: int | None = None) -> None:
    parsed = parse_payload(payload, now_ns=now_ns)
    scanned = lineproto.scan_payload(payload, now_ns=now_ns)
    assert scanned.errors == parsed.errors
    assert [(s.measurement, s.tags) for s in scanned.lines] == [
        (p.measurement, p.tags) for p in parsed.points
    ]
    text_lines = payload.decode("utf-8", "replace").split("\n")
    for s in scanned.lines:
        assert s.text == text_lines[s.line - 1]
        if s.point is not None:
            assert s.point.tags == s.tags


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        mutated_payloads(),
        st.binary(max_size=200),
        batches.map(lambda b: encode(b, site="s1", node="n1")),
    )
)
def test_scan_payload_accepts_exactly_what_parse_payload_accepts(payload):
    """The ingest's scan (regex on the field part, no decoding) and the parser agree line by line."""
    _scan_matches_parse(payload)
    _scan_matches_parse(payload, now_ns=TS)


@settings(max_examples=1500, deadline=None)
@given(st.lists(near_valid_lines(), min_size=1, max_size=3))
def test_scan_payload_agrees_on_near_valid_lines(lines):
    _scan_matches_parse(("\n".join(lines) + "\n").encode(), now_ns=TS)


@pytest.mark.parametrize(
    "body",
    ["power_w=1e999", "power_w=" + "9" * 400, "seq=99999999999999999999i", "power_w=1,",
     "power_w=1,power_w=2", "temp_c=1,power_w=2", "power_w=nan", "power_w=+1", "power_w=1.5e+99"],
)  # fmt: skip
def test_scan_payload_edges(body):
    _scan_matches_parse(f"accel,device=d,model=m,node=n1,site=s1,vendor=v {body} {TS}\n".encode())
    _scan_matches_parse(f"agent,node=n1,site=s1 {body} {TS}\n".encode())


# ------------------------------------------------------------------ plausible ranges (DESIGN §3)
HOST_HEAD = "host,node=n1,site=s1,source=rapl,zone=package-0"


@pytest.mark.parametrize(
    ("line", "key", "bound"),
    [
        (f"{HEAD} power_w=1e300 {TS}", "power_w", "[0, 10000] W"),
        (f"{HEAD} power_w=-5 {TS}", "power_w", "[0, 10000] W"),
        (f"{HEAD} temp_c=65535 {TS}", "temp_c", "[-40, 150] °C"),
        (f"{HEAD} temp_c=-273 {TS}", "temp_c", "[-40, 150] °C"),
        (f"{HEAD} util_ratio=1.5 {TS}", "util_ratio", "[0, 1]"),
        (f"{HEAD} clock_hz=2e10 {TS}", "clock_hz", "[0, 1e+10] Hz"),
        (f"{HEAD} energy_j=-1 {TS}", "energy_j", "[0, inf] J"),
        (f"{HEAD} mem_total_bytes=100i,mem_used_bytes=101i {TS}", "mem_used_bytes", "<= mem_total_bytes (100)"),
        (f"{HEAD} tokens_total=-1i {TS}", "tokens_total", "[0, inf]"),
        (f"{HOST_HEAD} power_w=150000 {TS}", "power_w", "[0, 100000] W"),
    ],
)  # fmt: skip
def test_out_of_range_line_is_an_error_naming_field_value_and_bound(line, key, bound):
    for result in (parse_payload(f"{GOOD}\n{line}\n{GOOD}".encode()),):
        assert len(result.points) == 2  # the other lines of the message are kept
        (err,) = result.errors
        assert err.line == 2
        assert repr(key) in err.reason and bound in err.reason, err.reason
    scanned = scan_payload(f"{GOOD}\n{line}\n{GOOD}".encode())
    assert [g.line for g in scanned.lines] == [1, 3]
    assert [e.reason for e in scanned.errors] == [err.reason]
    with pytest.raises(LineProtocolError) as e:
        parse_line(line)
    assert e.value.key == key


@pytest.mark.parametrize(
    "line",
    [
        f"{HEAD} power_w=0,temp_c=-40,util_ratio=1,clock_hz=1e10 {TS}",
        f"{HEAD} temp_c=150,power_w=10000,mem_total_bytes=5i,mem_used_bytes=5i {TS}",
        f"{HOST_HEAD} power_w=99999.5,energy_j=0 {TS}",
        f"agent,collector=c,node=n1,site=s1 collect_errors_total=-3i {TS}",  # not bounded
    ],
)
def test_values_on_the_bounds_are_accepted(line):
    assert parse_payload(line.encode()).ok
    assert not scan_payload(line.encode()).errors


def test_every_bound_names_a_known_field_of_its_measurement():
    for m, bounds in BOUNDS.items():
        for name, b in bounds.items():
            assert name in MEASUREMENTS[Measurement(m)].fields, (m, name)
            assert b.lo <= b.hi and b.why
