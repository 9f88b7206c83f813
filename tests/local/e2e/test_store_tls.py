"""The store over TLS (`stack up --store-tls`, as services.pulsewire.influxdb.tls): the
pipeline writes over https trusting the store's certificate, plain HTTP is refused, and an
uploader that trusts another CA writes nothing (its records wait in Kafka)."""

from __future__ import annotations

import json
import ssl
import subprocess
import urllib.error

import pytest

from conftest import ARTIFACTS
from expected import Expected, check
from harness import DB, MEASUREMENT, SEED_CSV, SEED_EXPECTED, append_lines, points, store_progress, verify, wait_store
from pulsewire_stack import influx, processes, services, settings, stack, store_tls

WRITE_ERRORS = 'pulsewire_errors_total{kind="influx_write"}'


@pytest.fixture
def tls_stack(dist):
    """An empty stack whose store serves https only, with every service."""
    stack.down(broker_timeout=5)
    stack.wipe(keep=(ARTIFACTS.name,))
    stack.up(services=True, build=False, retention_seconds=0, store_tls=True)
    yield
    processes.stop("simulator", timeout=10)
    # The next test's stack starts plain: the TLS choice lives in the state.
    stack.down(broker_timeout=5)
    stack.wipe(keep=(ARTIFACTS.name,))


def seed() -> tuple[list[str], Expected, list[dict]]:
    lines = SEED_CSV.read_text().splitlines()
    return lines, Expected(lines), [json.loads(x) for x in SEED_EXPECTED.read_text().splitlines() if x.strip()]


def test_seed_over_https_and_plain_http_refused(tls_stack, dist) -> None:
    db = DB()
    port = db.facts["port"]
    check(db.url == f"https://127.0.0.1:{port}", f"the store's URL is {db.url}, expected https")
    argv = services.command("uploader")["argv"]
    check(argv[argv.index("--influx-url") + 1] == db.url
          and argv[argv.index("--influx-ca-file") + 1] == str(store_tls.CERT),
          f"the uploader is not rendered with the https URL and the store's CA: {argv}")
    lines, exp, reference = seed()
    append_lines(lines)
    wait_store(dist, exp.total, timeout=240)
    verify(exp, reference)

    # Plain HTTP to the store's port: Go's TLS listener answers 400 and nothing more,
    # also to a write with a valid token.
    plain = influx.Store(processes.http, f"http://127.0.0.1:{port}", db.facts, settings.SECRETS)
    code, body = plain.request("GET", "/health")
    check((code, body) == (400, b"Client sent an HTTP request to an HTTPS server.\n"),
          f"plain HTTP /health answered {code} {body[:200]!r}")
    code, body = plain.write([f"{MEASUREMENT},sensor_id=998 value=1i 1718805517000000000"])
    check((code, body) == (400, b"Client sent an HTTP request to an HTTPS server.\n"),
          f"a plain-HTTP write answered {code} {body[:200]!r}")
    check(998 not in points(), "the plain-HTTP write reached the store")
    # https without the store's CA: the certificate is not trusted.
    try:
        processes.http("GET", f"https://127.0.0.1:{port}/health")
        check(False, "https without the store's CA was accepted")
    except urllib.error.URLError as e:
        check(isinstance(e.reason, ssl.SSLCertVerificationError) and "self-signed certificate" in str(e.reason),
              f"https without the CA failed otherwise: {e.reason!r}")
    print(f"{exp.total} seed readings exact over https; plain HTTP answered 400; the default CAs refuse the certificate")


def test_uploader_with_a_wrong_ca_writes_nothing(tls_stack, dist, tmp_path) -> None:
    # Another CA (its own name: rustls then finds no issuer of the store's certificate).
    wrong = tmp_path / "wrong-ca.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-days", "1", "-subj", "/CN=another CA", "-addext",
                    "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(tmp_path / "wrong.key"),
                    "-out", str(wrong)], check=True, capture_output=True)
    processes.stop("uploader", timeout=services.stop_timeout("uploader"))
    argv = services.service_argv("uploader")
    argv[argv.index("--influx-ca-file") + 1] = str(wrong)
    since = processes.log_size("uploader")
    processes.start("uploader", argv, env=services.service_env("uploader"))
    services.wait_service("uploader")

    lines, exp, reference = seed()
    append_lines(lines)
    port = services.metrics_port("uploader")
    # Every write fails the handshake and is retried: wait for three failed attempts.
    processes.wait_for("three failed writes of the uploader with the wrong CA",
                       lambda: services.scrape(port).get(WRITE_ERRORS, 0) >= 3, 180, component="uploader")
    check(store_progress() == 0, f"{store_progress()} points reached the store through an untrusted certificate")
    log = (settings.LOGS / "uploader.log").read_bytes()[since:].decode(errors="replace")
    refusal = "invalid peer certificate: UnknownIssuer"
    check(refusal in log, f"the uploader's log does not name the untrusted certificate ({refusal!r}):\n{log[-2000:]}")
    failures = int(services.scrape(port)[WRITE_ERRORS])

    # The records waited in Kafka, uncommitted: the uploader with the store's CA writes them all.
    processes.stop("uploader", timeout=services.stop_timeout("uploader"))
    services.start_service("uploader")
    wait_store(dist, exp.total, timeout=240)
    verify(exp, reference)
    print(f"wrong CA: {failures} writes refused ({refusal}), 0 points stored; "
          f"with the store's CA all {exp.total} readings exact")
