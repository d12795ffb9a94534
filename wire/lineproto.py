"""InfluxDB line protocol: kwatt's single wire format (DESIGN §1 and §4).

Encoding (agent side): :func:`encode` turns :class:`~kwatt.wire.model.Sample` objects into line
protocol with hand-written f-strings: byte for byte what ``influxdb_client.Point`` writes for the
same data, several times faster (see BENCHMARKS.md (Encoder and parser)). Tags are sorted by key,
fields by name; floats are written as Point writes them (``repr`` minus a trailing ``.0``), integers with
the ``i`` suffix, timestamps in nanoseconds. Measurement names, tag keys and field names come from
the fixed tables of :mod:`kwatt.wire.model` and tag values are validated (DESIGN §4), so nothing needs
escaping.

Decoding (ingest side, DESIGN §5): :func:`parse_payload` is a strict parser. It understands the
general line-protocol syntax (escapes, quoted string fields) so that it can say precisely what is
wrong, then validates every line against DESIGN §3/§4: known measurement, required tags present,
no unknown tags or fields, each field of its fixed type and finite, and a plausible nanosecond
timestamp. Bad lines are reported one by one (1-based line number, a bounded copy of the line, the
reason) and the good lines of the same payload are kept.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from kwatt.wire.model import (
    BOUNDS,
    FIELDS,
    MEASUREMENTS,
    FieldType,
    FieldValue,
    Measurement,
    MeasurementSpec,
    Sample,
    range_violations,
    validate_tag_value,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_SKEW_S",
    "MIN_TS_NS",
    "LineError",
    "LineProtocolError",
    "ParseResult",
    "Point",
    "ScanResult",
    "ScannedLine",
    "encode",
    "format_float",
    "parse_line",
    "parse_payload",
    "scan_payload",
]

#: 2000-01-01T00:00:00Z in ns: anything earlier is not a wall-clock reading (DESIGN §4).
MIN_TS_NS = 946_684_800 * 10**9
#: How far ahead of the receiver's clock a timestamp may be, when the caller passes ``now_ns``.
DEFAULT_MAX_SKEW_S = 86_400.0
#: Default payload limit of :func:`parse_payload`.
DEFAULT_MAX_BYTES = 1_000_000
#: Longest copy of a bad line kept in a :class:`LineError`.
MAX_LINE_COPY = 200

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

_SPECS: dict[str, MeasurementSpec] = {m.value: spec for m, spec in MEASUREMENTS.items()}
_FIELD_TYPES: dict[str, FieldType] = {name: spec.type for name, spec in FIELDS.items()}
_MEASUREMENT_NAMES = ", ".join(sorted(_SPECS))

# ASCII only: Python's \d, int() and float() also accept other scripts' digits, '_' and whitespace.
_FLOAT_RE = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_INT_RE = re.compile(r"-?[0-9]+i")
_TS_RE = re.compile(r"-?[0-9]+")
_NONFINITE = frozenset({"nan", "inf", "infinity"})
_BOOLEANS = frozenset({"t", "true", "f", "false"})


# --------------------------------------------------------------------------------------- encoding


def format_float(value: float) -> str:
    """Format a float exactly as ``influxdb_client.Point`` does: ``repr`` without a trailing ``.0``.

    ``1.0`` → ``1``, ``-0.0`` → ``-0``, ``0.1`` → ``0.1``, ``1e16`` → ``1e+16``. Line protocol
    reads an unsuffixed number as a float, so ``1`` round-trips to ``1.0``.
    """
    r = repr(value)
    return r[:-2] if r[-2:] == ".0" else r


# (site, node) -> {(measurement, sample tags) -> "measurement,k=v,..."}: the tag part of a line is
# the same for every reading of one device, so it is built once. Bounded: cleared when large.
_PREFIXES: dict[tuple[str, str], dict[tuple[Measurement, tuple[tuple[str, str], ...]], str]] = {}
_PREFIX_CACHE_MAX = 4096


def _tag_prefix(sample: Sample, site: str, node: str) -> str:
    tags = sorted((*sample.tags, ("node", node), ("site", site)))
    return ",".join([sample.measurement.value, *[f"{k}={v}" for k, v in tags]])


def encode(samples: Sequence[Sample], *, site: str, node: str) -> bytes:
    """Encode ``samples`` as line protocol, one ``\\n``-terminated line each, UTF-8 (DESIGN §4).

    The agent adds the ``site`` and ``node`` tags here (a collector never sets them); both are
    validated once per call and a ``ValueError`` names the bad one. Samples are trusted: the
    :class:`~kwatt.wire.model.Sample` constructor has already validated their tags, field types and
    finiteness. The output is byte-identical to joining the lines of
    ``influxdb_client.Point(...).to_line_protocol()`` with ``\\n`` plus a final ``\\n``; no
    samples give ``b""``.
    """
    validate_tag_value("site", site)
    validate_tag_value("node", node)
    prefixes = _PREFIXES.get((site, node))
    if prefixes is None or len(prefixes) > _PREFIX_CACHE_MAX:
        if len(_PREFIXES) > 64:
            _PREFIXES.clear()
        prefixes = _PREFIXES[(site, node)] = {}
    lines: list[str] = []
    append = lines.append
    for s in samples:
        key = (s.measurement, s.tags)
        prefix = prefixes.get(key)
        if prefix is None:
            prefix = prefixes[key] = _tag_prefix(s, site, node)
        parts = []
        for name, value in s.fields:
            if type(value) is float:
                r = repr(value)
                parts.append(f"{name}={r[:-2] if r[-2:] == '.0' else r}")
            else:
                parts.append(f"{name}={value}i")
        append(f"{prefix} {','.join(parts)} {s.ts_ns}\n")
    return "".join(lines).encode()


# --------------------------------------------------------------------------------------- decoding


class LineProtocolError(ValueError):
    """One line is not valid kwatt line protocol; ``key`` names the bad tag or field, if any."""

    def __init__(self, reason: str, *, key: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.key = key


@dataclass(frozen=True, slots=True)
class Point:
    """One parsed, validated line: tags (``site``, ``node`` included) and fields sorted by key.

    FLOAT fields are ``float`` (also when written ``1``), INT fields ``int`` (DESIGN §3).
    """

    measurement: str
    tags: tuple[tuple[str, str], ...]
    fields: tuple[tuple[str, float | int], ...]
    ts_ns: int


@dataclass(frozen=True, slots=True)
class LineError:
    """Why one line of a payload was rejected.

    ``line`` is 1-based and counts ``\\n``-separated lines (as ``payload.split(b"\\n")``
    does); ``0`` means the payload as a whole (not UTF-8, too large, empty). ``text`` is the line
    (or the payload's start), cut to :data:`MAX_LINE_COPY` characters.
    """

    line: int
    text: str
    reason: str

    def __str__(self) -> str:
        where = "payload" if self.line == 0 else f"line {self.line}"
        return f"{where}: {self.reason}"


@dataclass(slots=True)
class ParseResult:
    """The good points of a payload, in order, and one :class:`LineError` per bad line."""

    points: list[Point] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


class _Quoted(str):
    """A field value written as a quoted string (parsed, then refused: kwatt has none)."""

    __slots__ = ()


_Syntax = tuple[str, list[tuple[str, str]], list[tuple[str, str]], str | None]


def _scan_general(line: str) -> _Syntax:
    """Tokenise one line with the full line-protocol grammar; raise on a syntax error.

    Escapes: ``\\,`` and ``\\ `` in the measurement; ``\\,`` ``\\=`` ``\\ `` in tag keys, tag values
    and field keys; ``\\"`` and ``\\\\`` inside quoted string field values. A backslash before any
    other character is a literal backslash, as in InfluxDB.
    """
    n = len(line)

    def read(i: int, stops: str, escapable: str) -> tuple[str, int]:
        out: list[str] = []
        while i < n:
            c = line[i]
            if c == "\\" and i + 1 < n and line[i + 1] in escapable:
                out.append(line[i + 1])
                i += 2
                continue
            if c in stops:
                break
            out.append(c)
            i += 1
        return "".join(out), i

    if line[:1] in (" ", "\t"):
        raise LineProtocolError("line starts with whitespace; expected a measurement name")
    measurement, i = read(0, ", ", ", ")
    if not measurement:
        raise LineProtocolError("empty measurement name")
    tags: list[tuple[str, str]] = []
    while i < n and line[i] == ",":
        key, i = read(i + 1, ",= ", ",= ")
        if not key:
            raise LineProtocolError("empty tag key; expected <key>=<value> after ','")
        if i >= n or line[i] != "=":
            raise LineProtocolError(f"tag {key!r}: no '=<value>'", key=key)
        value, i = read(i + 1, ",= ", ",= ")
        if i < n and line[i] == "=":
            raise LineProtocolError(f"tag {key!r}: unescaped '=' in the value", key=key)
        if not value:
            raise LineProtocolError(f"tag {key!r}: empty value", key=key)
        tags.append((key, value))
    if i >= n:
        raise LineProtocolError("no fields; expected '<measurement>[,<tags>] <fields> <timestamp>'")
    i += 1  # the space before the fields
    if i < n and line[i] == " ":
        raise LineProtocolError("more than one space before the fields")
    fields: list[tuple[str, str]] = []
    ts: str | None = None
    while True:
        key, i = read(i, ",= ", ",= ")
        if not key:
            raise LineProtocolError("empty field key; expected <field>=<value>")
        if i >= n or line[i] != "=":
            raise LineProtocolError(f"field {key!r}: no '=<value>'", key=key)
        i += 1
        if i < n and line[i] == '"':
            out: list[str] = []
            i += 1
            while i < n and line[i] != '"':
                if line[i] == "\\" and i + 1 < n and line[i + 1] in '"\\':
                    i += 1
                out.append(line[i])
                i += 1
            if i >= n:
                raise LineProtocolError(f"field {key!r}: unterminated string value", key=key)
            i += 1
            value = _Quoted("".join(out))
            if i < n and line[i] not in ", ":
                raise LineProtocolError(
                    f"field {key!r}: unexpected {line[i]!r} after the string value", key=key
                )
        else:
            start = i
            while i < n and line[i] not in ", ":
                i += 1
            value = line[start:i]
            if not value:
                raise LineProtocolError(f"field {key!r}: empty value", key=key)
        fields.append((key, value))
        if i >= n:
            break
        if line[i] == ",":
            i += 1
            continue
        ts = line[i + 1 :]
        break
    return measurement, tags, fields, ts


def _check_head(
    measurement: str, tags: list[tuple[str, str]]
) -> tuple[str, tuple[tuple[str, str], ...]]:
    """Validate measurement and tags against DESIGN §4; return them in canonical (sorted) form."""
    spec = _SPECS.get(measurement)
    if spec is None:
        raise LineProtocolError(
            f"unknown measurement {measurement!r}; expected one of {_MEASUREMENT_NAMES}"
        )
    seen: set[str] = set()
    for key, value in tags:
        if key in seen:
            raise LineProtocolError(f"tag {key!r} given twice", key=key)
        seen.add(key)
        if key not in spec.tags:
            raise LineProtocolError(
                f"unknown tag {key!r} for measurement {measurement!r}; expected tags "
                f"{', '.join(sorted(spec.tags))}",
                key=key,
            )
        try:
            validate_tag_value(key, value)
        except ValueError as e:
            raise LineProtocolError(str(e), key=key) from None
    missing = spec.required_tags - seen
    if missing:
        names = ", ".join(repr(k) for k in sorted(missing))
        raise LineProtocolError(
            f"measurement {measurement!r}: missing required tag(s) {names}", key=min(missing)
        )
    return measurement, tuple(sorted(tags))


def _field_value(key: str, text: str, ftype: FieldType) -> FieldValue:
    """Convert one field's text to its DESIGN §3 type, or raise naming the field and the type."""
    if isinstance(text, _Quoted):
        raise LineProtocolError(
            f"field {key!r}: string value {str(text)[:40]!r}; kwatt has no string fields, expected "
            + ("an integer like 5i" if ftype is FieldType.INT else "a float literal like 1.5"),
            key=key,
        )
    low = text.lower().lstrip("+-")
    if ftype is FieldType.FLOAT:
        if _FLOAT_RE.fullmatch(text):
            value = float(text)
            if not math.isfinite(value):
                raise LineProtocolError(f"field {key!r}: {text!r} overflows a float", key=key)
            return value
        if _INT_RE.fullmatch(text) or (text[-1:] == "u" and _TS_RE.fullmatch(text[:-1])):
            raise LineProtocolError(
                f"field {key!r}: expected a float literal (no '{text[-1]}' suffix), got {text!r}",
                key=key,
            )
        if low in _NONFINITE:
            raise LineProtocolError(
                f"field {key!r}: expected a finite float, got {text!r} (no NaN or infinity)",
                key=key,
            )
    else:
        if _INT_RE.fullmatch(text):
            ivalue = int(text[:-1]) if len(text) <= 21 else _INT64_MAX + 1
            if not _INT64_MIN <= ivalue <= _INT64_MAX:
                raise LineProtocolError(f"field {key!r}: {text[:40]!r} is outside int64", key=key)
            return ivalue
        if _FLOAT_RE.fullmatch(text) or low in _NONFINITE:
            raise LineProtocolError(
                f"field {key!r}: expected an integer with the 'i' suffix (like 5i), got {text!r}",
                key=key,
            )
        if text[-1:] == "u" and _TS_RE.fullmatch(text[:-1]):
            raise LineProtocolError(
                f"field {key!r}: expected a signed integer with the 'i' suffix, got {text!r}",
                key=key,
            )
    if low in _BOOLEANS:
        raise LineProtocolError(
            f"field {key!r}: boolean {text!r}; expected "
            + ("an integer 0i or 1i" if ftype is FieldType.INT else "a float literal"),
            key=key,
        )
    what = "an integer like 5i" if ftype is FieldType.INT else "a float literal like 1.5"
    raise LineProtocolError(f"field {key!r}: expected {what}, got {text[:40]!r}", key=key)


def _check_fields(
    measurement: str, fields: list[tuple[str, str]]
) -> tuple[tuple[str, float | int], ...]:
    allowed = _SPECS[measurement].fields
    seen: set[str] = set()
    out: list[tuple[str, float | int]] = []
    for key, text in fields:
        if key in seen:
            raise LineProtocolError(f"field {key!r} given twice", key=key)
        seen.add(key)
        if key not in allowed:
            raise LineProtocolError(
                f"unknown field {key!r} for measurement {measurement!r}; expected fields "
                f"{', '.join(sorted(allowed))}",
                key=key,
            )
        out.append((key, _field_value(key, text, _FIELD_TYPES[key])))
    out.sort()
    if measurement in BOUNDS and (bad := range_violations(measurement, out)):
        v = bad[0]
        raise LineProtocolError(
            f"field {v.field!r}: {v.value!r} is outside its plausible range {v.bound} "
            "(DESIGN §3: a failed sensor read, not a measurement)",
            key=v.field,
        )
    return tuple(out)


def _check_ts(text: str | None, max_ts: int) -> int:
    if not text:
        raise LineProtocolError("no timestamp; expected an integer number of ns after the fields")
    if not (text.isascii() and text.isdigit()):
        if text[-1] == "\r":
            raise LineProtocolError(
                "carriage return at the end of the line; expected '\\n' endings"
            )
        if text[0] == " ":
            raise LineProtocolError("more than one space before the timestamp")
        if text[-1].isspace():
            raise LineProtocolError("trailing whitespace after the timestamp")
        if " " in text:
            raise LineProtocolError(
                f"unexpected text after the timestamp: {text[:40]!r}; expected one integer"
            )
        if not _TS_RE.fullmatch(text):
            raise LineProtocolError(
                f"timestamp {text[:40]!r} is not an integer; expected nanoseconds since the epoch"
            )
    if len(text) > 20:  # also keeps int() clear of its 4300-digit limit
        raise LineProtocolError(f"timestamp {text[:40]!r}... is outside int64")
    ts = int(text)
    if ts < MIN_TS_NS:
        raise LineProtocolError(
            f"timestamp {ts} is before 2000-01-01 ({MIN_TS_NS}); expected nanoseconds since the "
            "epoch (seconds, ms and µs are too small)"
        )
    if ts > _INT64_MAX:
        raise LineProtocolError(f"timestamp {ts} is outside int64")
    if ts > max_ts:
        raise LineProtocolError(f"timestamp {ts} is in the future (> {max_ts} ns allowed)")
    return ts


# The fast path of the parser. Validated heads ("measurement,k=v,...", exactly as written) map to
# the measurement, its sorted tags and its field types: the head repeats for every reading of one
# device, so it is checked once. Bounded: cleared when it grows large.
_Head = tuple[str, tuple[tuple[str, str], ...], dict[str, FieldType]]
_HEADS: dict[str, _Head] = {}
_HEAD_CACHE_MAX = 131_072  # a head per device and node: 10 k nodes × 10 lines fit
_TYPES_BY_MEASUREMENT = {m: {f: _FIELD_TYPES[f] for f in spec.fields} for m, spec in _SPECS.items()}
_FLOAT_CHARS = "0123456789.eE+-"
_FLOAT = FieldType.FLOAT


def _fast_head(head: str) -> _Head | None:
    tokens = head.split(",")
    tags = []
    for tok in tokens[1:]:
        k, sep, v = tok.partition("=")
        if not (sep and k and v) or "=" in v:
            return None
        tags.append((k, v))
    try:
        name, canon = _check_head(tokens[0], tags)
    except LineProtocolError:
        return None
    if len(_HEADS) >= _HEAD_CACHE_MAX:
        _HEADS.clear()
    cached = _HEADS[head] = (name, canon, _TYPES_BY_MEASUREMENT[name])
    return cached


def _parse_fast(line: str, max_ts: int) -> Point | None:
    """The common, valid line, quickly; ``None`` hands the line to :func:`_parse_full`.

    Accepts a subset of what :func:`_parse_full` accepts, with the same result (a property test
    checks this): no escapes or quotes can occur in an accepted line, because every token must be
    a known name, a legal tag value (neither may hold a backslash or quote) or a number. Fields
    must come sorted, as :func:`encode` and Point write them; others take the full path.
    """
    parts = line.split(" ")
    if len(parts) != 3:
        return None
    head, body, ts = parts
    cached = _HEADS.get(head) or _fast_head(head)
    if cached is None:
        return None
    name, tags, types = cached
    fields: list[tuple[str, float | int]] = []
    append = fields.append
    prev = ""
    for tok in body.split(","):
        k, _, v = tok.partition("=")
        ftype = types.get(k)
        if ftype is None or not v or k <= prev:  # unknown, empty, or out of order (or twice)
            return None
        prev = k
        if ftype is _FLOAT:
            # float() alone would also take "nan", "inf", "1_0", " 1", other scripts' digits
            if v.strip(_FLOAT_CHARS) or v[0] == "+":
                return None
            try:
                x = float(v)
            except ValueError:
                return None
            if x - x:  # inf (overflow); NaN cannot be spelled with these characters
                return None
            append((k, x))
        else:
            if v[-1] != "i":
                return None
            digits = v[1:-1] if v[0] == "-" else v[:-1]
            if not (digits.isdigit() and digits.isascii()) or len(digits) > 19:
                return None
            n = int(v[:-1])
            if not _INT64_MIN <= n <= _INT64_MAX:
                return None
            append((k, n))
    if not (ts.isdigit() and ts.isascii()) or len(ts) > 19:
        return None
    t = int(ts)
    if not MIN_TS_NS <= t <= max_ts:
        return None
    if name in BOUNDS and range_violations(name, fields):
        return None  # the full path says which field, value and bound
    return Point(name, tags, tuple(fields), t)


# The ingest's path (scan_payload): it forwards the raw line to InfluxDB, so it needs to know that
# a line is valid and whose it is, not its decoded fields. One regex per measurement checks the
# field part in C: the measurement's fields in sorted order, each at most once, numbers in a subset
# of the grammar whose values are always in range (≤ 17 mantissa digits and 2 exponent digits: no
# float overflows; ≤ 18 digits: no int64 overflow). Anything else takes the full parser.
_F = r"-?(?:[0-9]{1,17}(?:\.[0-9]{0,17})?|\.[0-9]{1,17})(?:[eE][-+]?[0-9]{1,2})?"
_I = r"-?[0-9]{1,18}i"
_BODIES: dict[str, re.Pattern[str]] = {
    m: re.compile(
        "(?=.)"
        + "".join(
            f"(?:{name}={_F if ftype is FieldType.FLOAT else _I}(?:,(?=.)|\\Z))?"
            for name, ftype in sorted(types.items())
        )
        + "\\Z"
    )
    for m, types in _TYPES_BY_MEASUREMENT.items()
}


def _in_bounds(measurement: str, body: str) -> bool:
    """The field part (already matched by the measurement's regex) is within :data:`BOUNDS`."""
    fields: list[tuple[str, float | int]] = []
    for tok in body.split(","):
        k, _, v = tok.partition("=")
        fields.append((k, int(v[:-1]) if v[-1] == "i" else float(v)))
    return not range_violations(measurement, fields)


@dataclass(frozen=True, slots=True)
class ScannedLine:
    """A valid line as :func:`scan_payload` sees it: its number, measurement and sorted tags; the
    parsed :class:`Point` only when the line took the full parser (else None: parse it if the
    fields are needed)."""

    line: int
    measurement: str
    tags: tuple[tuple[str, str], ...]
    text: str
    point: Point | None = None


@dataclass(slots=True)
class ScanResult:
    """The valid lines of a payload, in order, and one :class:`LineError` per bad line."""

    lines: list[ScannedLine] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)


