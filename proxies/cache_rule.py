"""Why the shared cache kept an answer as long as it did, in words: a short sentence and a tag
(`StoreRule`), kept on the stored entry (proxies/cache_store.py) and logged with every answer
served from it (proxies/observer.py), so a frozen status can be traced to the rule or the
misbehaviour that froze it.

The RFC 9111 reasons mirror `cache_policy.freshness_lifetime`; what a misbehaviour did is found
by `CacheRules` (proxies/cache_decisions.py) comparing each hook's decision with the one before,
and put in words here: once per stored answer, and for a flow only when a misbehaviour changed
its key or let it have a stored answer (never for a plain hit).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from werkzeug.http import parse_list_header

from proxies import cache_policy
from proxies.http_date import parse_http_date

if TYPE_CHECKING:
    from mitmproxy import http

    from proxies.misbehaviours.base import CacheKey, Misbehaviour

# The tags (`StoreRule.kind`): the origin's own freshness; the cache's heuristic for an answer
# without any; a misbehaviour's hook changed the decision; stored, but revalidated before use.
EXPLICIT = "explicit"
HEURISTIC = "heuristic"
MISBEHAVIOUR = "misbehaviour"
REVALIDATE = "revalidate"

# The flow.metadata keys the cache sets, named as the observer's event fields.
RULE = "cache_rule"  # the entry's StoreRule.sentence
RULE_KIND = "cache_rule_kind"  # its StoreRule.kind
LIFETIME = "cache_lifetime"  # the entry's freshness lifetime, s
STORED_AT = "cache_stored_at"  # epoch seconds the entry was stored
HITS = "cache_hits"  # answers served from the entry so far, this one included
KEY_NOTE = "cache_key_note"  # what misbehaviours did to the request's cache key
SERVE_NOTE = "cache_serve_note"  # what let a stored answer be used (request no-cache, stale)
EVENT_FIELDS = (RULE, RULE_KIND, LIFETIME, STORED_AT, HITS, KEY_NOTE, SERVE_NOTE)


@dataclass(frozen=True)
class StoreRule:
    kind: str  # EXPLICIT, HEURISTIC, MISBEHAVIOUR or REVALIDATE
    sentence: str  # e.g. "max-age=30 from the response"


def seconds(value: float) -> str:
    """17280.0 -> '17280', 2.5 -> '2.5': a lifetime as a person writes it."""
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def rfc_rule(
    status: int,
    headers: Mapping[str, str],
    lifetime: float,
    *,
    heuristic_ttl: float,
    lm_fraction: float,
) -> StoreRule:
    """Why RFC 9111 (`cache_policy.freshness_lifetime`, with the cache's settings) gave this
    response `lifetime`, for the headers the rules saw."""
    if cache_policy.requires_validation(headers):
        return StoreRule(
            REVALIDATE,
            "stored, but revalidated before every use: the response's Cache-Control: no-cache",
        )
    cc = cache_policy.response_cache_control(headers)
    if cc.s_maxage is not None:
        return StoreRule(EXPLICIT, f"s-maxage={cc.s_maxage} from the response")
    if cc.max_age is not None:
        return StoreRule(EXPLICIT, f"max-age={cc.max_age} from the response")
    if "Expires" in headers:
        expires = headers.get("Expires")
        if parse_http_date(expires) is None:
            return StoreRule(EXPLICIT, f"Expires: {expires} from the response, invalid: expired")
        since = "Date" if parse_http_date(headers.get("Date")) is not None else "now"
        return StoreRule(
            EXPLICIT, f"Expires: {expires} from the response ({seconds(lifetime)} s after {since})"
        )
    if lifetime <= 0:
        return StoreRule(
            REVALIDATE,
            "no explicit freshness and no heuristic one: stale on arrival, revalidated before "
            "every use",
        )
    if heuristic_ttl > 0:
        return StoreRule(
            HEURISTIC,
            f"heuristic freshness {seconds(heuristic_ttl)} s for an answer without explicit "
            "freshness (cache_heuristic_ttl)",
        )
    return StoreRule(
        HEURISTIC,
        f"Last-Modified heuristic: {seconds(lm_fraction * 100)}% of its age, "
        f"{seconds(lifetime)} s (cache_heuristic_lm_percent)",
    )


def hidden_fields(before: http.Headers, after: http.Headers) -> str:
    """What a `visible_headers` hook hid from the cache's rules, e.g. "the response's no-store
    ignored" or "the response's Cache-Control: no-cache and Expires: 0 ignored"."""
    parts: list[str] = []
    for name in before:
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if new is not None and name.lower() == "cache-control":
            kept = {_directive_name(item) for item in parse_list_header(new)}
            gone = [d for d in parse_list_header(old or "") if _directive_name(d) not in kept]
            parts.append(", ".join(gone) or f"{name}: {old}")
        else:
            parts.append(f"{name}: {old}")
    if not parts:
        return "the response's fields rewritten for the cache's rules"
    return f"the response's {' and '.join(parts)} ignored"


def _directive_name(item: str) -> str:
    return item.split("=", 1)[0].strip().lower()


def vary_change(fields: tuple[str, ...]) -> str:
    return "Vary ignored" if not fields else f"varies on {', '.join(fields)} only"


def key_change(before: CacheKey, after: CacheKey) -> str:
    """What a `cache_key` hook did to the key (method, URL), in a few words."""
    changes: list[str] = []
    if before[:1] != after[:1]:
        changes.append(f"method {before[0]} keyed as {after[0]}")
    old_url, new_url = before[-1] if before else "", after[-1] if after else ""
    if old_url != new_url:
        if "?" in old_url and new_url == old_url.split("?", 1)[0]:
            changes.append("query string dropped from the key")
        else:
            changes.append(f"URL keyed as {new_url}")
    if not changes:
        changes.append("cache key changed")
    return ", ".join(changes)


def misbehaviour_rule(
    headline: Misbehaviour,
    *,
    lifetime: float,
    set_lifetime: bool,
    detail: str,
    rfc: StoreRule,
    changes: list[tuple[Misbehaviour, str]],
) -> StoreRule:
    """The sentence for an entry a misbehaviour's hook changed: `headline` is the one that set
    its lifetime last (else the last that changed anything), `changes` every other change in
    words with the misbehaviour that made it; `rfc` is what the RFC rules said, named when the
    lifetime is still theirs; the headline's summary ends it. E.g. "misbehaviour force-ttl:
    60 s, the response's Cache-Control: no-store ignored. Ignores the origin's Cache-Control
    and Expires; listed statuses are cached for ttl."""
    text = f"misbehaviour {headline.name}: {seconds(lifetime)} s"
    if detail:
        text += f", {detail}"
    for misbehaviour, change in changes:
        text += f", {change}" if misbehaviour is headline else f", {change} ({misbehaviour.name})"
    if not set_lifetime:
        text += f"; freshness from the RFC rules: {rfc.sentence}"
    summary = headline.summary.strip().rstrip(".")
    return StoreRule(MISBEHAVIOUR, f"{text}. {summary}.")
