"""Kafka Connect's REST API asks for the credential (issue 12): without it, or with a wrong
password, a local process can neither read the connectors nor point the connector's `file`
elsewhere, pause it or delete it; the register and watch scripts, which have it, keep the
pipeline flowing."""

from __future__ import annotations

import json

import pytest

from expected import Expected, check
from harness import P, SEED_CSV, append_lines, verify, wait_store
from pulsewire_stack import kafka, processes
from pulsewire_stack.render import render

CONNECTOR = P["connect"]["connector_name"]
REFUSED = (401, b"User cannot access the resource.")

pytestmark = pytest.mark.usefixtures("fresh_stack")


def test_connects_rest_api_answers_401_without_the_credential(dist) -> None:
    url = kafka.connect_url
    registered = dict(render()["connectorConfig"], name=CONNECTOR)

    def config() -> tuple[int, dict]:
        code, out = kafka.connect_http("GET", f"/connectors/{CONNECTOR}/config")
        return code, json.loads(out)

    check(config() == (200, registered), f"the registered connector config: {config()}")

    hostile = json.dumps(dict(render()["connectorConfig"], file="/etc/passwd")).encode()
    json_body = {"Content-Type": "application/json"}
    wrong = kafka.connect_auth("not-the-password")
    for headers in ({}, wrong):
        who = "with a wrong password" if headers else "without a credential"
        for method, path, body in [
            ("GET", "/connectors", None),
            ("GET", f"/connectors/{CONNECTOR}/config", None),
            ("PUT", f"/connectors/{CONNECTOR}/config", hostile),
            ("PUT", f"/connectors/{CONNECTOR}/pause", None),
            ("DELETE", f"/connectors/{CONNECTOR}/offsets", None),
            ("DELETE", f"/connectors/{CONNECTOR}", None),
        ]:
            got = processes.http(method, url(path), body, {**json_body, **headers})
            check(got == REFUSED, f"{method} {path} {who}: {got}")

    # Nothing changed: the same config, the connector and its task RUNNING, and the lines flow.
    check(config() == (200, registered), f"config after the refused calls: {config()}")
    code, out = kafka.connect_http("GET", "/connectors")
    check((code, json.loads(out)) == (200, [CONNECTOR]), f"GET /connectors with the credential: {code} {out!r}")
    check(kafka.connector_running(CONNECTOR), "the connector or its task is not RUNNING")
    lines = SEED_CSV.read_text().splitlines()
    exp = Expected(lines)
    append_lines(lines)
    wait_store(dist, exp.total, timeout=240)
    verify(exp)
    print(f"without the credential or with a wrong password: 401 on 6 calls each; with it: 200, "
          f"{exp.total} readings in the store")
