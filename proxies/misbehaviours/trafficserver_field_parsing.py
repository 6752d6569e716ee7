"""How Traffic Server reads Cache-Control numbers, Age and Vary."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from werkzeug.http import parse_date, parse_list_header

from proxies.misbehaviours.base import Misbehaviour

if TYPE_CHECKING:
    from mitmproxy import http

# The Cache-Control directives whose argument mime_hdr_cooked_stuff_set reads as a number.
NUMERIC_DIRECTIVES = frozenset({"max-age", "s-maxage", "max-stale", "min-fresh"})
# ParseRules::is_token: the directive's name ends at the first character not in a token.
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]*")


class TrafficserverFieldParsing(Misbehaviour):
    """RFC 9111 1.2.2 and 5.2 ask for a delta-seconds argument made of digits only (a cache
    that cannot parse one treats the answer as stale), 5.1 for an Age that is a non-negative
    integer (anything else ignored), and RFC 9110 5.3 for several Vary lines to be read as one
    list. Traffic Server 9.2 reads them its own way:
    - a numeric Cache-Control directive (max-age, s-maxage, max-stale, min-fresh) goes through
      mime_parse_integer, which skips every character that is neither a digit nor '-' before
      the number: `max-age='3600'` is max-age 3600;
    - Age is the first Age line read by mime_parse_int64: its leading digits, so `7200.0`
      and `7200;foo=bar` are 7200, `abc` is 0, a negative value is 0 (MIMEHdr::get_age);
    - Vary is the first Vary line only (value_get_comma_list finds the first field): an empty
      first line makes the answer vary on nothing, whatever a second `Vary: *` says.
    """

    name = "trafficserver-field-parsing"
    summary = "Reads max-age's digits wherever they are, Age's leading digits, the first Vary."
    imitates = (
        "Apache Traffic Server 9.2 (proxy/hdrs/MIME.cc mime_hdr_cooked_stuff_set and "
        "mime_parse_integer, mime_parse_int64; proxy/hdrs/MIME.h MIMEHdr::get_age; "
        "proxy/http/HttpTransactCache.cc CalcVariability with value_get_comma_list)."
    )

    def visible_headers(
        self, request: http.Request, response: http.Response, headers: http.Headers
    ) -> http.Headers:
        headers = cooked_cache_control(headers)
        vary = headers.get_all("Vary")
        if len(vary) > 1:
            headers.set_all("Vary", vary[:1])
        return headers

    def initial_age(
        self, request: http.Request, headers: http.Headers, age: float, now: float
    ) -> float:
        lines = headers.get_all("Age")
        if not lines:
            return age
        own = max(0, _parse_int64(lines[0]))
        date = parse_date(headers.get("Date", ""))
        apparent = max(0.0, now - date.timestamp()) if date is not None else 0.0
        return max(apparent, float(own))


def cooked_cache_control(headers: http.Headers) -> http.Headers:
    """`headers` (edited in place) with each numeric Cache-Control directive written as the
    number Traffic Server reads from it."""
    if "Cache-Control" in headers:
        elements = parse_list_header(", ".join(headers.get_all("Cache-Control")))
        headers["Cache-Control"] = ", ".join(_cooked(element) for element in elements)
    return headers


def _cooked(element: str) -> str:
    """The element as Traffic Server understands it: a numeric directive with its number."""
    name = TOKEN.match(element).group(0)  # type: ignore[union-attr]
    if name.lower() not in NUMERIC_DIRECTIVES or re.fullmatch(r"=\d+", element[len(name) :]):
        return element
    number = _parse_integer(element[len(name) :])
    # A directive whose number cannot be read keeps its mask and the value 0.
    return f"{name.lower()}={0 if number is None else number}"


def _parse_integer(text: str) -> int | None:
    """mime_parse_integer: skip to the first digit or '-', then read a signed integer."""
    start = re.search(r"[-0-9]", text)
    if start is None:
        return None
    sign, digits = re.match(r"(-?)(\d*)", text[start.start() :]).groups()  # type: ignore[union-attr]
    number = int(digits or 0)
    return -number if sign else number


def _parse_int64(text: str) -> int:
    """mime_parse_int64: leading blanks, an optional '-', then digits; 0 without them."""
    match = re.match(r"\s*(-?)(\d*)", text)
    if match is None or not match.group(2):
        return 0
    return -int(match.group(2)) if match.group(1) else int(match.group(2))
