"""mitmdump script: the lab's proxy, one profile in one process.

    mitmdump --listen-host 127.0.0.1 -s proxies/lab_addons.py --set profile=squid-override
    mitmdump --listen-host 127.0.0.1 -s proxies/lab_addons.py --set cache_heuristic_ttl=300 \
        --set misbehaviours='[{"name": "ignore-query-in-key"}]'

`profile` (a name from proxies/profiles/ or a TOML path) sets the options and misbehaviours
the profile names. Order matters: streams are passed through unless a misbehaviour buffers
them; misbehaviours run before the cache (so a flaky or slow proxy is flaky for hits too, and
the cache sees rewritten headers); the observer comes last so it logs the cache outcome and
the final response.
"""

from proxies.misbehaving import Misbehaving
from proxies.observer import Observer
from proxies.profile import UseProfile
from proxies.shared_cache import SharedCache
from proxies.stream_passthrough import StreamPassThrough
from proxies.warm_spare import WarmSpare


def make_addons() -> list[object]:
    """Fresh instances: the lab also loads them in-process to check a profile's options."""
    misbehaving = Misbehaving()
    return [
        UseProfile(),
        StreamPassThrough(),
        misbehaving,
        SharedCache(misbehaviours=lambda: misbehaving.active),
        Observer(),
        WarmSpare(),
    ]


addons = make_addons()
