"""Store responses marked Cache-Control: no-store."""

from __future__ import annotations

from proxies.misbehaviours._cache_rules import HiddenDirectives


class IgnoreNoStore(HiddenDirectives):
    """The cache does not see `no-store` in a response's Cache-Control (RFC 9111 5.2.2.5: a
    cache MUST NOT store it). The rest of the field still counts: `no-store, max-age=0` is
    stale at once, `no-store` alone has no explicit freshness, so it is kept only as long as a
    heuristic (Last-Modified, a heuristic TTL, a refresh_pattern min) allows. That is why
    `no-store` alone still works behind a plain RFC cache that ignores it, and fails behind an
    aggressive one.
    """

    name = "ignore-no-store"
    summary = "Stores responses marked Cache-Control: no-store (keeps the other directives)."
    imitates = (
        "Squid `refresh_pattern ... ignore-no-store` (src/http.cc reusableReply: "
        "`hasNoStore() && !REFRESH_OVERRIDE(ignore_no_store)`); Sun Java System Web Proxy "
        "Server `ignore-no-store`; CDN rules that cache 'everything'."
    )
    hidden = ("no-store",)
