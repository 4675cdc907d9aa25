"""Measurements as InfluxDB 1.x line protocol, the format Rubin's Sasquatch (and its dashboards) read.

One `Outcome` is one point::

    <metric>,<data ID items…>,run=<run> value=<float>,unit="<unit>"[,baseline=<float>]
        [,pass_<level>=<bool>…],regressed=<bool> <time in ns>

- the measurement name is the metric (``validate_drp.AM1``);
- the tags are the data ID's items and the run, sorted by key (InfluxDB's own order, so the
  server does not sort them again), integers written as text;
- the fields are the value (always a float, so the field's type never changes between points),
  the unit, the baseline when there is one, pass/fail per applicable level and ``regressed``;
- the timestamp is the measurement's own time, in nanoseconds.

**Why the explicit timestamp matters.**  InfluxDB identifies a point by its series (measurement
and tag set) and its timestamp: a second write of the same point *replaces* the first rather
than adding one.  The outbox deletes a batch only after the server answered 204, so a process
that dies between the server's acceptance and that delete sends the batch again when it
resumes; because every line carries its time, the re-sent points overwrite themselves and the
server still holds each measurement once.  (A point written without a timestamp would get the
server's clock and be stored twice.)  The same holds for the store's replacement of a
measurement: it reaches InfluxDB as the same point only if the replacement keeps its time.

**Escaping**, as InfluxDB 1.6 parses it (checked against the server by the tests): in the
measurement name commas, spaces, equals signs and double quotes are escaped with a backslash;
in tag keys, tag values and field keys commas, spaces and equals signs; in string field values
double quotes and backslashes.  A few strings cannot be written at all — a newline or a NUL outside
a string field, a backslash at the end of a key or tag value (it would escape the separator after
it) or anywhere in a measurement name (1.6 does not read it back as written), a measurement
starting with ``#`` (a comment line) or with white space (trimmed), an empty name — and raise `LineProtocolError` naming the measurement and what is wrong.  An empty
tag value is left out: InfluxDB treats a tag with no value as absent.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from functools import lru_cache

from ._outcome import Outcome
from ._problems import VerifyError

__all__ = ["RESERVED_FIELDS", "LineProtocolError", "encode_outcome", "encode_outcomes", "timestamp_ns"]

RESERVED_FIELDS = ("value", "unit", "baseline", "regressed")
"""Field keys every point may carry (besides ``pass_<level>``); a data ID may not use them as dimensions."""


class LineProtocolError(VerifyError, ValueError):
    """A measurement that InfluxDB's line protocol cannot carry as it is."""


def timestamp_ns(seconds: float) -> int:
    """A measurement's time (seconds since the epoch) as the integer nanoseconds of its point.

    Deterministic for a given float, which is what makes a re-sent point overwrite itself.
    """
    return round(seconds * 1_000_000_000)


def _check(text: str, what: str) -> None:
    if not text:
        raise LineProtocolError(f"the {what} is empty; InfluxDB needs a non-empty one")
    if "\n" in text:
        raise LineProtocolError(f"the {what} {text!r} contains a newline, which ends a line-protocol line")
    if "\x00" in text:
        raise LineProtocolError(
            f"the {what} {text!r} contains a NUL character, which InfluxDB skips as white space"
        )
    if text.endswith("\\"):
        raise LineProtocolError(
            f"the {what} {text!r} ends with a backslash, which would escape the separator after it"
        )


@lru_cache(maxsize=65536)
def escape_measurement(name: str) -> str:
    """``name`` as the measurement of a line (commas, spaces, equals signs and quotes escaped)."""
    _check(name, "measurement name")
    if "\\" in name:
        raise LineProtocolError(
            f"the measurement name {name!r} contains a backslash, which InfluxDB 1.x does not read back "
            "as written in a measurement name"
        )
    if name[0] == "#" or name[0].isspace():
        raise LineProtocolError(
            f"the measurement name {name!r} starts with {name[0]!r}: InfluxDB reads a line starting "
            "with '#' as a comment and trims leading white space"
        )
    return name.replace(",", "\\,").replace(" ", "\\ ").replace("=", "\\=").replace('"', '\\"')


@lru_cache(maxsize=65536)
def escape_key(text: str, what: str = "tag key") -> str:
    """``text`` as a tag key, tag value or field key (commas, spaces and equals signs escaped)."""
    _check(text, what)
    return text.replace(",", "\\,").replace(" ", "\\ ").replace("=", "\\=")


def escape_string_field(text: str) -> str:
    """``text`` as a double-quoted string field value (backslashes and quotes escaped)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _float(value: float, what: str) -> str:
    number = float(value)
    if not math.isfinite(number):
        raise LineProtocolError(f"the {what} is {number}; InfluxDB stores finite numbers only")
    return repr(number)


@lru_cache(maxsize=65536)
def _tag_section(items: tuple[tuple[str, object], ...], run: str) -> str:
    """``,k=v…`` for a data ID's items and the run, sorted, escaped (cached: data IDs repeat across metrics)."""
    # A tag with an empty value is no tag to InfluxDB: such items are left out before any check.
    tags: dict[str, str] = {str(k): str(v) for k, v in items if str(v) != ""}
    if "run" in tags:
        raise LineProtocolError("the data ID has a dimension named 'run', the tag of the run")
    if run:
        tags["run"] = run
    parts = []
    for key in sorted(tags):
        if key == "time" or key in RESERVED_FIELDS or key.startswith("pass_"):
            raise LineProtocolError(
                f"the data ID's dimension {key!r} has the name of a field or of the time column"
            )
        parts.append(f",{escape_key(key)}={escape_key(tags[key], f'value of tag {key!r}')}")
    return "".join(parts)


@lru_cache(maxsize=4096)
def _unit_field(unit: str) -> str:
    return f",unit={escape_string_field(unit)}"


_LEVEL_FIELDS = {True: "=true", False: "=false"}


def encode_outcome(outcome: Outcome) -> str:
    """One `Outcome` as one line of line protocol (no trailing newline).

    Raises `LineProtocolError` (naming the metric and data ID) for what InfluxDB cannot carry.
    """
    try:
        head = escape_measurement(outcome.metric) + _tag_section(tuple(outcome.data_id.items()), outcome.run)
        fields = f"value={_float(outcome.value, 'value')}{_unit_field(outcome.unit)}"
        if outcome.baseline is not None:
            fields += f",baseline={_float(outcome.baseline, 'baseline')}"
        levels = outcome.levels
        for level in sorted(levels):
            fields += f",{escape_key('pass_' + level, 'level')}{_LEVEL_FIELDS[bool(levels[level])]}"
        fields += ",regressed=true" if outcome.regressed else ",regressed=false"
        if not math.isfinite(outcome.time):
            raise LineProtocolError(f"the time is {outcome.time}")
    except LineProtocolError as exc:
        raise LineProtocolError(
            f"Cannot forward the measurement of {outcome.metric!r} for {dict(outcome.data_id)} in run "
            f"{outcome.run!r} to InfluxDB: {exc}"
        ) from None
    return f"{head} {fields} {timestamp_ns(outcome.time)}"


def encode_outcomes(outcomes: Iterable[Outcome]) -> Iterator[str]:
    """`encode_outcome` over many (lazily, so a caller can stream them into the outbox)."""
    for outcome in outcomes:
        yield encode_outcome(outcome)