def scan_payload(
    payload: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    now_ns: int | None = None,
    max_skew_s: float = DEFAULT_MAX_SKEW_S,
) -> ScanResult:
    """Validate a payload as :func:`parse_payload` does, without decoding fields (the ingest).

    A line is good here exactly when :func:`parse_payload` gives it a :class:`Point` (a property
    test checks this), with the same measurement and tags; errors are the same line errors.
    """
    result = ScanResult()
    if len(payload) > max_bytes or not payload:
        parsed = parse_payload(payload, max_bytes=max_bytes, now_ns=now_ns, max_skew_s=max_skew_s)
        result.errors = parsed.errors
        return result
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        parsed = parse_payload(payload, max_bytes=max_bytes, now_ns=now_ns, max_skew_s=max_skew_s)
        result.errors = parsed.errors
        return result
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    max_ts = _max_ts(now_ns, max_skew_s)
    good, errors = result.lines, result.errors
    heads, bodies = _HEADS, _BODIES
    for lineno, line in enumerate(lines, start=1):
        parts = line.split(" ")
        if len(parts) == 3:
            head, body, ts = parts
            cached = heads.get(head) or _fast_head(head)
            if (
                cached is not None
                and bodies[cached[0]].match(body)
                and ts.isdigit()
                and ts.isascii()
                and len(ts) <= 19
                and MIN_TS_NS <= int(ts) <= max_ts
                and (cached[0] not in BOUNDS or _in_bounds(cached[0], body))
            ):
                good.append(ScannedLine(lineno, cached[0], cached[1], line))
                continue
        if not line or line.isspace():
            errors.append(
                LineError(lineno, _copy(line), "blank line; only a final newline is allowed")
            )
            continue
        try:
            point = _parse_full(line, max_ts)
        except LineProtocolError as e:
            errors.append(LineError(lineno, _copy(line), e.reason))
            continue
        good.append(ScannedLine(lineno, point.measurement, point.tags, line, point))
    return result


