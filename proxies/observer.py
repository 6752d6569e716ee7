"""mitmproxy addon: machine-readable access log and readiness file for the lab."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

from mitmproxy import ctx, http
from mitmproxy.addonmanager import Loader

from proxies import cache_policy, cache_rule


def write_ready_file(path: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    """Write JSON so that a poller sees either no file or the whole file."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def event_record(flow: http.HTTPFlow, now: float) -> dict[str, Any]:
    """One access-log line; header fields are None when there is no response. When they
    apply, why the cache kept the answer (proxies/cache_rule.py EVENT_FIELDS: `cache_rule`,
    `cache_rule_kind`, `cache_lifetime`, `cache_stored_at`, `cache_hits`, `cache_key_note`,
    `cache_serve_note`) and what a flow misbehaviour did to it (`misbehaviour`)."""
    headers = flow.response.headers if flow.response is not None else {}
    record = {
        "time": now,
        "method": flow.request.method,
        "url": flow.request.url,
        "cache": flow.metadata.get("cache", "BYPASS"),
        "status": flow.response.status_code if flow.response is not None else None,
        "age": cache_policy.age_header(headers),
        "date": headers.get("Date"),
        "cache_control": headers.get("Cache-Control"),
        "via": headers.get("Via"),
        "x_cache": headers.get("X-Cache"),
    }
    metadata = flow.metadata
    for name in cache_rule.EVENT_FIELDS:
        if name in metadata:
            record[name] = metadata[name]
    if "misbehaviour" in metadata:
        record["misbehaviour"] = metadata["misbehaviour"]
    return record


class Observer:
    """Imitates a proxy's access log, in JSON lines a scenario can assert on.

    Real proxies log what they served and whether it came from cache (Squid's
    TCP_HIT/TCP_MISS); this writes the same facts per flow, plus a ready file with
    the actual listening address so a launcher can use ``--listen-port 0``.
    Load it after the cache so it sees the cache outcome.
    """

    def __init__(self, events_path: str = "") -> None:
        self.events_path = events_path  # the observer_events option, or a listener's own file
        self._events: TextIO | None = None

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "observer_events",
            str,
            "",
            "Append one JSON line per finished flow to this file; empty disables.",
        )
        loader.add_option(
            "observer_ready",
            str,
            "",
            "Once listening, atomically write {host, port, pid} as JSON here; empty disables.",
        )

    def configure(self, updated: set[str]) -> None:
        if "observer_events" in updated:
            self._close()  # reopened lazily at the new path
            self.events_path = ctx.options.observer_events

    def running(self) -> None:
        if not ctx.options.observer_ready:
            return
        addrs = ctx.master.addons.get("proxyserver").listen_addrs()
        if not addrs:
            logging.warning("observer: proxy is not listening; no ready file written")
            return
        host, port = addrs[0][:2]
        payload = {"host": host, "port": port, "pid": os.getpid()}
        write_ready_file(ctx.options.observer_ready, payload)

    def response(self, flow: http.HTTPFlow) -> None:
        self._write(event_record(flow, time.time()))

    def error(self, flow: http.HTTPFlow) -> None:
        record = event_record(flow, time.time())
        record["status"] = None
        record["error"] = str(flow.error)
        self._write(record)

    def done(self) -> None:
        self._close()

    def _write(self, record: dict[str, Any]) -> None:
        if not self.events_path:
            return
        if self._events is None:
            self._events = open(self.events_path, "a", encoding="utf-8")  # noqa: SIM115
        self._events.write(json.dumps(record) + "\n")
        # Scenarios read the file while the proxy runs.
        self._events.flush()

    def _close(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None


addons = [Observer()]
