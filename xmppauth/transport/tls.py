"""Server TLS for raw XMPP (RFC 6120 §5, XEP-0368) and channel-binding data (RFC 5929, RFC 9266).

- `ensure_certificate` creates a self-signed certificate for the configured domain on first run.
- `ServerTLS` loads the certificate and key once and hands Twisted two pyOpenSSL context factories:
  `starttls` (port 5222, no ALPN) and `directtls` (port 5223, ALPN ``xmpp-client``).
- `tls_info` reads what the XMPP layer needs from a finished handshake: version, cipher, ALPN and the
  channel-binding values.

Policy: TLS 1.2 minimum; TLS 1.2 only with ECDHE and AEAD ciphers; the server's order decides, AES-128-GCM
first; no compression; no renegotiation.

ALPN on the direct-TLS listener (RFC 7301 §3.2, XEP-0368): a client that offers no ALPN is served as XMPP;
a client that offers ``xmpp-client`` gets it; a client that offers protocols but not ``xmpp-client`` is
refused with a fatal ``no_application_protocol`` alert. pyOpenSSL turns an exception raised in the selection
callback into ``SSL_TLSEXT_ERR_ALERT_FATAL`` and re-raises it from ``do_handshake``; ours is an
``OpenSSL.SSL.Error`` so that Twisted treats it as an ordinary handshake failure. (Returning
``NO_OVERLAPPING_PROTOCOLS`` instead would let the handshake go on without ALPN.)
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import secrets
from pathlib import Path
from typing import Any, TypedDict

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLContextFactory
from zope.interface import implementer

logger = logging.getLogger(__name__)

ALPN_XMPP_CLIENT = b"xmpp-client"
EXPORTER_LABEL = b"EXPORTER-Channel-Binding"
CERT_VALIDITY_DAYS = 825

# The server picks (OP_CIPHER_SERVER_PREFERENCE) AES-128-GCM first: every suite here is AEAD with forward
# secrecy, and the SHA-256 of the AES-128 suites costs the handshake less than SHA-384 (SHA-256 has CPU
# instructions on current x86 and ARM, SHA-384 does not). TLS 1.2 list:
_TLS12_CIPHERS = b"ECDHE+AESGCM+AES128:ECDHE+AESGCM:ECDHE+CHACHA20"
# ... and TLS 1.3 (OpenSSL's default set, reordered; TLS_AES_128_GCM_SHA256 is mandatory for clients anyway).
_TLS13_CIPHERSUITES = b"TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"


class TLSInfo(TypedDict):
    """What the transport reports to the application once a handshake has completed."""

    version: str
    cipher: str
    alpn: str | None
    channel_bindings: dict[str, bytes]


class CertificateError(Exception):
    """The configured certificate or key cannot be used (or only one of the two exists)."""


# --- certificate --------------------------------------------------------------------------------------


def ensure_certificate(domain: str, cert_path: Path, key_path: Path) -> None:
    """Create a self-signed ECDSA P-256 certificate for `domain` unless both files exist.

    Existing files are never overwritten. If exactly one of the two exists, a new pair cannot be made
    without replacing it, so this raises `CertificateError` and leaves both alone.
    """
    cert_path, key_path = Path(cert_path), Path(key_path)
    cert_exists, key_exists = cert_path.exists(), key_path.exists()
    if cert_exists and key_exists:
        return
    if cert_exists or key_exists:
        present, missing = (cert_path, key_path) if cert_exists else (key_path, cert_path)
        raise CertificateError(
            f"{present} exists but {missing} does not; refusing to overwrite. "
            "Provide both (XMPP_TLS_CERT / XMPP_TLS_KEY) or remove the one that is there."
        )

    key = ec.generate_private_key(ec.SECP256R1())
    cert = _self_signed_certificate(domain, key)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key_path.parent.mkdir(parents=True, exist_ok=True)
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    _write_new_file(key_path, key_pem, 0o600)
    _write_new_file(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    logger.warning(
        "Generated a self-signed TLS certificate for %s at %s (key %s); configure a real one with "
        "XMPP_TLS_CERT / XMPP_TLS_KEY",
        domain,
        cert_path,
        key_path,
    )


def _self_signed_certificate(domain: str, key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    dns_name = domain.encode("idna").decode("ascii")
    names: list[x509.GeneralName] = [x509.DNSName(dns_name)]
    if domain == "localhost":
        names += [
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name)])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=CERT_VALIDITY_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _write_new_file(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


# --- channel binding ----------------------------------------------------------------------------------


def tls_server_end_point(cert: x509.Certificate) -> bytes:
    """RFC 5929 §4.1: hash of the DER certificate with the signature's hash; SHA-256 if that is MD5 or SHA-1.

    Certificates signed without a separate hash (Ed25519, Ed448) are not covered by RFC 5929; SHA-256 is used
    for them too, which is what most implementations do.
    """
    algorithm = cert.signature_hash_algorithm
    if algorithm is None or isinstance(algorithm, hashes.MD5 | hashes.SHA1):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(cert.public_bytes(serialization.Encoding.DER))
    return digest.finalize()


def channel_bindings(conn: SSL.Connection, end_point: bytes) -> dict[str, bytes]:
    """Channel-binding data for a connection whose handshake has completed.

    ``tls-exporter`` (RFC 9266) only on TLS 1.3: on TLS 1.2 it is defined only with Extended Master Secret,
    which pyOpenSSL cannot report. In TLS 1.3 "no context" and "empty context" give the same exporter value.
    """
    bindings = {"tls-server-end-point": end_point}
    if conn.get_protocol_version_name() == "TLSv1.3":
        bindings["tls-exporter"] = conn.export_keying_material(EXPORTER_LABEL, 32, b"")
    return bindings


def negotiated_alpn(conn: SSL.Connection) -> str | None:
    proto = conn.get_alpn_proto_negotiated()
    return proto.decode("ascii", "replace") if proto else None


def tls_info(conn: SSL.Connection, end_point: bytes) -> TLSInfo:
    return {
        "version": conn.get_protocol_version_name(),
        "cipher": conn.get_cipher_name() or "",
        "alpn": negotiated_alpn(conn),
        "channel_bindings": channel_bindings(conn, end_point),
    }


# --- contexts -----------------------------------------------------------------------------------------


class _NoXmppAlpn(SSL.Error):
    """Raised from the ALPN callback; an `SSL.Error` so Twisted handles it as a failed handshake.

    Its args mimic OpenSSL's error queue (a list of (library, function, reason) tuples), which is what
    Twisted unpacks when it reports the failure.
    """


def _select_alpn(conn: SSL.Connection, offered: list[bytes]) -> bytes:
    if ALPN_XMPP_CLIENT in offered:
        return ALPN_XMPP_CLIENT
    reason = f"no application protocol: client offered {offered!r} but not xmpp-client"
    raise _NoXmppAlpn([("xmppauth", "", reason)])


@implementer(IOpenSSLContextFactory)
class ContextFactory:
    """An `IOpenSSLContextFactory` that hands out one shared, fully configured context."""

    def __init__(self, context: SSL.Context) -> None:
        self._context = context

    def getContext(self) -> SSL.Context:
        return self._context


class ServerTLS:
    """The server certificate and the two TLS configurations built from it, created once at start-up."""

    def __init__(self, cert_path: Path, key_path: Path) -> None:
        self.cert_path = Path(cert_path)
        self.key_path = Path(key_path)
        try:
            certs = x509.load_pem_x509_certificates(self.cert_path.read_bytes())
        except (OSError, ValueError) as exc:
            raise CertificateError(f"cannot read certificate {self.cert_path}: {exc}") from exc
        self.certificate = certs[0]
        self.end_point = tls_server_end_point(self.certificate)
        self.starttls = ContextFactory(self._context(alpn=False))
        self.directtls = ContextFactory(self._context(alpn=True))

    def _context(self, *, alpn: bool) -> SSL.Context:
        ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
        ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION | SSL.OP_CIPHER_SERVER_PREFERENCE)
        # Free a connection's record buffers (about 26 KiB) while it is idle, as most XMPP sessions are.
        ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)
        ctx.set_cipher_list(_TLS12_CIPHERS)
        ctx.set_tls13_ciphersuites(_TLS13_CIPHERSUITES)
        ctx.set_session_id(b"xmppauth-c2s-" + (b"direct" if alpn else b"starttls"))
        try:
            ctx.use_certificate_chain_file(str(self.cert_path))
            ctx.use_privatekey_file(str(self.key_path))
            ctx.check_privatekey()
        except SSL.Error as exc:
            raise CertificateError(
                f"cannot use certificate {self.cert_path} with key {self.key_path}: {exc}"
            ) from exc
        if alpn:
            ctx.set_alpn_select_callback(_select_alpn)
        return ctx

    def info(self, conn: SSL.Connection) -> TLSInfo:
        return tls_info(conn, self.end_point)


def describe_tls_error(value: Any) -> str:
    """A short, single-line text for an `OpenSSL.SSL.Error` (whose args are lists of tuples)."""
    args = getattr(value, "args", ())
    if args and isinstance(args[0], list) and args[0]:
        last = args[0][-1]
        if isinstance(last, tuple) and last:
            return str(last[-1])
    return str(value) or type(value).__name__
