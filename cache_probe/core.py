"""The cache probe's answers, whatever the framework: for each of the lab's fix strategies, the
status answer that strategy's server would send, with a body that changes on every request that
reaches the app (a per-probe counter and the server's time). A cache on the path shows itself
when the counter stops moving.

Only the catalogue's fixed header sets are ever sent (sample_app/strategies.json): nothing of
the request is reflected in an answer but the probe id, and that only after it has matched a
strict pattern. Memory is bounded: at most `max_probes` counters, each forgotten `ttl_s` after
its last use.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate

from sample_app import strategies

DEFAULT_PATH = "/_cache-probe"
PROBE_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
NONCE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_PROBES = 1000
TTL_S = 600.0
JSON = "application/json"
NO_STORE = ("Cache-Control", "no-store")
VERSION = 1

Answer = tuple[int, list[tuple[str, str]], bytes]


@dataclass(frozen=True)
class ProbeStrategy:
    """What one fix strategy's server sends on a status answer."""

    name: str
    headers: tuple[tuple[str, str], ...]
    etag: bool
    last_modified_age_s: int | None


def probe_strategies() -> dict[str, ProbeStrategy]:
    """The catalogue's strategies that answer status polls (not the event stream)."""
    book = strategies.load()
    return {
        name: ProbeStrategy(
            name,
            tuple(strategy.response_headers.items()),
            strategy.etag,
            strategy.last_modified_age_s,
        )
        for name, strategy in book.strategies.items()
        if strategy.transport == "poll"
    }


class ProbeTable:
    """Per-probe counters of requests that reached the app, bounded and expiring."""

    def __init__(
        self,
        max_probes: int = MAX_PROBES,
        ttl_s: float = TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_probes = max_probes
        self.ttl_s = ttl_s
        self.clock = clock
        self._counts: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._lock = threading.Lock()

    def hit(self, probe_id: str) -> int:
        with self._lock:
            now = self.clock()
            while self._counts:  # the oldest first: expired ones go
                oldest, (_, seen) = next(iter(self._counts.items()))
                if now - seen <= self.ttl_s:
                    break
                del self._counts[oldest]
            count = self._counts.pop(probe_id, (0, now))[0] + 1
            self._counts[probe_id] = (count, now)
            while len(self._counts) > self.max_probes:
                self._counts.popitem(last=False)
            return count

    def __len__(self) -> int:
        return len(self._counts)


class Probe:
    """Answers requests under `path`: `path/` (the index, no-store) and
    `path/<strategy>/<probe id>[/<nonce>]` (GET or POST; a query string is ignored)."""

    def __init__(self, path: str = DEFAULT_PATH, table: ProbeTable | None = None) -> None:
        if not path.startswith("/") or path.endswith("/") or len(path) < 2:
            raise ValueError(f"probe path {path!r}: must start with / and not end with one")
        self.path = path
        self.table = table or ProbeTable()
        self.strategies = probe_strategies()

    def handles(self, path: str) -> bool:
        return path == self.path or path.startswith(self.path + "/")

    def answer(self, method: str, path: str, if_none_match: str | None = None) -> Answer:
        rest = path[len(self.path) :].strip("/")
        if not rest:
            if method not in ("GET", "HEAD"):
                return self._error(405, "the index answers GET")
            return self._json(200, self._index(), [NO_STORE])
        parts = rest.split("/")
        if method not in ("GET", "HEAD", "POST"):
            return self._error(405, "a probe answers GET and POST")
        if len(parts) not in (2, 3):
            return self._error(404, "not a probe path: <strategy>/<probe id>[/<nonce>]")
        name, probe_id = parts[0], parts[1]
        strategy = self.strategies.get(name)
        if strategy is None:
            return self._error(400, "unknown strategy (the index lists them)")
        if not PROBE_ID.match(probe_id) or (len(parts) == 3 and not NONCE.match(parts[2])):
            return self._error(400, "a probe id is 8 to 64 of A-Z a-z 0-9 _ -")
        count = self.table.hit(probe_id)
        body = {
            "probe": probe_id,
            "strategy": name,
            "count": count,
            "server_time": round(time.time(), 3),
        }
        headers = list(strategy.headers)
        text = json.dumps(body).encode()
        if strategy.last_modified_age_s is not None:
            when = formatdate(time.time() - strategy.last_modified_age_s, usegmt=True)
            headers.append(("Last-Modified", when))
        if strategy.etag:
            # The count is in the body: every answer from the app is a new version, so a cache
            # that revalidates always gets the new one.
            etag = 'W/"' + hashlib.sha256(text).hexdigest()[:16] + '"'
            headers.append(("ETag", etag))
            if if_none_match and etag in [t.strip() for t in if_none_match.split(",")]:
                return 304, headers, b""
        return self._json(200, body, headers)

    def _index(self) -> dict[str, object]:
        return {
            "probe": "proxy-cache-lab",
            "version": VERSION,
            "strategies": {
                name: {
                    "headers": dict(s.headers),
                    "etag": s.etag,
                    "last_modified_age_s": s.last_modified_age_s,
                }
                for name, s in self.strategies.items()
            },
        }

    def _error(self, status: int, message: str) -> Answer:
        return self._json(status, {"error": message}, [NO_STORE])

    def _json(self, status: int, body: object, headers: list[tuple[str, str]]) -> Answer:
        text = json.dumps(body).encode()
        return status, [("Content-Type", JSON), *headers], text
