"""The store over TLS on the local stack (`tests/local/stack up --store-tls`), as the
appliance serves it with services.pulsewire.influxdb.tls (nixos/influxdb.nix).

Like --secure-kafka, the choice stays with the state: a stack brought up with --store-tls
keeps its directory, so a later `up` resumes it over https and `up --fresh` starts plain
again. The key and a self-signed certificate for 127.0.0.1 and localhost are made once with
openssl; the certificate is also the CA every client trusts (the appliance's default
`caFile`): the uploader through --influx-ca-file, the setup scripts' curl through
CURL_CA_BUNDLE, the harness through an ssl context.
"""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

from .settings import STATE, StackError, log

STORE_TLS = STATE / "store-tls"
CERT = STORE_TLS / "store.crt"
KEY = STORE_TLS / "store.key"


def enabled() -> bool:
    return STORE_TLS.is_dir()


def enable() -> None:
    """Marks the stack's store as served over TLS (its next rendering uses https)."""
    STORE_TLS.mkdir(parents=True, exist_ok=True, mode=0o700)


def ca_file() -> Path | None:
    """The CA the store's clients trust when it serves TLS, else None."""
    return CERT if enabled() else None


def generate() -> None:
    """The store's key (0600) and self-signed certificate, when missing."""
    if CERT.exists() and KEY.exists():
        return
    res = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "30", "-subj", "/CN=pulsewire local store",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         # Not a CA: rustls (the uploader) refuses a CA certificate as the server's own
         # (CaUsedAsEndEntity), while trusting this one as its root is fine.
         "-addext", "basicConstraints=critical,CA:FALSE", "-addext", "keyUsage=critical,digitalSignature",
         "-addext", "extendedKeyUsage=serverAuth",
         "-keyout", str(KEY), "-out", str(CERT)],
        capture_output=True, text=True)
    if res.returncode != 0:
        raise StackError(f"openssl could not make the store's certificate: {res.stderr.strip()[-800:]}")
    KEY.chmod(0o600)
    log(f"store TLS: self-signed certificate {CERT}")


def influxd_flags() -> list[str]:
    """influxd's TLS flags: the same settings as services.influxdb2.settings tls-cert/tls-key."""
    return ["--tls-cert", str(CERT), "--tls-key", str(KEY)] if enabled() else []


def ssl_context() -> ssl.SSLContext | None:
    """A client context trusting only the store's certificate (None without TLS)."""
    return ssl.create_default_context(cafile=str(CERT)) if enabled() else None
