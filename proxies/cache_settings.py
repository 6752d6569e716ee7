"""The shared cache's options: declared for mitmproxy, and read into one frozen Settings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mitmproxy import exceptions

if TYPE_CHECKING:
    from mitmproxy.addonmanager import Loader

MiB = 1024 * 1024
OPTION_NAMES = (
    "cache_enabled",
    "cache_heuristic_ttl",
    "cache_heuristic_lm_percent",
    "cache_add_headers",
    "cache_max_entries",
    "cache_max_bytes",
    "cache_targeted_fields",
)


def options_a_listener_cannot_set(options: Mapping[str, Any]) -> set[str]:
    """The option names that are not the cache's: mitmproxy's own options (modify_headers...)
    are process-wide, so a profile that sets them cannot be one listener of a shared mitmdump."""
    return set(options) - set(OPTION_NAMES)


@dataclass(frozen=True)
class Settings:
    """The cache's options, as of the last configure."""

    enabled: bool = True
    heuristic_ttl: int = 0
    lm_fraction: float = 0.1
    add_headers: bool = False
    max_entries: int = 1000
    max_bytes: int = 64 * MiB
    # RFC 9213 fields a reverse-mode listener obeys (proxies/targeted_fields.py).
    targeted_fields: tuple[str, ...] = ()

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Settings:
        """From the addon's option values (mitmproxy's, or a profile's [options]); options
        not given keep their defaults. OptionsError names the first bad one."""
        get = options.get
        heuristic_ttl = get("cache_heuristic_ttl", cls.heuristic_ttl)
        lm_percent = get("cache_heuristic_lm_percent", round(cls.lm_fraction * 100))
        max_entries = get("cache_max_entries", cls.max_entries)
        max_bytes = get("cache_max_bytes", cls.max_bytes)
        if heuristic_ttl < 0:
            raise exceptions.OptionsError("cache_heuristic_ttl must be >= 0")
        if not 0 <= lm_percent <= 100:
            raise exceptions.OptionsError("cache_heuristic_lm_percent must be within [0, 100]")
        if max_entries < 1:
            raise exceptions.OptionsError("cache_max_entries must be >= 1")
        if max_bytes < 1:
            raise exceptions.OptionsError("cache_max_bytes must be >= 1")
        return cls(
            enabled=get("cache_enabled", cls.enabled),
            heuristic_ttl=heuristic_ttl,
            lm_fraction=lm_percent / 100,
            add_headers=get("cache_add_headers", cls.add_headers),
            max_entries=max_entries,
            max_bytes=max_bytes,
            targeted_fields=tuple(get("cache_targeted_fields", cls.targeted_fields)),
        )


def add_options(loader: Loader) -> None:
    """Declare the cache's options (OPTION_NAMES), with their help texts."""
    loader.add_option(
        "cache_enabled", bool, True, "Answer GET/HEAD requests from the shared cache."
    )
    loader.add_option(
        "cache_heuristic_ttl",
        int,
        0,
        """
        Seconds of freshness given to any heuristically cacheable GET response
        without explicit freshness (no s-maxage, max-age or Expires), like an
        aggressive corporate proxy. 0 keeps the RFC Last-Modified heuristic.
        """,
    )
    loader.add_option(
        "cache_heuristic_lm_percent",
        int,
        10,
        """
        RFC 9111 heuristic: a response with Last-Modified but no explicit
        freshness stays fresh for this percentage of (Date - Last-Modified)
        (RFC 9111 section 4.2.2 suggests 10). 0 disables it. Ignored when
        cache_heuristic_ttl > 0. An int, not a fraction: mitmdump's --set cannot
        parse float options.
        """,
    )
    loader.add_option(
        "cache_add_headers",
        bool,
        False,
        "Add 'Via' and 'X-Cache: HIT|STALE|REVALIDATED|MISS' to responses; off keeps the "
        "cache invisible (Age is always added to answers from the cache).",
    )
    loader.add_option(
        "cache_max_entries",
        int,
        1000,
        "Maximum number of stored responses; the least recently used is evicted.",
    )
    loader.add_option(
        "cache_max_bytes",
        int,
        64 * MiB,
        "Maximum sum of the stored bodies' sizes, in bytes; the least recently used "
        "responses are evicted, and a larger body is not stored at all.",
    )
    loader.add_option(
        "cache_targeted_fields",
        Sequence[str],
        [],
        """
        Targeted cache-control fields (RFC 9213) a reverse-mode listener obeys,
        such as CDN-Cache-Control: the first one a response carries with a valid
        value replaces its Cache-Control and Expires. Forward-mode listeners
        ignore them (a forward proxy is no CDN). Empty: none, as nginx 1.22 and
        Squid 5.7.
        """,
    )
