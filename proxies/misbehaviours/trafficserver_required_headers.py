"""Apache Traffic Server's required_headers and heuristic freshness."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field
from werkzeug.http import parse_date

from proxies import cache_policy
from proxies.misbehaviours.base import Misbehaviour, Parameters
from proxies.misbehaviours.trafficserver_field_parsing import cooked_cache_control

if TYPE_CHECKING:
    from mitmproxy import http


class TrafficserverRequiredHeadersParams(Parameters):
    # proxy.config.http.cache.required_headers: 0 none, 1 Last-Modified or an explicit
    # lifetime, 2 an explicit lifetime (Expires, max-age or s-maxage). Default 2.
    required_headers: Literal[0, 1, 2] = 2
    # proxy.config.http.cache.heuristic_min_lifetime / heuristic_max_lifetime (s) and
    # heuristic_lm_factor: the freshness of a stored answer without an explicit lifetime.
    heuristic_min_lifetime: Annotated[int, Field(ge=0)] = 3600
    heuristic_max_lifetime: Annotated[int, Field(ge=0)] = 86400
    heuristic_lm_factor: Annotated[float, Field(ge=0, le=1)] = 0.1


class TrafficserverRequiredHeaders(Misbehaviour[TrafficserverRequiredHeadersParams]):
    """Traffic Server 9.2 stores an answer only if it carries the headers
    `proxy.config.http.cache.required_headers` asks for (HttpTransact::is_response_cacheable):
    with the default, 2, an explicit lifetime (Expires, or Cache-Control max-age or s-maxage),
    so a header-less status answer, a Pragma-only one and a Last-Modified-only one are all
    passed through: a stock Traffic Server freezes none of the story's polls. At 1 a
    Last-Modified is enough; at 0 anything is stored.

    What is stored without an explicit lifetime (levels 0 and 1) gets the heuristic of
    HttpTransact::calculate_document_freshness_limit: heuristic_lm_factor (0.1) of (Date -
    Last-Modified), or, without them, heuristic_min_lifetime; always within
    [heuristic_min_lifetime, heuristic_max_lifetime], one hour to one day by default. So at
    required_headers 0 a header-less answer is fresh for a full hour (records.config:
    "objects without an expiration date", heuristic_min_lifetime 3600).

    Other defaults, from records.config: ignore_client_no_cache 1 (the client's no-cache is
    not honoured: list ignore-request-no-cache), ignore_client_cc_max_age 1,
    cache_responses_to_cookies 1, cache_urls_that_look_dynamic 1 (a query URL is cached like
    any other), ignore_server_no_cache 0 (a response's no-cache, and its `Pragma: no-cache`
    even beside a max-age, keep it from being used without the origin). An explicit lifetime,
    no-store and private follow the RFC rules.
    """

    name = "trafficserver-required-headers"
    summary = "Traffic Server: stores only answers with the required headers (default: a lifetime)."
    imitates = (
        "Apache Traffic Server 9.2 records.config `proxy.config.http.cache.required_headers` "
        "(default 2), `heuristic_min_lifetime` 3600, `heuristic_max_lifetime` 86400, "
        "`heuristic_lm_factor` 0.10 (proxy/http/HttpTransact.cc is_response_cacheable, "
        "calculate_document_freshness_limit)."
    )

    def storable(self, request: http.Request, response: http.Response, decision: bool) -> bool:
        # max-age='3600' is max-age 3600 to Traffic Server (trafficserver-field-parsing).
        headers = cooked_cache_control(response.headers.copy())
        cc = cache_policy.response_cache_control(headers)
        if "Authorization" in request.headers:
            # Checked on 9.2.9: an answer to a request with Authorization is stored with a
            # plain max-age or Expires too (RFC 9111 3.5 asks for public, s-maxage or
            # must-revalidate): only HttpTransact::AuthenticationNeeded, when a stored answer
            # is served to a request with Authorization, looks at it.
            others = cache_policy.FieldView(
                (k, v) for k, v in request.headers.items(multi=True) if k.lower() != "authorization"
            )
            decision = cache_policy.response_is_storable(response.status_code, others, headers)
        if not decision or cache_policy.pragma_no_cache(headers):
            # A response's `Pragma: no-cache` is a no-cache to Traffic Server (checked on
            # 9.2.9: not stored even with max-age), unless ignore_server_no_cache is on.
            return False
        explicit = "Expires" in headers or cc.max_age is not None or cc.s_maxage is not None
        if self.params.required_headers == 2:
            return explicit
        if self.params.required_headers == 1:
            return explicit or "Last-Modified" in headers
        return True

    def freshness_lifetime(
        self, request: http.Request, response: http.Response, lifetime: float, now: float
    ) -> float:
        headers = cooked_cache_control(response.headers.copy())
        if cache_policy.explicit_lifetime(headers, now) is not None:
            return lifetime  # the RFC's: max-age, s-maxage, Expires
        low = float(self.params.heuristic_min_lifetime)
        high = float(self.params.heuristic_max_lifetime)
        date, last_modified = (
            parse_date(headers.get("Date")),
            parse_date(headers.get("Last-Modified")),
        )
        if date is not None and last_modified is not None:
            age = (date - last_modified).total_seconds()
            heuristic = max(0.0, age * self.params.heuristic_lm_factor)
        else:
            heuristic = low
        return min(max(low, heuristic), high)
