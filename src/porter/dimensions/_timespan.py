"""Times and timespans.

porter keeps every time as an integer number of nanoseconds since
1970-01-01T00:00:00 TAI.  TAI has no leap seconds, so that integer is exact,
orders correctly in SQL, and converts to and from ISO strings with plain
calendar arithmetic.  Users see `astropy.time.Time` objects in the TAI scale;
they are made lazily because constructing them is far slower than the integer
arithmetic the registry does in bulk.

astropy itself is imported on first use too (`astropy_time`): it costs ~0.2 s,
which opening a repository and listing its collections need not pay.  An
object can only be an astropy time once ``astropy.time`` is imported, so
`is_astropy_time` answers without importing it.
"""

from __future__ import annotations

import datetime
import functools
import re
import sys
import time
import warnings
from typing import TYPE_CHECKING, Any, TypeGuard

if TYPE_CHECKING:
    import astropy.time

__all__ = [
    "MAX_NSEC",
    "MIN_NSEC",
    "Timespan",
    "astropy_time",
    "is_astropy_time",
    "iso_from_tai_nsec",
    "tai_now_nsec",
    "tai_nsec_from_datetime",
    "tai_nsec_from_iso",
    "tai_nsec_from_time",
    "time_from_tai_nsec",
]

NSEC_PER_DAY = 86_400_000_000_000
_UNIX_EPOCH_JD = 2440587.5
_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()

MIN_NSEC = -(2**63) + 1
"""Stored value of an unbounded timespan begin (sorts before every time)."""

MAX_NSEC = 2**63 - 1
"""Stored value of an unbounded timespan end (sorts after every time)."""

_ISO_RE = re.compile(
    r"^\s*(?P<y>\d{4})-(?P<mo>\d{1,2})-(?P<d>\d{1,2})"
    r"(?:[ T](?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:\.(?P<f>\d*))?)?)?\s*$"
)


@functools.cache
def astropy_time() -> type[astropy.time.Time]:
    """The class ``astropy.time.Time``, importing astropy the first time it is asked for."""
    import astropy.time

    return astropy.time.Time


def is_astropy_time(value: object) -> TypeGuard[astropy.time.Time]:
    """True if ``value`` is an astropy time; never imports astropy (no time exists before it is)."""
    module = sys.modules.get("astropy.time")
    return module is not None and isinstance(value, module.Time)


def tai_nsec_from_iso(text: str) -> int:
    """Convert an ISO date-time string, read as TAI, to integer nanoseconds.

    Exact to the nanosecond; digits beyond nanoseconds are rounded.
    """
    m = _ISO_RE.match(text)
    if m is None:
        raise ValueError(f"Time string {text!r} is not an ISO date-time (YYYY-MM-DD[ HH:MM[:SS[.fff]]]).")
    days = datetime.date(int(m["y"]), int(m["mo"]), int(m["d"])).toordinal() - _EPOCH_ORDINAL
    seconds = int(m["h"] or 0) * 3600 + int(m["mi"] or 0) * 60 + int(m["s"] or 0)
    frac = m["f"] or ""
    if len(frac) > 9:
        nsec_frac = round(int(frac) / 10 ** (len(frac) - 9))
    else:
        nsec_frac = int(frac.ljust(9, "0")) if frac else 0
    return days * NSEC_PER_DAY + seconds * 1_000_000_000 + nsec_frac


def iso_from_tai_nsec(nsec: int) -> str:
    """Format integer TAI nanoseconds as ``YYYY-MM-DD HH:MM:SS.fffffffff``."""
    days, rem = divmod(nsec, NSEC_PER_DAY)
    date = datetime.date.fromordinal(days + _EPOCH_ORDINAL)
    seconds, frac = divmod(rem, 1_000_000_000)
    h, rest = divmod(seconds, 3600)
    mi, s = divmod(rest, 60)
    return f"{date.isoformat()} {h:02d}:{mi:02d}:{s:02d}.{frac:09d}"


