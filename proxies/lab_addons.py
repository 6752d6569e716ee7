"""mitmdump script for the lab: ``mitmdump -s proxies/lab_addons.py --set option=value``.

The cache must come before the observer so the observer logs the cache outcome.
"""

from proxies.observer import Observer
from proxies.shared_cache import SharedCache


def make_addons() -> list[object]:
    """Fresh instances: the lab also loads them in-process to check a profile's options."""
    return [SharedCache(), Observer()]


addons = make_addons()
