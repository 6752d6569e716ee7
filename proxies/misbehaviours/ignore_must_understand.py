"""Store an answer with must-understand whatever its status code."""

from __future__ import annotations

from proxies.misbehaviours._cache_rules import HiddenDirectives


class IgnoreMustUnderstand(HiddenDirectives):
    """RFC 9111 5.2.2.3: `must-understand` tells a cache to store the answer only if it knows
    the caching rules of its status code (so `599` with `max-age=3600, must-understand` is not
    stored by a cache that has never heard of 599). This cache does not know the directive: the
    answer is stored by its other directives, whatever its status.
    """

    name = "ignore-must-understand"
    summary = "Does not know Cache-Control: must-understand; stores any status with max-age."
    imitates = (
        "nginx proxy_cache (1.22): ngx_http_upstream_process_cache_control "
        "(src/http/ngx_http_upstream.c) looks only for no-cache, no-store, private, max-age, "
        "s-maxage, stale-while-revalidate and stale-if-error, and caches any status with a "
        "max-age; nginx 1.22.1 here fails the HTTP caching test suite's "
        "status-599-must-understand (bench/cache_tests.py --real)."
    )
    hidden = ("must-understand",)
