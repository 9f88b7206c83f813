"""The local stack runs what the renderer gives the units (tests/local/pulsewire_stack), with
its own paths only. Needs nix-instantiate, as tests/nix/check does; no Kafka."""

import json
import os
import subprocess
import sys
from pathlib import Path

LOCAL = Path(__file__).resolve().parent / "local"
sys.path.insert(0, str(LOCAL))

from pulsewire_stack import render, services, settings, stack  # noqa: E402

STAGES = ("simulator", "aggregator", "processor", "uploader")


def test_every_stage_runs_its_rendered_command_with_local_paths(monkeypatch):
    monkeypatch.setattr(render, "tls_dir", lambda: None)  # a plain stack, whatever the state holds
    monkeypatch.setattr(render.store_tls, "ca_file", lambda: None)
    r = render.render(fresh=True)
    assert sorted(r["services"]) == sorted(STAGES)
    for stage in STAGES:
        cmd = r["services"][stage]
        port = settings.PIPELINE["services"][stage]["metrics_port"]
        assert cmd["argv"][:3] == [str(settings.bin_dir() / f"pulsewire-{stage}"), "--metrics-addr", f"127.0.0.1:{port}"]
        assert cmd["environment"] == {
            "PULSEWIRE_BOOTSTRAP_SERVERS": "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096",
            "PULSEWIRE_LOG_LEVEL": "info",
            "PULSEWIRE_PIPELINE": str(settings.PIPELINE_FILE),
        }
        assert cmd["stopTimeout"] == 60
    assert r["services"]["simulator"]["argv"][3:] == ["--output", str(settings.readings_file())]
    # The uploader gets the FILE of its write-only token, never the token.
    assert r["services"]["uploader"]["argv"][3:] == [
        "--influx-url", "http://127.0.0.1:8086", "--influx-token-file", str(services.token_file())]
    assert services.token_file() == settings.STATE / "secrets" / "influx-pulsewire-uploader-token"
    assert r["storeUrl"] == "http://127.0.0.1:8086"


def test_store_tls_gives_the_uploader_https_and_the_stores_ca(monkeypatch, tmp_path):
    """`up --store-tls`: the store's URL is https and the uploader trusts its certificate."""
    monkeypatch.setattr(render, "tls_dir", lambda: None)
    monkeypatch.setattr(render.store_tls, "ca_file", lambda: tmp_path / "store.crt")
    try:
        r = render.render(fresh=True)
    finally:
        monkeypatch.undo()
        render.render(fresh=True)
    assert r["storeUrl"] == "https://127.0.0.1:8086"
    expected = ["--influx-url", "https://127.0.0.1:8086", "--influx-token-file", str(services.token_file()),
                "--influx-ca-file", str(tmp_path / "store.crt")]
    assert r["services"]["uploader"]["argv"][3:] == expected
    assert [i["argv"][3:] for i in r["instances"]["uploader"]] == [expected] * render.INSTANCES


def test_secure_kafka_renders_each_client_as_its_principal(monkeypatch, tmp_path):
    """`up --secure-kafka`: the same commands, plus each stage's own certificate; SSL brokers."""
    monkeypatch.setattr(render, "tls_dir", lambda: tmp_path)
    try:
        r = render.render(fresh=True)
    finally:
        monkeypatch.undo()
        render.render(fresh=True)
    assert r["secure"]
    for stage in ("aggregator", "processor", "uploader"):
        assert r["services"][stage]["environment"]["PULSEWIRE_KAFKA_PROPERTIES"] == (
            f"security.protocol=ssl,ssl.ca.location={tmp_path}/ca.crt,"
            f"ssl.certificate.location={tmp_path}/{stage}.crt,ssl.key.location={tmp_path}/{stage}.key")
        assert all(i["environment"]["PULSEWIRE_KAFKA_PROPERTIES"] == r["services"][stage]["environment"][
            "PULSEWIRE_KAFKA_PROPERTIES"] for i in r["instances"][stage])
    assert "PULSEWIRE_KAFKA_PROPERTIES" not in r["services"]["simulator"]["environment"]
    for b in r["brokers"]:
        assert f"ssl.keystore.location={tmp_path}/broker.pem\n" in b["properties"]
        assert "ssl.client.auth=required\n" in b["properties"]
    assert f"ssl.keystore.location={tmp_path}/connect.pem\n" in r["connectProperties"]
    assert f"ssl.keystore.location={tmp_path}/admin.pem\n" in r["adminProperties"]


def test_service_environment_is_the_units_not_the_callers(monkeypatch):
    monkeypatch.setenv("PULSEWIRE_LOG_LEVEL", "trace")
    monkeypatch.setenv("PULSEWIRE_STRAY", "1")
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/x")
    env = services.service_env("processor")
    assert env["PULSEWIRE_LOG_LEVEL"] == "info"
    assert "PULSEWIRE_STRAY" not in env and "NOTIFY_SOCKET" not in env
    assert {k: v for k, v in env.items() if k.startswith("PULSEWIRE_")} == services.command("processor")["environment"]


def test_a_port_offset_moves_every_port_and_the_lock(tmp_path):
    code = ("import json; from pulsewire_stack import processes, render, stack; r = render.render(); "
            "print(json.dumps([r['bootstrapServers'], r['restPort'], r['influxdb']['port'], "
            "r['services']['aggregator']['metricsPort'], stack.render_ports(), processes.LOCK.name]))")
    env = dict(os.environ, PULSEWIRE_PORT_OFFSET="10000", PULSEWIRE_LOCAL_STATE=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], cwd=LOCAL, env=env, capture_output=True, text=True, check=True)
    boot, rest, store, metrics, ports, lock = json.loads(out.stdout)
    assert boot == "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096"
    assert (rest, store, metrics) == (18083, 18086, 19301)
    assert sorted(ports) == sorted(p + 10000 for p in stack.render_ports())
    assert lock == "stack-10000.lock"


def test_instance_two_has_its_own_name_and_metrics_port():
    # As the appliance's unit pulsewire-<stage>-2 on host "localhost" (nixos/pipeline.nix).
    for stage in ("aggregator", "processor"):
        port = settings.PIPELINE["services"][stage]["metrics_port"]
        assert services.command(stage)["argv"][1:] == ["--metrics-addr", f"127.0.0.1:{port}", "--instance", "localhost-1"]
        assert services.command(stage, 2)["argv"][1:] == [
            "--metrics-addr", f"127.0.0.1:{port + 100}", "--instance", "localhost-2"]
        assert services.metrics_port(stage, 2) == port + 100
        assert services.command(stage, 2)["environment"] == services.command(stage)["environment"]
        assert (services.component(stage), services.component(stage, 2)) == (stage, f"{stage}-2")
    assert services.metrics_port("uploader", 2) == settings.PIPELINE["services"]["uploader"]["metrics_port"] + 100
    try:
        services.command("simulator", 2)
    except settings.StackError as e:
        assert str(e) == "simulator runs once: it has no instance 2"
    else:
        raise AssertionError("a second simulator was rendered")
