"""Certificates for a run's HTTPS scenarios, made with trustme and kept in the run folder.

Two certificate authorities, as on a real managed laptop:
- the *origin CA* stands for a public CA: it issues the app's certificate for 127.0.0.1 and
  the CDN edge's (a CDN holds a certificate for the site's own name);
- the *gateway CA* stands for the root certificate a company installs on its laptops so that
  its secure web gateway can inspect TLS: mitmproxy makes a leaf for each host from it (the
  gateway CA's key and certificate are its `confdir`'s mitmproxy-ca.pem).

The clients trust `trust.pem` (both CAs, nothing else): httpx through an SSLContext on that
file, Chromium through `--ignore-certificate-errors-spki-list` with the keys below. Nothing is
written outside `<run>/tls/`, and no system or user trust store is read for trust or changed.
"""

from __future__ import annotations

import base64
import datetime
import functools
import hashlib
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from cryptography.x509.oid import NameOID

from lab.stacks.ports import LOOPBACK

TLS_FOLDER = "tls"
ORIGIN_CA_NAME = "proxy-cache-lab origin CA (a public CA)"
GATEWAY_CA_NAME = "proxy-cache-lab gateway CA (the company's root)"
EDGE_NAME = "proxy-cache-lab CDN edge"
APP_NAME = "proxy-cache-lab app"


@dataclass(frozen=True)
class RunTls:
    folder: Path
    trust_file: Path  # both CAs: what the clients trust, and nothing else
    origin_ca: Path
    gateway_ca: Path
    app_cert: Path  # the app's certificate chain, for 127.0.0.1
    app_key: Path
    edge_pem: Path  # the CDN edge's chain and key, for mitmproxy's `certs`
    gateway_confdir: Path  # mitmproxy's confdir for TLS inspection (mitmproxy-ca.pem)
    spki_hashes: tuple[str, ...]  # base64 SHA-256 of every key a client may be shown

    def client_context(self) -> ssl.SSLContext:
        """What the Python client verifies with: the run's CAs only, not the system's (one
        context per run: loading it costs a matrix's hundreds of clients time)."""
        return _context(str(self.trust_file))

    def chromium_args(self) -> list[str]:
        """Chromium accepts a chain holding one of these keys without any trust store. The
        gateway's leaves share its CA's key (mitmproxy signs every leaf with one key), so
        its CA's key covers them; the app's and the edge's leaves have keys of their own."""
        return [f"--ignore-certificate-errors-spki-list={','.join(self.spki_hashes)}"]


@functools.cache
def _context(cafile: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cafile)


def spki_sha256(cert_pem: bytes) -> str:
    """Chromium's SPKI hash: base64 of the SHA-256 of the DER SubjectPublicKeyInfo."""
    key = x509.load_pem_x509_certificate(cert_pem).public_key()
    der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def named_ca(name: str, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> trustme.CA:
    """A trustme CA whose name has a common name: trustme's own CAs carry only O and OU, and
    Chromium's DevTools report a certificate's issuer by its CN alone (empty without one), so
    the browser client could not say which CA it accepted. Extensions as trustme's own CA."""
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "proxy-cache-lab"),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=9), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    return trustme.CA.from_pem(cert.public_bytes(Encoding.PEM), key_pem)


def make(run_dir: Path) -> RunTls:
    """Make the run's CAs and certificates in `<run_dir>/tls/` (keys readable by the owner
    only). About 0.1 s: RSA for the gateway CA, as mitmproxy makes its own."""
    folder = run_dir / TLS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    origin = named_ca(ORIGIN_CA_NAME, ec.generate_private_key(ec.SECP256R1()))
    gateway = named_ca(GATEWAY_CA_NAME, rsa.generate_private_key(65537, 2048))
    app = origin.issue_cert(LOOPBACK, common_name=LOOPBACK, organization_name=APP_NAME)
    edge = origin.issue_cert(LOOPBACK, common_name=LOOPBACK, organization_name=EDGE_NAME)

    def write(name: str, *parts: bytes) -> Path:
        path = folder / name
        path.touch(mode=0o600)
        path.write_bytes(b"".join(parts))
        return path

    origin_pem, gateway_pem = origin.cert_pem.bytes(), gateway.cert_pem.bytes()
    confdir = folder / "gateway"
    confdir.mkdir(mode=0o700, exist_ok=True)
    write("gateway/mitmproxy-ca.pem", gateway.private_key_pem.bytes(), gateway_pem)
    app_chain = b"".join(blob.bytes() for blob in app.cert_chain_pems)
    edge_chain = b"".join(blob.bytes() for blob in edge.cert_chain_pems)
    return RunTls(
        folder=folder,
        trust_file=write("trust.pem", origin_pem, gateway_pem),
        origin_ca=write("origin-ca.pem", origin_pem),
        gateway_ca=write("gateway-ca.pem", gateway_pem),
        app_cert=write("app.pem", app_chain),
        app_key=write("app-key.pem", app.private_key_pem.bytes()),
        edge_pem=write("edge.pem", edge_chain, edge.private_key_pem.bytes()),
        gateway_confdir=confdir,
        spki_hashes=tuple(
            spki_sha256(pem)
            for pem in (
                gateway_pem,
                origin_pem,
                app.cert_chain_pems[0].bytes(),
                edge.cert_chain_pems[0].bytes(),
            )
        ),
    )
