"""Store responses marked Cache-Control: private in a shared cache."""

from __future__ import annotations

from proxies.misbehaviours._cache_rules import HiddenDirectives


class IgnorePrivate(HiddenDirectives):
    """The cache does not see `private` in a response's Cache-Control (RFC 9111 5.2.2.7: a
    shared cache MUST NOT store it), so one user's answer can be served to another. The other
    directives still count; freshness comes from max-age or a heuristic.

    Note: current Squid's own ignore-private is milder than this: a response stored because of
    ignore-private is flagged ENTRY_REVALIDATE_ALWAYS and revalidated on every hit (src/http.cc
    haveParsedReplyHeaders: "For security reasons we do so even if storage was caused by
    refresh_pattern ignore-* option"); the squid-refresh-pattern misbehaviour imitates that.
    This one is the CDN/VCL kind that serves the copy as is.
    """

    name = "ignore-private"
    summary = "A shared cache that stores and serves responses marked Cache-Control: private."
    imitates = (
        "A Varnish VCL that returns (deliver) from vcl_backend_response before the builtin "
        'check `beresp.http.Cache-Control ~ "(?i:no-cache|no-store|private)"` (builtin.vcl); '
        "Google Cloud CDN FORCE_CACHE_ALL ('ignoring any private, no-store or no-cache "
        "directives'); Sun Java System Web Proxy Server `ignore-private`."
    )
    hidden = ("private",)
