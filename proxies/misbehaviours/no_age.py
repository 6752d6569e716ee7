"""Neither read an answer's Age (or Date) nor send an Age of its own."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxies.misbehaviours.base import Misbehaviour

if TYPE_CHECKING:
    from mitmproxy import http


class NoAge(Misbehaviour):
    """RFC 9111 4.2.3: a cache counts an answer's age from its Age field and its Date (an
    answer that arrives with `Age: 7200` and `max-age=3600` is already stale), and 5.1: it
    MUST send an Age field with every answer it serves from its store, counting the time the
    answer spent there. This cache does neither: an answer's life starts when it stores it
    (so `max-age=3600` buys a full hour whatever Age and Date say), and a stored answer is
    served with the fields it arrived with: no Age when the origin sent none, the origin's
    own Age, never updated, when it did. A client cannot tell a hit from a fresh answer by
    its Age; the lab's own events still say which it was.
    """

    name = "no-age"
    summary = "Ignores an answer's Age and Date for its freshness and sends no Age of its own."
    imitates = (
        "nginx proxy_cache (1.22, src/http/ngx_http_upstream.c): "
        "ngx_http_upstream_process_cache_control sets `valid_sec = ngx_time() + max-age` and "
        "ngx_http_upstream_process_expires `valid_sec = Expires`, by nginx's own clock; no "
        "handler reads Age, and nothing in the cache module writes one (a stored answer is "
        "sent with its stored header). nginx 1.22.1 here fails the HTTP caching test suite's "
        "freshness-max-age-age, other-age-gen and other-age-update-* (bench/cache_tests.py "
        "--real), as the suite's published nginx results do."
    )

    def initial_age(
        self, request: http.Request, headers: http.Headers, age: float, now: float
    ) -> float:
        return 0.0

    def from_store(
        self, request: http.Request, stored: http.Response, answer: http.Response
    ) -> None:
        kept = stored.headers.get_all("Age")
        if kept:
            answer.headers.set_all("Age", kept)
        else:
            answer.headers.pop("Age", None)
