"""The cache's memory stays within its bound when 100,000 distinct URLs pass through it.

Drives the SharedCache addon in-process (mitmproxy's test helpers, no network) with the
corporate-cache behaviour (every 200 stored for 300 s) and 100,000 distinct status URLs, and
reports the Python heap the cache holds (tracemalloc) after 1,000, 10,000 and 100,000 URLs,
with its entry and byte counts. Flat figures mean the LRU bound holds.
"""

from __future__ import annotations

import gc
import tracemalloc

from mitmproxy.test import taddons, tflow, tutils

from proxies.shared_cache import SharedCache

MAX_ENTRIES = 1000
CHECKPOINTS = (1_000, 10_000, 100_000)


def main() -> int:
    cache = SharedCache()
    with taddons.context(cache) as tctx:
        tctx.configure(cache, cache_heuristic_ttl=300, cache_max_entries=MAX_ENTRIES)
        body = tutils.tresp(content=b'{"state": "PENDING"}' * 5)
        flow = tflow.tflow(resp=False)
        tracemalloc.start()
        gc.collect()
        baseline = tracemalloc.get_traced_memory()[0]
        figures = []
        for n in range(1, CHECKPOINTS[-1] + 1):
            flow.request.path = f"/tasks/{n}/status"
            flow.response = None
            flow.metadata.clear()
            cache.request(flow)
            flow.response = body
            cache.response(flow)
            if n in CHECKPOINTS:
                gc.collect()
                held = tracemalloc.get_traced_memory()[0] - baseline
                figures.append((n, held, len(cache.entries), cache.store.stored_bytes))
        tracemalloc.stop()
    for n, held, entries, stored in figures:
        print(
            f"after {n:>7,} URLs: {held / 1024:8.0f} KiB held, {entries} entries "
            f"(bound {MAX_ENTRIES}), {stored:,} body bytes"
        )
    growth = figures[-1][1] / figures[1][1]
    ok = all(entries <= MAX_ENTRIES for _, _, entries, _ in figures) and growth < 1.2
    print(f"10,000 -> 100,000 URLs: memory x{growth:.2f} ({'bounded' if ok else 'GROWS'})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
