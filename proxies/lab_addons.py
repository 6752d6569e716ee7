"""mitmdump script for the lab: ``mitmdump -s proxies/lab_addons.py --set option=value``.

Order matters: streams are passed through unless a misbehaviour buffers them; misbehaviours run
before the cache (so a flaky or slow proxy is flaky for hits too, and the cache sees rewritten
headers); the observer comes last so it logs the cache outcome and the final response.
"""

from proxies.misbehaving import Misbehaving
from proxies.observer import Observer
from proxies.shared_cache import SharedCache
from proxies.stream_passthrough import StreamPassThrough


def make_addons() -> list[object]:
    """Fresh instances: the lab also loads them in-process to check a profile's options."""
    misbehaving = Misbehaving()
    return [
        StreamPassThrough(),
        misbehaving,
        SharedCache(misbehaviours=lambda: misbehaving.active),
        Observer(),
    ]


addons = make_addons()
