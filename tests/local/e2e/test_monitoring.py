"""The health view on the local stack: Prometheus (Debian's) with the scrape configuration and
alert rules of nixos/lib/prometheus.nix, scraping the stages and the JMX exporter agent in
every broker and in Connect. A known workload, then every query of the pipeline dashboard
and every alert expression against it; then faults that must make their alerts fire.

The stack renders the rules with a 2 s scrape interval, a 30 s rate window, no `for`
delay and a DLQ threshold of 0 (render.py), so an alert fires at the first evaluation that
sees its condition.
"""

from __future__ import annotations

import json
import math
import time

import pytest

from expected import Expected, check
from harness import SEED_CSV, append_lines, wait_store
from pulsewire_stack import kafka, monitoring, processes, services, settings
from pulsewire_stack.render import render

pytestmark = pytest.mark.usefixtures("fresh_stack")

BOARD = settings.REPO / "provisioning" / "grafana" / "dashboards" / "pulsewire-pipeline.json"

# Bad lines, each with the reason code the DLQ must count it under (written down here,
# from the input format's rules, not taken from the project's code).
BAD = [
    ("1,heart_rate,2024-06-19 13:58:42.074766", "column_count"),
    ("1,heart_rate,2024-06-19 13:58:42.074766,70,extra", "column_count"),
    ("sensor_id,this,is,garbage,with,six", "column_count"),
    ("3,heart_rate,2024-06-19 13:58:42.074766,seventy", "bad_value"),
    ("5,heart_rate,2024-06-19 13:58:42.074766,300", "value_out_of_range"),
]
STAGES = ("aggregator", "processor", "uploader")
# Records appended to the pipeline's topics, per broker (the leader of each partition).
KAFKA_IN = 'kafka_server_brokertopicmetrics_messagesin_total{topic=~"heartrate.*"}'


def by(rows: list[dict], label: str) -> dict[str, float]:
    return {r["metric"].get(label, ""): float(r["value"][1]) for r in rows}


def kafka_in(rows: list[dict]) -> dict[tuple[str, str], float]:
    """KAFKA_IN's rows as {(broker instance, topic): records}."""
    return {(r["metric"]["instance"], r["metric"]["topic"]): float(r["value"][1]) for r in rows}


def scalar(rows: list[dict]) -> float:
    check(len(rows) == 1, f"one series expected, got {rows}")
    return float(rows[0]["value"][1])


def wait_query(what: str, expr: str, cond, timeout: float = 120) -> tuple[float, list[dict]]:
    """Polls `expr` until `cond(rows)` holds; returns the evaluation time and the rows."""
    def probe():
        at = time.time()
        rows = monitoring.query(expr, at)
        return (at, rows) if cond(rows) else None
    return processes.wait_for(what, probe, timeout, component="prometheus", interval=1)


