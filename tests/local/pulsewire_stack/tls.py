"""Kafka's multi-host security on the local stack (`tests/local/stack up --secure-kafka`).

A stack brought up with --secure-kafka keeps that choice in its state (the TLS directory
exists), so a later `up` resumes it secured and `up --fresh` starts plain again. Its CA and
one key and certificate per principal are made by `provisioning/kafka/generate-tls`, the
script the appliance's pulsewire-kafka-tls unit runs, with the renderer's settings; the
ACLs are applied from the renderer's data with Kafka's AclCommand, as the
pulsewire-kafka-acls unit does.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .settings import REPO, STATE, StackError, log

TLS = STATE / "kafka-tls"
GENERATE = REPO / "provisioning" / "kafka" / "generate-tls"


def tls_dir() -> Path | None:
    """The TLS directory when the stack runs secured, else None."""
    return TLS if TLS.is_dir() else None


def enable() -> None:
    """Marks the stack as secured (its next rendering uses the TLS directory)."""
    TLS.mkdir(parents=True, exist_ok=True, mode=0o700)


def generate(environment: dict[str, str]) -> None:
    """The CA and every principal's key and certificate, those that are missing."""
    res = subprocess.run([str(GENERATE), str(TLS)], env=dict(os.environ, **environment), capture_output=True,
                         text=True)
    if res.returncode != 0:
        raise StackError(f"{GENERATE.relative_to(REPO)} failed (exit {res.returncode}):\n{res.stderr.strip()}")
    for line in res.stdout.splitlines():
        log(line)


def files(principal: str) -> dict[str, Path]:
    """The files of one principal, as the renderer's storeFiles names them."""
    return {"ca": TLS / "ca.crt", "cert": TLS / f"{principal}.crt", "key": TLS / f"{principal}.key",
            "pem": TLS / f"{principal}.pem"}


def client_properties(principal: str, rendered: dict) -> Path:
    """A Java client properties file for `principal` (the tools' --command-config)."""
    path = TLS / f"{principal}-client.properties"
    text = rendered["clientProperties"][principal]
    # Tools started a moment ago may be reading it: never truncate it under them.
    if not path.exists() or path.read_text() != text:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return path
