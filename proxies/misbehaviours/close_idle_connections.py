"""Close client connections left idle too long: the keep-alive race a client loses."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

from mitmproxy import flow as mflow
from pydantic import Field

from proxies.misbehaviours.base import Misbehaviour, Parameters

if TYPE_CHECKING:
    from mitmproxy import connection, http


class CloseIdleParams(Parameters):
    # A kept-alive client connection idle longer than this is closed by the proxy.
    idle_seconds: Annotated[float, Field(gt=0)]


class CloseIdleConnections(Misbehaviour[CloseIdleParams]):
    """A request that arrives on a kept-alive client connection after it has been idle (no
    request in flight) for longer than `idle_seconds` is killed: the client sees the connection
    closed without an answer, as when its request crosses the proxy's FIN on the wire.

    A real proxy closes the idle connection itself and a client loses the race only when it
    reuses the connection at that moment; here it always loses it, so the outcome is
    deterministic. The first request on a connection is never killed, so a client that retries
    on a new connection gets through. Last activity is kept per client connection
    (`flow.client_conn.id`) on this instance and forgotten once the connection has closed.

    A proxy with an idle timeout keeps its client connections alive in the first place, whatever
    its upstream does: `Connection` is hop-by-hop (RFC 9110 section 7.6.1). mitmproxy instead
    passes the upstream's `Connection: close` (the sample app's werkzeug server sends it on
    every answer) on to the client and closes the client connection after each answer, so no
    connection would ever be reused. `responseheaders` therefore hands the client a copy of the
    answer without that `close` (and in HTTP/1.1); the upstream connection still closes.
    """

    name = "close-idle-connections"
    summary = "Kills a request that arrives on a client connection idle for longer than N s."
    imitates = (
        "Proxies and load balancers that close idle keep-alive client connections: Squid "
        "`client_idle_pconn_timeout` (default 2 min), nginx `keepalive_timeout` (default 75 s), "
        "the AWS ALB idle timeout (default 60 s), corporate proxies with short idle timers."
    )

    def prepare(self) -> None:
        # Injectable so tests can move time without sleeping.
        self.clock: Callable[[], float] = time.monotonic
        # client connection id -> (the connection, end of its last exchange or request start)
        self.last_activity: dict[str, tuple[connection.Client, float]] = {}

    def request(self, flow: http.HTTPFlow) -> None:
        self._forget_closed()
        now = self.clock()
        conn = flow.client_conn
        previous = self.last_activity.get(conn.id)
        if previous is not None and now - previous[1] > self.params.idle_seconds:
            flow.metadata["misbehaviour"] = f"{self.name}: idle {now - previous[1]:.3f} s"
            self.last_activity.pop(conn.id, None)
            if flow.killable:
                flow.kill()
            return None
        self.last_activity[conn.id] = (conn, now)
        return None

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if response is None:
            return
        tokens = [t.strip() for t in response.headers.get("connection", "").split(",")]
        tokens = [t for t in tokens if t]
        kept = [t for t in tokens if t.lower() not in ("close", "keep-alive")]
        if response.http_version != "HTTP/1.0" and kept == tokens:
            return  # nothing tells mitmproxy to close the client connection
        # The client gets a copy: mitmproxy's upstream connection keeps the original response
        # and so still closes when the upstream said so (else it would reuse a closed one).
        copy = response.copy()
        copy.stream = response.stream
        copy.http_version = "HTTP/1.1"
        if kept:
            copy.headers["Connection"] = ", ".join(kept)
        else:
            copy.headers.pop("Connection", None)
        flow.response = copy

    def response(self, flow: http.HTTPFlow) -> None:
        self._touch(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        if flow.error is not None and flow.error.msg == mflow.Error.KILLED_MESSAGE:
            self.last_activity.pop(flow.client_conn.id, None)  # the connection is closed
        else:
            self._touch(flow)

    def _touch(self, flow: http.HTTPFlow) -> None:
        conn = flow.client_conn
        if conn.id in self.last_activity:
            self.last_activity[conn.id] = (conn, self.clock())

    def _forget_closed(self) -> None:
        for conn_id in [i for i, (c, _) in self.last_activity.items() if not c.connected]:
            del self.last_activity[conn_id]