def _parse_full(line: str, max_ts: int) -> Point:
    """Parse with the full grammar and validate; raise :class:`LineProtocolError` saying why not."""
    if line[:1] == "#":
        raise LineProtocolError("comment lines are not allowed; expected a measurement name")
    measurement, tags, fields, ts = _scan_general(line)
    name, canon_tags = _check_head(measurement, tags)
    return Point(name, canon_tags, _check_fields(name, fields), _check_ts(ts, max_ts))


def _parse(line: str, max_ts: int) -> Point:
    return _parse_fast(line, max_ts) or _parse_full(line, max_ts)


def _max_ts(now_ns: int | None, max_skew_s: float) -> int:
    if now_ns is None:
        return _INT64_MAX
    return min(_INT64_MAX, now_ns + int(max_skew_s * 1e9))


def parse_line(
    line: str, *, now_ns: int | None = None, max_skew_s: float = DEFAULT_MAX_SKEW_S
) -> Point:
    """Parse and validate one line (no newline) against DESIGN §3/§4.

    Raises :class:`LineProtocolError` naming the bad key and what was expected.

    Timestamps must be integer ns from 2000-01-01 on, and when ``now_ns`` is given at most
    ``max_skew_s`` ahead of it.
    """
    if "\n" in line:
        raise LineProtocolError("a line may not contain '\\n'; use parse_payload for several lines")
    return _parse(line, _max_ts(now_ns, max_skew_s))


