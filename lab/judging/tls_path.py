"""Where TLS ended on an HTTPS run's path, and which certificate the client accepted from
which CA: the evidence that shows why HTTPS did or did not keep the proxy from caching."""

from __future__ import annotations

from typing import Any

# What each TLS mode (a scenario's `tls`) means for the proxy, in the verdict's words.
TERMINATED_AT = {
    "tunnel": "the app: the proxy passed CONNECT through and saw only encrypted bytes",
    "inspect": (
        "the proxy ({proxy}), an inspecting gateway: it showed the client a certificate of its "
        "own CA and opened TLS of its own to the app"
    ),
    "edge": (
        "the proxy ({proxy}), a CDN edge with a certificate for the site's name: it fetched "
        "from the app over HTTPS of its own"
    ),
}
TRUSTED = {
    "python": "the run's CAs only (tls/trust.pem: origin CA and gateway CA)",
    "browser": (
        "the run's keys only (--ignore-certificate-errors-spki-list: origin CA, gateway CA, "
        "app and edge certificates); no trust store touched"
    ),
}


def path_facts(
    mode: str, proxy: str, client: str, seen: dict[str, str] | None, *, external: bool = False
) -> dict[str, Any]:
    """The verdict's `tls`: mode, where TLS ended, what the client trusted and was shown.
    `external`: a proxy the lab did not start (--proxy-url), whose TLS the lab cannot know:
    only the certificate tells."""
    where = TERMINATED_AT[mode].format(proxy=proxy)
    if external:
        where = f"not known: {proxy} is a proxy the lab did not start (see the certificate)"
    return {
        "mode": mode,
        "terminated_at": where,
        "client_trusted": TRUSTED.get(client, TRUSTED["python"]),
        "certificate": seen,
    }


def certificate_line(facts: dict[str, Any]) -> str:
    """ "certificate 127.0.0.1 issued by <CA>", or why there is none."""
    cert = facts.get("certificate")
    if not cert:
        return "no certificate recorded by the client"
    return f"certificate {cert.get('subject')} issued by {cert.get('issuer')}"
