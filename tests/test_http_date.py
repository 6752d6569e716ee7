"""The strict HTTP-date parser (RFC 9110 5.6.7): the three formats a recipient must accept,
and the invalid forms werkzeug's parser accepts, each as the HTTP caching test suite sends it."""

import pytest
from werkzeug.http import http_date

from proxies.http_date import parse_http_date

SUNDAY = 784_111_777.0  # Sun, 06 Nov 1994 08:49:37 GMT


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT",  # rfc850-date
        "Sun Nov  6 08:49:37 1994",  # asctime-date
        " Sun, 06 Nov 1994 08:49:37 GMT ",  # whitespace around a field value is not part of it
    ],
)
def test_the_three_formats(value: str):
    assert parse_http_date(value) == SUNDAY


def test_what_werkzeug_writes_reads_back():
    assert parse_http_date(http_date(1_700_000_000)) == 1_700_000_000


def test_an_rfc850_year_more_than_50_years_ahead_is_in_the_past():
    in_2026 = parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT", now=1_796_000_000)
    assert in_2026 == SUNDAY  # 2094 would be 68 years ahead: 1994
    assert parse_http_date("Thursday, 18-Aug-50 02:01:18 GMT", now=1_796_000_000) == 2_544_400_878


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "0",
        "-1",
        "Thu, 18 Aug 2050 02:01:18 UTC",
        "Thu, 18 Aug 2050 02:01:18 AEST",
        "Thu, 18 Aug 2050 02:01:18 +0000",
        "Thu, 18 Aug 50 02:01:18 GMT",  # 2-digit year in the preferred format
        "Thu 18 Aug 2050 02:01:18 GMT",  # no comma
        "Thu, 18  Aug  2050 02:01:18 GMT",
        "Thu, 18-Aug-2050 02:01:18 GMT",
        "Thu, 18 Aug 2050 02.01.18 GMT",
        "Thu, 18 Aug 2050 2:01:18 GMT",
        "THU, 18 Aug 2050 02:01:18 GMT",  # names are case-sensitive
        "Thu, 18 AUG 2050 02:01:18 GMT",
        "Thu, 18 Aug 2050 02:01:18 gMT",
        "Thu, 18 Aug 2050 02:01:18 GMT, Thu, 18 Aug 2050 02:01:19 GMT",  # two Expires lines
        "Thu, 31 Feb 2050 02:01:18 GMT",
    ],
)
def test_invalid_dates_are_none(value: str | None):
    assert parse_http_date(value) is None
