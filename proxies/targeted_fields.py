"""Targeted cache-control fields (RFC 9213): `CDN-Cache-Control` gives a CDN, and any reverse
proxy the origin's operator runs, its own caching policy, while `Cache-Control` keeps speaking
to the browsers and forward proxies downstream.

RFC 9213 section 2.2: a cache whose target list names a field that the response carries with a
valid, non-empty value uses that field's directives and ignores the response's Cache-Control
and Expires; an invalid one (not a Structured Fields dictionary, RFC 8941 3.2) is ignored. A
forward proxy is no CDN: only a reverse-mode listener has a target list (the cache option
`cache_targeted_fields`, e.g. ["CDN-Cache-Control"]; a product's own field, such as
`Akamai-Cache-Control`, would come first). The field is passed on unchanged (downstream CDNs may
need it).
"""

from __future__ import annotations

import re

from mitmproxy import http
from mitmproxy.proxy.mode_specs import ReverseMode

from proxies.cache_policy import FieldView

# RFC 8941 3.2: key = lcalpha / "*" then lcalpha, digits, "_-.*"; a bare item (integer,
# decimal, string, token, byte sequence, boolean); parameters likewise.
_KEY = r"[a-z*][a-z0-9_.*-]*"
_ITEM = "|".join(
    (
        r"-?\d{1,15}(?:\.\d{1,3})?",  # integer or decimal
        r'"(?:[^"\\\x00-\x1f\x7f]|\\["\\])*"',  # string
        r"[A-Za-z*][!#$%&'*+\-.^_`|~:/\w]*",  # token
        r":[A-Za-z0-9+/=]*:",  # byte sequence
        r"\?[01]",  # boolean
    )
)
_ITEM = f"(?:{_ITEM})"
_PARAMS = rf"(?:;[ ]*{_KEY}(?:={_ITEM})?)*"
_MEMBER = re.compile(rf"{_KEY}(?:={_ITEM})?{_PARAMS}")


def targets_for(flow: http.HTTPFlow, configured: tuple[str, ...]) -> tuple[str, ...]:
    """The target list of the listener the flow came in on: the configured one (the option
    cache_targeted_fields) in reverse mode, none in forward mode."""
    return configured if isinstance(flow.client_conn.proxy_mode, ReverseMode) else ()


def is_dictionary(value: str) -> bool:
    """A valid, non-empty Structured Fields dictionary (members split on commas outside
    strings is enough for cache directives)."""
    members = [m.strip(" \t") for m in re.split(r',(?=(?:[^"]*"[^"]*")*[^"]*$)', value)]
    return bool(value.strip()) and all(_MEMBER.fullmatch(m) for m in members)


def policy_fields(seen: FieldView, targets: tuple[str, ...]) -> FieldView:
    """The fields the caching rules read: the first valid targeted field in place of
    Cache-Control, and no Expires; the response's own when none applies."""
    for name in targets:
        value = seen.get(name)
        if value is not None and is_dictionary(value):
            ignored = {"cache-control", "expires"}
            kept = [(key, seen[key]) for key in seen if key not in ignored]
            return FieldView([*kept, ("cache-control", value)])
    return seen
