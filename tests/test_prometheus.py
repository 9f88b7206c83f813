"""The health view's rendered files checked by Prometheus' own tool: the scrape configuration
and alert rules of nixos/lib/prometheus.nix (the appliance's defaults) pass `promtool check
config` / `check rules`, and `promtool test rules` proves what makes each alert fire."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

_EXPR = """
{ repo }:
let
  l = import (/. + repo + "/nixos/lib/pulsewire.nix") { pipelineFile = /. + repo + "/provisioning/pipeline.toml"; };
  p = import (/. + repo + "/nixos/lib/prometheus.nix") { pulsewire = l; };
in { inherit (p) rules scrapeConfigs; config = p.config { ruleFiles = [ "rules.yml" ]; }; }
"""


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    if shutil.which("promtool") is None:
        pytest.fail("promtool not found: install Debian's prometheus (apt-get install prometheus)")
    out = tmp_path_factory.mktemp("prometheus")
    env = dict(os.environ, NIX_STATE_DIR=str(out / "nix-state"))
    res = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "-E", _EXPR, "--argstr", "repo",
                          str(REPO)], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    (out / "prometheus.yml").write_text(json.dumps(doc["config"]))
    (out / "rules.yml").write_text(json.dumps(doc["rules"]))
    return out


def test_config_and_rules_pass_promtool(rendered):
    config = promtool("check", "config", "prometheus.yml", cwd=rendered)
    assert config.returncode == 0, config.stdout + config.stderr
    assert "SUCCESS: 7 rules found" in config.stdout + config.stderr
    rules = promtool("check", "rules", "rules.yml", cwd=rendered)
    assert rules.returncode == 0, rules.stdout + rules.stderr


def test_a_broken_rule_is_refused(rendered):
    doc = json.loads((rendered / "rules.yml").read_text())
    doc["groups"][0]["rules"][0]["expr"] = "up{job=="
    (rendered / "broken.yml").write_text(json.dumps(doc))
    res = promtool("check", "rules", "broken.yml", cwd=rendered)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "FAILED" in res.stdout + res.stderr and "parse error" in res.stdout + res.stderr


# Series over time and the alerts they must (and must not) raise, with the appliance's
# `for` durations and thresholds (1m stage/broker down, 2m connector task, 5m DLQ rate > 1/s,
# 5m under-replicated > 0, 10m lag > 1000 and not shrinking).
RULE_TESTS = {
    "rule_files": ["rules.yml"],
    "evaluation_interval": "15s",
    "tests": [{
        "interval": "15s",
        "input_series": [
            {"series": 'up{job="pulsewire-stages",stage="processor",unit="pulsewire-processor",instance="p"}',
             "values": "1 1 0x10"},
            {"series": 'up{job="kafka-brokers",broker="2",unit="pulsewire-kafka-2",instance="b"}', "values": "1x12"},
            {"series": 'kafka_connect_task_status{connector="pulsewire-readings-file",task="0",status="paused"}',
             "values": "1x12"},
            {"series": 'pulsewire_rejected_total{stage="aggregator",reason="bad_value"}', "values": "0+30x40"},
            {"series": 'pulsewire_rejected_total{stage="aggregator",reason="bad_csv"}', "values": "0+1x40"},
            {"series": 'kafka_server_replicamanager_underreplicatedpartitions{broker="1"}', "values": "0 0 2x40"},
            {"series": 'pulsewire_consumer_lag{group="pulsewire-uploader",topic="t",partition="0"}',
             "values": "0+100x60"},
            {"series": 'pulsewire_consumer_lag{group="pulsewire-processor",topic="t",partition="0"}',
             "values": "5000-10x60"},
        ],
        "alert_rule_test": [
            # Down since 30 s: 1m later (at 1m45s) it fires, naming its unit.
            {"eval_time": "1m", "alertname": "PulsewireStageDown", "exp_alerts": []},
            {"eval_time": "2m", "alertname": "PulsewireStageDown", "exp_alerts": [{
                "exp_labels": {"severity": "warning", "job": "pulsewire-stages", "stage": "processor",
                               "unit": "pulsewire-processor", "instance": "p"},
                "exp_annotations": {"summary": "processor (p) is not answering on /metrics: "
                                               "journalctl -u pulsewire-processor"}}]},
            {"eval_time": "2m", "alertname": "PulsewireBrokerDown", "exp_alerts": []},
            {"eval_time": "1m", "alertname": "PulsewireConnectorTaskNotRunning", "exp_alerts": []},
            {"eval_time": "2m30s", "alertname": "PulsewireConnectorTaskNotRunning", "exp_alerts": [{
                "exp_labels": {"severity": "warning", "connector": "pulsewire-readings-file",
                               "status": "running"},
                "exp_annotations": {"summary": "The file connector's task is not running (paused, failed or "
                                               "Connect down): no line of the readings file is read. "
                                               "journalctl -u pulsewire-connect -u pulsewire-connect-watch"}}]},
            # 2/s of bad_value for 5m fires; 1/15 per s of bad_csv stays under the threshold.
            {"eval_time": "9m", "alertname": "PulsewireDlqRate", "exp_alerts": [{
                "exp_labels": {"severity": "warning", "reason": "bad_value"},
                "exp_annotations": {"summary": "2 records/s go to the dead-letter topic as bad_value: look at the "
                                               "records (heartrate.dlq) and journalctl -u pulsewire-aggregator "
                                               "-u pulsewire-processor -u pulsewire-uploader"}}]},
            {"eval_time": "4m", "alertname": "PulsewireUnderReplicatedPartitions", "exp_alerts": []},
            {"eval_time": "6m", "alertname": "PulsewireUnderReplicatedPartitions", "exp_alerts": [{
                "exp_labels": {"severity": "warning", "broker": "1"},
                "exp_annotations": {"summary": "Broker 1 leads 2 under-replicated partitions: a broker is down or "
                                               "behind. journalctl -u pulsewire-kafka-1 -u pulsewire-kafka-2 "
                                               "-u pulsewire-kafka-3"}}]},
            # The uploader's lag grows past 1000 (at 2m30s) and keeps growing: fires 10m later.
            # The processor's is higher but shrinking: no alert.
            {"eval_time": "12m", "alertname": "PulsewireLagGrowing", "exp_alerts": []},
            {"eval_time": "13m", "alertname": "PulsewireLagGrowing", "exp_alerts": [{
                "exp_labels": {"severity": "warning", "group": "pulsewire-uploader"},
                "exp_annotations": {"summary": "Consumer group pulsewire-uploader is 5200 records behind and not "
                                               "catching up: journalctl -u pulsewire-uploader"}}]},
        ],
    }],
}


def test_each_alert_fires_when_and_only_when_it_should(rendered):
    (rendered / "rules-test.yml").write_text(json.dumps(RULE_TESTS))
    res = promtool("test", "rules", "rules-test.yml", cwd=rendered)
    assert res.returncode == 0, res.stdout + res.stderr