def _copy(line: str) -> str:
    return line if len(line) <= MAX_LINE_COPY else line[: MAX_LINE_COPY - 1] + "…"


def _copy_bytes(payload: bytes) -> str:
    return _copy(payload[: MAX_LINE_COPY + 1].decode("utf-8", "backslashreplace"))


def parse_payload(
    payload: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    now_ns: int | None = None,
    max_skew_s: float = DEFAULT_MAX_SKEW_S,
) -> ParseResult:
    """Parse one MQTT metrics payload (DESIGN §4/§5); never raises on bad input.

    Lines are separated by ``\\n``; one trailing ``\\n`` is allowed, other blank lines are errors.
    Every line yields either a :class:`Point` (in order) or a :class:`LineError`, so the good
    lines of a partly bad payload are kept. A payload over ``max_bytes``, not UTF-8, or empty is
    one error with ``line == 0`` and no points. ``now_ns``/``max_skew_s`` as in :func:`parse_line`.
    """
    result = ParseResult()
    if len(payload) > max_bytes:
        result.errors.append(
            LineError(
                0,
                _copy_bytes(payload),
                f"payload of {len(payload)} bytes exceeds the {max_bytes}-byte limit",
            )
        )
        return result
    if not payload:
        result.errors.append(LineError(0, "", "empty payload; expected at least one line"))
        return result
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as e:
        lineno = payload.count(b"\n", 0, e.start) + 1
        result.errors.append(
            LineError(
                0,
                _copy_bytes(payload),
                f"payload is not UTF-8 ({e.reason} at byte {e.start}, line {lineno})",
            )
        )
        return result
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    max_ts = _max_ts(now_ns, max_skew_s)
    points, errors = result.points, result.errors
    for lineno, line in enumerate(lines, start=1):
        if not line or line.isspace():
            errors.append(
                LineError(lineno, _copy(line), "blank line; only a final newline is allowed")
            )
            continue
        try:
            points.append(_parse(line, max_ts))
        except LineProtocolError as e:
            errors.append(LineError(lineno, _copy(line), e.reason))
    return result
