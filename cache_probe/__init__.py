"""A cache probe for your own app: mount one middleware, and `lab probe URL` (run by a user
behind the network you suspect) can tell whether a cache on the path freezes your status
answers, and which of the lab's fixes gets through it. Nothing here imports the lab."""

from cache_probe.asgi import ASGIProbeMiddleware
from cache_probe.core import DEFAULT_PATH, Probe, ProbeTable
from cache_probe.wsgi import ProbeMiddleware

__all__ = ["DEFAULT_PATH", "ASGIProbeMiddleware", "Probe", "ProbeMiddleware", "ProbeTable"]