def tai_nsec_from_time(time: astropy.time.Time) -> int:
    """Convert an astropy Time (any scale) to integer TAI nanoseconds."""
    if time.scale != "tai":
        from astropy.utils.exceptions import AstropyWarning  # loaded with the time given

        with warnings.catch_warnings():
            # Dates past the leap-second table are converted with a warning
            # astropy repeats per call; the conversion is still the best known.
            warnings.simplefilter("ignore", AstropyWarning)
            time = time.tai
    jd1 = float(time.jd1)
    jd2 = float(time.jd2)
    # jd1 is integral or half-integral after astropy's normalisation, so twice
    # the day offset is an exact integer; jd2 carries the fraction of a day.
    half_days = round((jd1 - _UNIX_EPOCH_JD) * 2)
    return half_days * (NSEC_PER_DAY // 2) + round(jd2 * NSEC_PER_DAY)


def tai_nsec_from_datetime(value: datetime.datetime) -> int:
    """Convert a `datetime.datetime` to integer TAI nanoseconds; a naive one is UTC, as in daf_butler."""
    return tai_nsec_from_time(astropy_time()(value, scale="utc"))


def tai_now_nsec() -> int:
    """The current time as TAI nanoseconds (UTC clock plus the current leap-second offset)."""
    now = time.time_ns()
    return now + _tai_minus_utc_nsec(now // NSEC_PER_DAY)


@functools.lru_cache(maxsize=4)
def _tai_minus_utc_nsec(unix_day: int) -> int:
    """TAI - UTC on a UTC day (leap seconds change only between days): erfa's table look-up
    costs ~0.2 ms, which every put paid for its ingest date."""
    import erfa

    utc = datetime.date(1970, 1, 1) + datetime.timedelta(days=unix_day)
    return round(erfa.dat(utc.year, utc.month, utc.day, 0.5) * 1e9)


def time_from_tai_nsec(nsec: int) -> astropy.time.Time:
    """Convert integer TAI nanoseconds to an astropy Time in the TAI scale."""
    days, rem = divmod(nsec, NSEC_PER_DAY)
    return astropy_time()(_UNIX_EPOCH_JD + days, rem / NSEC_PER_DAY, format="jd", scale="tai", precision=9)


def _to_nsec(value: Any, unbounded: int) -> int:
    if value is None:
        return unbounded
    if is_astropy_time(value):
        return tai_nsec_from_time(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return tai_nsec_from_iso(value)
    if isinstance(value, datetime.datetime):
        return tai_nsec_from_datetime(value)
    raise TypeError(f"Cannot use {value!r} ({type(value).__name__}) as a time; use astropy.time.Time.")


class Timespan:
    """A half-open interval of time ``[begin, end)``, either end unbounded.

    Parameters
    ----------
    begin, end : `astropy.time.Time` or `None`
        The bounds; `None` means unbounded.  Integers are taken as TAI
        nanoseconds and strings as TAI ISO date-times.
    """

    __slots__ = ("_begin", "_end")

    def __init__(self, begin: Any, end: Any):
        self._begin = _to_nsec(begin, MIN_NSEC)
        self._end = _to_nsec(end, MAX_NSEC)

    @classmethod
    def from_nsec(cls, begin: int, end: int) -> Timespan:
        """Make a timespan from stored integer TAI nanoseconds."""
        self = object.__new__(cls)
        self._begin = begin
        self._end = end
        return self

    @classmethod
    def make_empty(cls) -> Timespan:
        """Return a timespan that overlaps nothing."""
        return cls.from_nsec(0, 0)

    @classmethod
    def from_day_obs(cls, day_obs: int, offset_seconds: int = 0) -> Timespan:
        """Return the 24 h span of an observing day ``YYYYMMDD``, shifted by ``offset_seconds``."""
        date = datetime.date(day_obs // 10000, (day_obs // 100) % 100, day_obs % 100)
        begin = (date.toordinal() - _EPOCH_ORDINAL) * NSEC_PER_DAY + offset_seconds * 1_000_000_000
        return cls.from_nsec(begin, begin + NSEC_PER_DAY)

    @property
    def nsec(self) -> tuple[int, int]:
        """The stored bounds as TAI nanoseconds (unbounded ends are sentinels)."""
        return (self._begin, self._end)

    @property
    def begin(self) -> astropy.time.Time | None:
        """The inclusive lower bound, or `None` if unbounded."""
        return None if self._begin == MIN_NSEC else time_from_tai_nsec(self._begin)

    @property
    def end(self) -> astropy.time.Time | None:
        """The exclusive upper bound, or `None` if unbounded."""
        return None if self._end == MAX_NSEC else time_from_tai_nsec(self._end)

    def is_empty(self) -> bool:
        """True if the timespan contains no time at all."""
        return self._begin >= self._end

    def overlaps(self, other: Timespan | astropy.time.Time) -> bool:
        """True if the two timespans share any time (or the time is inside)."""
        if isinstance(other, Timespan):
            return (
                not self.is_empty()
                and not other.is_empty()
                and self._begin < other._end
                and other._begin < self._end
            )
        t = tai_nsec_from_time(other)
        return self._begin <= t < self._end

    def contains(self, other: Timespan | astropy.time.Time) -> bool:
        """True if ``other`` lies entirely inside this timespan."""
        if isinstance(other, Timespan):
            return other.is_empty() or (self._begin <= other._begin and other._end <= self._end)
        return self.overlaps(other)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Timespan):
            return NotImplemented
        if self.is_empty() and other.is_empty():
            return True
        return self._begin == other._begin and self._end == other._end

    def __hash__(self) -> int:
        return hash((0, 0) if self.is_empty() else (self._begin, self._end))

    def __str__(self) -> str:
        if self.is_empty():
            return "(empty)"
        b = "-∞" if self._begin == MIN_NSEC else iso_from_tai_nsec(self._begin)
        e = "∞" if self._end == MAX_NSEC else iso_from_tai_nsec(self._end)
        return f"[{b}, {e}) TAI"

    def __repr__(self) -> str:
        b = "None" if self._begin == MIN_NSEC else repr(iso_from_tai_nsec(self._begin))
        e = "None" if self._end == MAX_NSEC else repr(iso_from_tai_nsec(self._end))
        return f"Timespan({b}, {e})"
