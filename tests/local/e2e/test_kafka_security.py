"""Kafka as it runs across hosts (issue 12): the stack up with `--secure-kafka`, i.e. the
settings of nixos/lib/kafka-security.nix (mTLS on every listener, the KRaft authorizer, one
certificate and so one principal per client, the ACLs as data).

Proven here on real Kafka: a client without a certificate of the appliance's CA is refused
by every broker listener, client and controller alike; a stage's principal is refused on
another stage's topics and group; and the whole pipeline is exact with every stage under its
own principal.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
from pathlib import Path

import pytest

from expected import Expected, check
from harness import P, SEED_CSV, append_lines, verify, wait_store
from pulsewire_stack import kafka, processes, services, stack, tls
from pulsewire_stack.render import render

TOPIC = {key: t["name"] for key, t in P["topics"].items()}


@pytest.fixture(scope="module")
def secure_stack(dist):
    """An empty stack up with --secure-kafka and every service (as conftest's fresh_stack),
    once for this file: bringing it up takes minutes, and no test here changes what another
    asserts (the refused writes leave the topics as they were)."""
    from conftest import ARTIFACTS

    stack.down(broker_timeout=5)
    stack.wipe(keep=(ARTIFACTS.name,))
    stack.up(services=True, build=False, retention_seconds=0, secure_kafka=True)
    check(render()["secure"], "the stack did not render the secured settings")
    yield
    processes.stop("simulator", timeout=10)


def listeners() -> list[tuple[str, int]]:
    return [(f"broker {b['id']} {kind}", b[port]) for b in render()["brokers"]
            for kind, port in (("client", "port"), ("controller", "controllerPort"))]


def tls_handshake(port: int, cert: Path | None = None, key: Path | None = None) -> str:
    """openssl s_client against a listener, trusting the stack's CA; its error lines. It
    waits for the server (-ign_eof): with TLS 1.3 the server judges the client's
    certificate after the client has finished its side of the handshake."""
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(tls.TLS / "ca.crt"),
           "-verify_return_error", "-ign_eof", "-brief"]
    if cert:
        cmd += ["-cert", str(cert), "-key", str(key)]
    try:
        res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "the connection stayed open for 30 s: the listener let the client in"
    return res.stdout + res.stderr


def plaintext_api_versions(port: int) -> bytes:
    """A Kafka ApiVersions request (v0) in plaintext, as a client without TLS sends it; every
    byte the listener sends back until it closes the connection."""
    body = struct.pack(">hhih", 18, 0, 1, len(b"probe")) + b"probe"
    got = b""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        while chunk := s.recv(4096):
            got += chunk
    return got


def java_client(dist, principal: str, main: str, *args: str, stdin: str = "") -> str:
    """A Kafka command-line client as `principal` (its certificate); its stderr and stdout."""
    props = tls.client_properties(principal, render())
    cmd = kafka.java_cmd(dist, "256m", main, "--bootstrap-server", render()["bootstrapServers"],
                         "--command-config", str(props), *args, opts=("-XX:TieredStopAtLevel=1",), tool=True)
    res = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120)
    return res.stderr + res.stdout


@pytest.mark.usefixtures("secure_stack")
def test_a_client_without_credentials_is_refused_by_every_listener(dist, tmp_path) -> None:
    # A certificate with the admin's very subject, from a CA of the attacker's own.
    forged = tmp_path / "forged"
    env = dict(os.environ, **{**render()["tlsGenerateEnvironment"], "KAFKA_TLS_PRINCIPALS": "admin"})
    subprocess.run([str(tls.GENERATE), str(forged)], env=env, check=True, capture_output=True)
    for name, port in listeners():
        # TLS without a client certificate: the broker ends the handshake (alert 42).
        out = tls_handshake(port)
        check("alert bad certificate" in out and "SSL alert number 42" in out,
              f"{name} (:{port}) without a client certificate: {out[-600:]}")
        # The admin's subject from another CA: refused too (alert 46), never User:admin.
        out = tls_handshake(port, forged / "admin.crt", forged / "admin.key")
        check("alert certificate unknown" in out and "SSL alert number 46" in out,
              f"{name} (:{port}) with a forged admin certificate: {out[-600:]}")
        # No TLS at all: a fatal TLS alert record and the connection closed, no Kafka answer.
        got = plaintext_api_versions(port)
        check(len(got) == 7 and got[:3] == b"\x15\x03\x03" and got[5] == 2,
              f"{name} (:{port}) answered a plaintext ApiVersions request with {got[:40]!r}")
    # A real Kafka client with TLS but no certificate: its handshake fails.
    props = tmp_path / "no-certificate.properties"
    props.write_text(f"security.protocol=SSL\nssl.truststore.type=PEM\nssl.truststore.location={tls.TLS / 'ca.crt'}\n")
    cmd = kafka.java_cmd(dist, "256m", "org.apache.kafka.tools.TopicCommand", "--bootstrap-server",
                         render()["bootstrapServers"], "--command-config", str(props), "--list",
                         opts=("-XX:TieredStopAtLevel=1",), tool=True)
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    check(res.returncode != 0 and "SslAuthenticationException" in res.stderr
          and "Received fatal alert: bad_certificate" in res.stderr,
          f"kafka-topics --list without a certificate: exit {res.returncode}, {res.stderr[-800:]}")
    # The admin's own certificate is let in: the refusals above are about the credential.
    listed = java_client(dist, "admin", "org.apache.kafka.tools.TopicCommand", "--list").split()
    check(set(TOPIC.values()) <= set(listed), f"the admin lists {listed}")
    print(f"{len(listeners())} listeners: no certificate -> alert 42, forged admin -> alert 46, "
          f"plaintext -> TLS alert; kafka-topics without a certificate: bad_certificate")


def refused(topic: str) -> str:
    return f"TopicAuthorizationException: Not authorized to access topics: [{topic}]"


# (principal, what it tries, the tool's arguments, the errors it must get). Each is something
# the principal's role never needs: another stage's output or input, another stage's group.
# (A principal that may not even describe the topic is told so in the metadata already.)
REFUSALS = [
    ("aggregator", f"produce to {TOPIC['stats']}", "org.apache.kafka.tools.ConsoleProducer",
     ["--topic", TOPIC["stats"]], [f"{{{TOPIC['stats']}=TOPIC_AUTHORIZATION_FAILED}}", refused(TOPIC["stats"])]),
    ("aggregator", f"read {TOPIC['readings']}", "org.apache.kafka.tools.consumer.ConsoleConsumer",
     ["--topic", TOPIC["readings"], "--partition", "0", "--offset", "earliest", "--timeout-ms", "10000"],
     [refused(TOPIC["readings"])]),
    ("processor", f"produce to {TOPIC['raw']}", "org.apache.kafka.tools.ConsoleProducer",
     ["--topic", TOPIC["raw"]], [f"{{{TOPIC['raw']}=TOPIC_AUTHORIZATION_FAILED}}", refused(TOPIC["raw"])]),
    # The uploader may read heartrate.stats (so describe it), never write it.
    ("uploader", f"produce to {TOPIC['stats']}", "org.apache.kafka.tools.ConsoleProducer",
     ["--topic", TOPIC["stats"]], [refused(TOPIC["stats"])]),
    ("uploader", f"read {TOPIC['processor_state']}", "org.apache.kafka.tools.consumer.ConsoleConsumer",
     ["--topic", TOPIC["processor_state"], "--partition", "0", "--offset", "earliest", "--timeout-ms", "10000"],
     [refused(TOPIC["processor_state"])]),
    ("connect", f"read {TOPIC['stats']}", "org.apache.kafka.tools.consumer.ConsoleConsumer",
     ["--topic", TOPIC["stats"], "--partition", "0", "--offset", "earliest", "--timeout-ms", "10000"],
     [refused(TOPIC["stats"])]),
    ("aggregator", f"join group {P['services']['processor']['group_id']}",
     "org.apache.kafka.tools.consumer.ConsoleConsumer",
     ["--topic", TOPIC["raw"], "--group", P["services"]["processor"]["group_id"], "--timeout-ms", "10000"],
     [f"GroupAuthorizationException: Not authorized to access group: {P['services']['processor']['group_id']}"]),
]


@pytest.mark.usefixtures("secure_stack")
def test_a_stage_is_refused_on_another_stages_topic(dist) -> None:
    before = {key: kafka.read_topic(dist, TOPIC[key], idle_ms=5000) for key in ("stats", "raw")}
    for principal, what, main, args, errors in REFUSALS:
        out = java_client(dist, principal, main, *args, stdin="1,heart_rate,2024-06-19 13:58:37.074766,80\n")
        for error in errors:
            check(error in out, f"User:{principal} may {what}? expected {error!r}, got:\n{out[-1500:]}")
    # Nothing of it got through: the refused producers added no record.
    for key in ("stats", "raw"):
        records = kafka.read_topic(dist, TOPIC[key], idle_ms=5000)
        check(records == before[key], f"{TOPIC[key]}: {len(before[key])} records before the refused writes, "
                                      f"{len(records)} after: {records[len(before[key]):][:3]}")
    print(f"{len(REFUSALS)} refusals, each with its authorization error; {TOPIC['stats']} and {TOPIC['raw']} "
          f"unchanged")


def principal_of(stage: str) -> str:
    """The subject of the certificate the running stage process was given (its environment)."""
    pid = processes.running_pid(services.component(stage))
    check(pid is not None, f"{stage} is not running")
    environ = dict(kv.split("=", 1) for kv in Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0") if kv)
    props = dict(kv.split("=", 1) for kv in environ["PULSEWIRE_KAFKA_PROPERTIES"].split(","))
    check(props["security.protocol"] == "ssl", f"{stage}: security.protocol {props['security.protocol']}")
    res = subprocess.run(["openssl", "x509", "-in", props["ssl.certificate.location"], "-noout", "-subject",
                          "-nameopt", "RFC2253"], capture_output=True, text=True, check=True)
    return res.stdout.strip().removeprefix("subject=")


@pytest.mark.usefixtures("secure_stack")
def test_the_pipeline_is_exact_with_each_stage_its_own_principal(dist) -> None:
    for stage in services.SERVICES:
        check(principal_of(stage) == f"CN={stage},O=pulsewire", f"{stage} runs as {principal_of(stage)}")
    lines = SEED_CSV.read_text().splitlines()
    exp = Expected(lines)
    append_lines(lines)
    wait_store(dist, exp.total, timeout=240)
    verify(exp)
    check(len(exp.readings) == 5, "the seed has five sensors")
    print(f"{exp.total} readings exact in the store; aggregator, processor, uploader each as its own principal")