def wait_firing(alert: str, labels: dict[str, str], timeout: float = 90) -> dict:
    def probe():
        for a in monitoring.firing():
            if a["labels"]["alertname"] == alert and labels.items() <= a["labels"].items():
                return a
        return None
    return processes.wait_for(f"alert {alert} {labels} firing", probe, timeout, component="prometheus", interval=1)


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target, with Grafana's $__rate_interval as the stack's
    rate window (4 scrapes or more, as Grafana would pick with timeInterval set)."""
    board = json.loads(BOARD.read_text())
    window = render()["monitoring"]["rateWindow"]
    return [(p["title"], t["expr"].replace("$__rate_interval", window))
            for p in board["panels"] if p["type"] != "row" for t in p["targets"]]


def test_pipeline_health(dist) -> None:
    seed = SEED_CSV.read_text().splitlines()
    lines = seed + [line for line, _ in BAD]
    exp = Expected(lines)
    check(len(exp.invalid) == len(BAD), f"the workload's bad lines: {exp.invalid}")
    reasons: dict[str, int] = {}
    for _, reason in BAD:
        reasons[reason] = reasons.get(reason, 0) + 1
    groups = {P["services"][s]["group_id"] for s in STAGES}

    # Before any line: every counter is there at 0, so a rate() has a first sample.
    at, rows = wait_query("the DLQ counters of every stage at 0",
                          'sum by (stage) (pulsewire_rejected_total)', lambda r: len(r) == 3)
    check(by(rows, "stage") == {s: 0.0 for s in STAGES}, f"rejected before the workload: {rows}")

    # The first line (a reading of sensor 1, which has more) goes first, on its own: a broker
    # creates a topic's counter at the topic's first record, and a rate needs a sample before
    # the increase. (The DLQ's partition is the bad line's, so the DLQ is left out here.)
    topics = {P["topics"][t]["name"] for t in ("raw", "readings", "stats", "processor_state")}
    append_lines(lines[:1])
    _, rows = wait_query("every topic's counter in Kafka scraped", KAFKA_IN,
                         lambda r: {s["metric"]["topic"] for s in r} >= topics)
    before = kafka_in(rows)
    append_lines(lines[1:])
    # Records/s into Kafka, each topic's evaluated when Prometheus first has a sample of the
    # second batch in a counter it had for the first (a counter created by the second batch
    # has no earlier sample to take a rate from).
    grown: dict[str, float] = {}
    def every_topic_grown(rows):
        for s in rows:
            if float(s["value"][1]) > before.get((s["metric"]["instance"], s["metric"]["topic"]), math.inf):
                grown.setdefault(s["metric"]["topic"], s["value"][0])  # the query's evaluation time
        return grown.keys() >= topics
    try:
        wait_query("the second batch in every topic's counter", KAFKA_IN, every_topic_grown)
    except settings.StackError:
        raise AssertionError(f"topics whose counter grew: {sorted(grown)}; first batch {before}; "
                             f"now {kafka_in(monitoring.query(KAFKA_IN))}") from None
    kafka_rate = next(expr for title, expr in dashboard_queries() if title == "Records/s into Kafka by topic")
    for topic, at in grown.items():
        check(by(monitoring.query(kafka_rate, at), "topic").get(topic, 0) > 0, f"records/s into {topic}")

    # Each rate is evaluated when Prometheus first has the final count of its counter, so
    # its window holds the increase (and, the counters being there from the start, a
    # sample before it).
    t_connect, _ = wait_query("Connect's written lines scraped", "sum(kafka_connect_source_task_records_written_total)",
                              lambda r: r and scalar(r) == len(lines))
    t_dlq, _ = wait_query("every bad line counted", 'sum(pulsewire_rejected_total)',
                          lambda r: r and scalar(r) == len(BAD))
    wait_store(dist, exp.total, timeout=240)
    # Every stage's counts as Prometheus last scraped them: the stages are scraped at
    # different moments, so the uploader's final count can be scraped before the
    # processor's (which committed first). Wait until every hop shows at least the workload,
    # then require exactly it.
    want_in = {"aggregator": len(lines), "processor": exp.total, "uploader": exp.total}
    want_out = {s: exp.total for s in STAGES}
    reached = lambda want: lambda r: all(by(r, "stage").get(s, -1) >= n for s, n in want.items())
    wait_query("every stage's records in scraped", "sum by (stage) (pulsewire_records_in_total)", reached(want_in))
    wait_query("every stage's records out scraped", "sum by (stage) (pulsewire_records_out_total)", reached(want_out))
    # The processor's state gauge, likewise scraped on its own schedule.
    t_done, _ = wait_query("the processor's state keys scraped", "sum(pulsewire_state_keys)",
                           lambda r: r and scalar(r) >= len(exp.readings))

    # Records in and out of every hop equal the workload's counts.
    check(scalar(monitoring.query("sum(kafka_connect_source_task_records_written_total)", t_done)) == len(lines),
          "Connect's written records")
    ins = by(monitoring.query("sum by (stage) (pulsewire_records_in_total)", t_done), "stage")
    outs = by(monitoring.query("sum by (stage) (pulsewire_records_out_total)", t_done), "stage")
    check(ins == want_in, f"records in: {ins}")
    check(outs == want_out, f"records out: {outs}")
    rejected = by(monitoring.query('sum by (reason) (pulsewire_rejected_total) > 0', t_done), "reason")
    check(rejected == {r: float(n) for r, n in reasons.items()}, f"rejected by reason: {rejected}")

    # Lag returns to 0 in every group.
    # (Lag comes from librdkafka's statistics, once a second: it can trail the counts.)
    t_caught_up, _ = wait_query("every group's lag back to 0", "sum by (group) (pulsewire_consumer_lag)",
                                lambda r: set(by(r, "group")) == groups and set(by(r, "group").values()) == {0.0})

    # Every query of the pipeline dashboard answers, with the numbers of the workload.
    ran = {}
    for title, expr in dashboard_queries():
        rows = monitoring.query(expr, t_dlq if "pulsewire_rejected_total" in expr else t_done)
        check(rows, f"{title}: the query returned nothing:\n{expr}")
        ran.setdefault(title, []).append(rows)
    dlq_rate = by(ran["DLQ records/s by reason"][0], "reason")
    check({r for r, v in dlq_rate.items() if v > 0} == set(reasons), f"DLQ rate by reason: {dlq_rate}")
    check(set(dlq_rate) >= {"column_count", "bad_value", "value_out_of_range", "late", "influx_refused"},
          f"every reason has a series from the start: {sorted(dlq_rate)}")
    hops = ran["Records/s into and out of every hop"]
    connect_rate = dashboard_queries()[0][1]
    check(scalar(monitoring.query(connect_rate, t_connect)) > 0, "Connect's rate while the lines went through")
    check({(r["metric"]["stage"], r["metric"]["topic"]) for r in hops[2]} == {
        ("aggregator", P["topics"]["readings"]["name"]), ("processor", P["topics"]["stats"]["name"]),
        ("uploader", "influxdb")}, f"records out per hop: {hops[2]}")
    check(set(by(ran["Consumer lag per group"][0], "group")) == groups, "lag of every group")
    for title in ("Commit time p99", "Processing time p50 / p99"):
        for rows in ran[title]:
            check({r["metric"]["stage"] for r in rows} == set(STAGES), f"{title}: {rows}")
            # The uploader committed its last batch just before t_done.
            check(math.isfinite(by(rows, "stage")["uploader"]), f"{title}: {rows}")
    check(scalar(ran["State keys"][0]) == len(exp.readings), f"state keys: {ran['State keys']}")
    check(math.isfinite(scalar(ran["Restore time"][0])), f"restore time: {ran['Restore time']}")
    check(scalar(ran["Brokers up"][0]) == 3, "brokers up")
    check(scalar(ran["Under-replicated partitions"][0]) == 0, "under-replicated partitions")
    check(scalar(ran["Connector tasks running"][0]) == 1, "connector tasks running")
    check(scalar(ran["Stages up"][0]) == 3, "stages up")
    check({t for t, _ in dashboard_queries()} == set(ran), "every panel ran")

    # Every alert: what it watches answers; its expression evaluates. The DLQ one fires
    # (threshold 0 here) with the bad lines' reasons; no other fires on a healthy stack.
    alerts = {a["alert"]: a for a in render()["monitoring"]["alertRules"]}
    for name, a in alerts.items():
        check(monitoring.query(a["signal"], t_done), f"{name}: its signal returned nothing:\n{a['signal']}")
        monitoring.query(a["expr"], t_done)
    check(by(monitoring.query(alerts["PulsewireDlqRate"]["expr"], t_dlq), "reason").keys() == set(reasons),
          "the DLQ alert's expression")
    check(by(monitoring.query(alerts["PulsewireLagGrowing"]["signal"], t_caught_up), "group")
          == {g: 0.0 for g in groups}, "the lag alert's signal")
    for reason in reasons:
        wait_firing("PulsewireDlqRate", {"reason": reason})
    # Nothing else, once the freshly started stack has settled (a new topic's replicas
    # catching up, the connector's task being assigned fire their alerts for a moment).
    others = lambda: {a["labels"]["alertname"] for a in monitoring.firing()} - {"PulsewireDlqRate"}
    try:
        processes.wait_for("no alert but the DLQ's firing", lambda: not others(), 60, component="prometheus")
    except settings.StackError:
        raise AssertionError(f"alerts firing on a healthy stack: {others()}") from None

    # A stage stopped: its down alert fires, naming its unit.
    processes.stop("processor", timeout=services.stop_timeout("processor"))
    down = wait_firing("PulsewireStageDown", {"stage": "processor"})
    check("journalctl -u pulsewire-processor" in down["annotations"]["summary"], down["annotations"]["summary"])
    check(monitoring.query(alerts["PulsewireStageDown"]["expr"]), "the stage-down expression")
    services.start_service("processor")

    # The connector paused: its task is not running.
    name = render()["connectorName"]
    status, body = kafka.connect_http("PUT", f"/connectors/{name}/pause")
    check(status == 202, f"pausing {name}: HTTP {status} {body[:200]!r}")
    task = wait_firing("PulsewireConnectorTaskNotRunning", {"connector": name})
    check("journalctl -u pulsewire-connect" in task["annotations"]["summary"], task["annotations"]["summary"])
    paused = by(monitoring.query(alerts["PulsewireConnectorTaskNotRunning"]["signal"]), "status")
    check(paused == {"paused": 1.0}, f"the task's state: {paused}")

    # A broker stopped: it is down, and the partitions it held are under-replicated.
    processes.stop("broker-3", timeout=30)
    wait_firing("PulsewireBrokerDown", {"broker": "3"})
    wait_firing("PulsewireUnderReplicatedPartitions", {})
    check(scalar(monitoring.query('sum(up{job="kafka-brokers"})')) == 2, "brokers up with one stopped")
    print(f"{len(lines)} lines, {exp.total} readings, DLQ {reasons}; {len(ran)} panels, {len(alerts)} alerts")


P = settings.PIPELINE
