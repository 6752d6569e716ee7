"""A strict HTTP-date parser (RFC 9110 section 5.6.7).

werkzeug's `parse_date` (email.utils underneath) accepts what RFC 9110 calls invalid: a
2-digit year in the preferred format, no comma, `UTC` or `+1000` for GMT, dotted times,
1-digit hours. For Expires that matters: RFC 9111 section 5.3 says an invalid Expires means
"already expired", so a lenient parser turns an expired response into a fresh one.

Accepted, exactly as the grammar says (names are case-sensitive, RFC 9110 5.6.7):
    IMF-fixdate   Sun, 06 Nov 1994 08:49:37 GMT   (the preferred format)
    rfc850-date   Sunday, 06-Nov-94 08:49:37 GMT  (obsolete; a recipient MUST accept it)
    asctime-date  Sun Nov  6 08:49:37 1994        (obsolete; a recipient MUST accept it)
Anything else, a second value folded in (`date1, date2`) included, is None.
"""

from __future__ import annotations

import re
from calendar import timegm
from datetime import UTC, datetime

_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_DAY_L = r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH = f"(?P<month>{'|'.join(MONTHS)})"
_TIME = r"(?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2})"
_FORMATS = (
    re.compile(rf"{_DAY}, (?P<day>\d{{2}}) {_MONTH} (?P<year>\d{{4}}) {_TIME} GMT"),
    re.compile(rf"{_DAY_L}, (?P<day>\d{{2}})-{_MONTH}-(?P<yy>\d{{2}}) {_TIME} GMT"),
    re.compile(rf"{_DAY} {_MONTH} (?P<day>[ \d]\d) {_TIME} (?P<year>\d{{4}})"),
)


def parse_http_date(value: str | None, *, now: float | None = None) -> float | None:
    """The timestamp of a valid HTTP-date; None when missing or invalid. `now` places an
    rfc850-date's 2-digit year (default: the current time)."""
    if not value:
        return None
    value = value.strip(" \t")  # optional whitespace around a field value is not part of it
    for form in _FORMATS:
        found = form.fullmatch(value)
        if found is None:
            continue
        fields = found.groupdict()
        year = _full_year(int(fields["yy"]), now) if "yy" in fields else int(fields["year"])
        second = min(int(fields["second"]), 59)  # 60 is a leap second (5.6.7): close enough
        try:
            moment = datetime(
                year,
                MONTHS.index(fields["month"]) + 1,
                int(fields["day"]),
                int(fields["hour"]),
                int(fields["minute"]),
                second,
                tzinfo=UTC,
            )
        except ValueError:  # 31 Feb, hour 25...
            return None
        return float(timegm(moment.utctimetuple()))
    return None


def _full_year(two_digits: int, now: float | None) -> int:
    """RFC 9110 5.6.7: a 2-digit year more than 50 years in the future is the most recent
    past year with the same last two digits."""
    current = (datetime.now(UTC) if now is None else datetime.fromtimestamp(now, UTC)).year
    year = current - current % 100 + two_digits
    return year - 100 if year > current + 50 else year
