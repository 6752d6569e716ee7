"""What `lab probe` can learn of TLS on an https:// path: whether the server's certificate is
verifiable with this machine's own trust store, and who issued it.

Through HTTPS a forward proxy that only tunnels (CONNECT) sees ciphertext and cannot cache; a
cache on such a path is either at the server's side (a CDN, a reverse proxy that holds the
certificate) or a proxy that intercepts TLS with a certificate of its own, which this machine
then trusts (an installed corporate CA) or does not (the check fails here). The issuer's name
is often the product's ("Zscaler Root CA", "Fortinet", "mitmproxy").
"""

from __future__ import annotations

import functools
import ssl
from dataclasses import dataclass
from typing import Any

import httpx

SEEN_THROUGH_TLS = (
    "through TLS a proxy that only tunnels (CONNECT) cannot read or cache anything; a cache "
    "seen here sits at the server's side (a CDN or reverse proxy) or intercepts TLS with a "
    "certificate this machine accepts"
)


@dataclass(frozen=True)
class TlsFacts:
    verified: bool  # the chain verified against the system's trust store
    issuer: str | None  # the server certificate's issuer, as the client saw it
    subject: str | None
    problem: str | None  # why it did not verify
    cacert: str | None = None  # verified with the server's own CA (--cacert), not the system's

    def lines(self) -> list[str]:
        said = [SEEN_THROUGH_TLS]
        if self.cacert and self.verified:
            said.append(
                f"certificate verified with the server's own CA ({self.cacert}), issued by "
                f"{self.issuer}: TLS was not intercepted on this path"
            )
        elif self.cacert:
            said.append(
                f"certificate NOT issued by the server's own CA ({self.cacert}; {self.problem}) "
                f"but by {self.issuer or 'unknown'}: something on the path INTERCEPTED TLS "
                "(an inspecting gateway whose CA this machine may trust) and can read and cache "
                "every request. Probed without verification (nothing secret is sent)."
            )
        elif self.verified:
            said.append(f"certificate verified with the system store, issued by {self.issuer}")
        else:
            said.append(
                f"certificate NOT verifiable with the system store ({self.problem}); issued by "
                f"{self.issuer or 'unknown'}: a TLS-intercepting proxy on the path, or a "
                "self-signed server. Probed without verification (nothing secret is sent)."
            )
        return said

    def to_json(self) -> dict[str, Any]:
        return {
            "verified": self.verified,
            "issuer": self.issuer,
            "subject": self.subject,
            "problem": self.problem,
            "cacert": self.cacert,
            "intercepted": (not self.verified) if self.cacert else None,
        }


@functools.cache
def system_context() -> ssl.SSLContext:
    """The operating system's trust store (OpenSSL's default paths, SSL_CERT_FILE honoured),
    which is where a company installs its interception CA; not certifi's bundle."""
    return ssl.create_default_context()


@functools.cache
def unverified_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def verification_problem(exc: httpx.HTTPError) -> str | None:
    """The certificate error behind a failed request, or None when it was something else."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen.verify_message or str(seen)
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    return text if "CERTIFICATE_VERIFY_FAILED" in text else None


def facts_from(
    der: bytes | None, verified: bool, problem: str | None, cacert: str | None = None
) -> TlsFacts:
    """Issuer and subject of the server certificate (DER) the answer came with."""
    issuer, subject = names_in(der) if der is not None else (None, None)
    return TlsFacts(verified, issuer, subject, problem, cacert)


def cacert_context(path: str) -> ssl.SSLContext:
    """Only the server's own CA (`lab probe --cacert`): a chain it does not verify was made
    by something on the path. BadInput (exit 2) naming the file when it holds no CA."""
    from lab.data.errors import BadInput

    try:
        return ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        raise BadInput(f"--cacert {path!r}: not a readable PEM CA file ({exc})") from None


def peer_certificate(response: httpx.Response) -> bytes | None:
    """The server certificate of the connection an open (streamed) answer is on."""
    stream = response.extensions.get("network_stream")
    ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
    if ssl_object is None:
        return None
    # httpcore hands out the socket's low-level _ssl object, whose getpeercert takes its
    # binary_form flag by position only.
    return ssl_object.getpeercert(True)


def names_in(der: bytes) -> tuple[str | None, str | None]:
    # An unverified peer's certificate only comes as DER; cryptography (a mitmproxy
    # dependency, so always here) reads it.
    try:
        from cryptography import x509
    except ImportError:  # pragma: no cover - installed with mitmproxy
        return None, None
    cert = x509.load_der_x509_certificate(der)
    return cert.issuer.rfc4514_string(), cert.subject.rfc4514_string()


def accepted(stream: Any) -> tuple[str | None, str | None] | None:
    """(subject, issuer) of the certificate a verified TLS stream (httpcore's) was shown, as
    a browser names them; None when the stream is not TLS."""
    ssl_object = stream.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(True) if ssl_object is not None else None
    if not der:
        return None
    issuer, subject = names_in(der)
    return display_name(subject), display_name(issuer)


def display_name(rfc4514: str | None) -> str | None:
    """A certificate name as a browser shows it: its CN, else its O, else the whole name."""
    if not rfc4514:
        return rfc4514
    parts = dict(part.split("=", 1) for part in rfc4514.split(",") if "=" in part)
    return parts.get("CN") or parts.get("O") or rfc4514
