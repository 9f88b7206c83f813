# The end-to-end VM test (flake output checks.<system>.vm): boots the appliance
# with the simulator replaying provisioning/data/seed-readings.csv and proves
#   - every unit comes up and logs to the journal;
#   - InfluxDB holds exactly the statistics of provisioning/data/seed-expected.jsonl
#     (asked with `influx query`, Flux);
#   - Grafana serves the provisioned dashboard, its datasource health check
#     passes, admin/admin does not log in, and every panel query, sent through
#     Grafana's /api/ds/query, gives the numbers of the seed (tests/dashboards.py);
#   - with one broker stopped, appended lines (and a malformed one) still flow
#     through and nothing is lost or counted twice;
#   - the uploader and Grafana start only once InfluxDB accepts their tokens;
#   - Prometheus has every target up (stages, brokers' and Connect's JMX agents),
#     the alert rules and the pipeline dashboard are provisioned;
#   - every Pulsewire unit rates "OK" or better in `systemd-analyze security`
#     (the level compared as a level: ./security.py).
#
# Called from flake.nix: pkgs.testers.runNixOSTest (import ./tests/vm/appliance.nix { inherit self; })
{ self }:
{ lib, ... }:
let
  pipeline = builtins.fromTOML (builtins.readFile ../../provisioning/pipeline.toml);
  expected = map builtins.fromJSON (
    lib.filter (l: l != "") (lib.splitString "\n" (builtins.readFile ../../provisioning/data/seed-expected.jsonl))
  );
  brokerIds = lib.range 1 pipeline.kafka.brokers;
  bootstrap = lib.concatMapStringsSep "," (
    id: "${pipeline.kafka.host}:${toString (pipeline.kafka.plaintext_port_base + 2 * (id - 1))}"
  ) brokerIds;
in
{
  name = "pulsewire-appliance";

  nodes.appliance =
    { lib, pkgs, ... }:
    {
      imports = [
        self.nixosModules.default
        self.nixosModules.appliance
      ];

      services.pulsewire.simulator.replayFile = ../../provisioning/data/seed-readings.csv;
      # The seed's readings are from 2024, far outside the 30-day retention of
      # pipeline.toml: keep them forever here, or InfluxDB would drop them.
      services.pulsewire.influxdb.retention = 0;

      # Every command line of every process, from early boot until first boot
      # is done (Grafana up), for the check that no secret is on one. Bash
      # builtins only, so the scan itself starts no process per read.
      systemd.services.cmdline-scan = {
        wantedBy = [ "sysinit.target" ];
        before = [ "pulsewire-secrets.service" ];
        unitConfig.DefaultDependencies = false;
        path = [ pkgs.systemd ];
        script = ''
          out=/run/pulsewire-cmdlines
          end=$((SECONDS + 1200))
          while [ "$SECONDS" -lt "$end" ] && ! systemctl is-active -q grafana.service; do
            for f in /proc/[0-9]*/cmdline; do
              mapfile -d "" args < "$f" 2>/dev/null || continue
              [ "''${#args[@]}" -gt 0 ] && printf '%s\n' "''${args[*]}"
            done >> "$out"
          done
          touch "$out.done"
        '';
      };

      virtualisation = {
        memorySize = 6144;
        cores = 4;
        diskSize = 4096;
      };
      environment.systemPackages = [
        pkgs.influxdb2-cli
        pkgs.curl
        pkgs.jq
      ];
    };

  testScript = ''
    import sys

    # The test's helpers, tested by `pytest tests` (tests/check).
    sys.path[:0] = ["${./.}", "${../.}"]
    from dashboards import csv_readings
    from grafana_panels import check_dashboard
    from security import rated_at_least, security_rating

    import csv
    import io
    import json
    import shlex
    import time

    expected = json.loads(${builtins.toJSON (builtins.toJSON expected)})
    org = ${builtins.toJSON pipeline.influxdb.org}
    bucket = ${builtins.toJSON pipeline.influxdb.bucket}
    readings = ${builtins.toJSON pipeline.connect.file}
    bootstrap = ${builtins.toJSON bootstrap}
    dlq_topic = ${builtins.toJSON pipeline.topics.dlq.name}
    secrets = "/var/lib/pulsewire-secrets"
    stages = ["aggregator", "processor", "uploader"]
    units = (
        ["pulsewire-secrets.service"]
        + [f"pulsewire-kafka-{i}.service" for i in ${builtins.toJSON brokerIds}]
        + [
            "pulsewire-kafka-topics.service",
            "pulsewire-connect.service",
            "pulsewire-connect-register.service",
            "pulsewire-influxdb-setup.service",
            "influxdb2.service",
            "pulsewire-influxdb-ready.service",
            "pulsewire-influxdb-tasks.service",
            "grafana.service",
        ]
        + [f"pulsewire-{s}.service" for s in stages]
    )


    def flux(query):
        """Runs a Flux query with the operator token; returns the rows as dicts."""
        # The token through the environment, not the command line.
        out = appliance.succeed(
            f"INFLUX_TOKEN=\"$(cat {secrets}/influx-admin-token)\" "
            f"influx query --host http://127.0.0.1:8086 --org {org} --raw "
            + shlex.quote(query)
        )
        lines = [l for l in out.splitlines() if l and not l.startswith("#")]
        rows = []
        header = None
        for row in csv.reader(io.StringIO("\n".join(lines))):
            if row[1:3] == ["result", "table"]:
                header = row
                continue
            if header and len(row) == len(header):
                rows.append(dict(zip(header, row)))
        return rows


    def stats():
        """{sensor_id: {count, min, max, mean, points, last_value, last_time}} from InfluxDB."""
        result = {}
        for r in flux(f"""
            from(bucket: "{bucket}") |> range(start: 0)
              |> filter(fn: (r) => r._measurement == "heart_rate")
              |> filter(fn: (r) => r._field == "count" or r._field == "min" or r._field == "max" or r._field == "mean")
              |> group(columns: ["sensor_id", "_field"]) |> last() |> group()
        """):
            result.setdefault(int(r["sensor_id"]), {})[r["_field"]] = float(r["_value"])
        for r in flux(f"""
            from(bucket: "{bucket}") |> range(start: 0)
              |> filter(fn: (r) => r._measurement == "heart_rate" and r._field == "value")
              |> group(columns: ["sensor_id"]) |> count() |> group()
        """):
            result.setdefault(int(r["sensor_id"]), {})["points"] = int(r["_value"])
        for r in flux(f"""
            from(bucket: "{bucket}") |> range(start: 0)
              |> filter(fn: (r) => r._measurement == "heart_rate" and r._field == "value")
              |> group(columns: ["sensor_id"]) |> last() |> group()
        """):
            s = result.setdefault(int(r["sensor_id"]), {})
            s["last_value"] = float(r["_value"])
            s["last_time"] = r["_time"]
        return result


    def same_time(a, b):
        # InfluxDB prints RFC 3339 with up to nanoseconds; compare to microseconds.
        def norm(t):
            date, _, frac = t.rstrip("Z").partition(".")
            return date + "." + (frac + "000000")[:6]
        return norm(a) == norm(b)


    def check_sensor(actual, want):
        sid = want["sensor_id"]
        got = actual.get(sid)
        assert got is not None, f"sensor {sid}: no data in InfluxDB"
        for key in ("count", "min", "max", "mean"):
            assert abs(got.get(key, -1) - float(want[key])) < 1e-9, f"sensor {sid}: {key} = {got.get(key)}, want {want[key]}"
        assert got.get("points") == want["count"], f"sensor {sid}: {got.get('points')} points, want {want['count']}"
        if "last_value" in want:
            assert got.get("last_value") == float(want["last_value"]), f"sensor {sid}: last value {got.get('last_value')}, want {want['last_value']}"
        if "last_time" in want:
            assert same_time(got.get("last_time", ""), want["last_time"]), f"sensor {sid}: last time {got.get('last_time')}, want {want['last_time']}"


    def wait_for_stats(wanted, timeout=600):
        deadline = time.monotonic() + timeout
        while True:
            actual = stats()
            try:
                for want in wanted:
                    check_sensor(actual, want)
                return actual
            except AssertionError as e:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{e}; InfluxDB has {actual}")
                time.sleep(5)


    def append(lines):
        appliance.succeed(
            "printf '%s\\n' " + " ".join(shlex.quote(l) for l in lines) + f" >> {readings}"
        )


    def batch(sensor, values, minute):
        lines = [f"{sensor},heart_rate,2024-06-19 14:{minute:02d}:{i:02d}.000000,{v}" for i, v in enumerate(values)]
        want = {
            "sensor_id": sensor, "count": len(values), "min": min(values), "max": max(values),
            "mean": sum(values) / len(values), "last_value": values[-1],
            "last_time": f"2024-06-19T14:{minute:02d}:{len(values) - 1:02d}.000000Z",
        }
        return lines, want


    start_all()

    with subtest("every unit starts"):
        for unit in units:
            appliance.wait_for_unit(unit, timeout=900)
        appliance.wait_for_open_port(3000)
        appliance.wait_for_open_port(8086)

    with subtest("secrets are generated, root-only, not admin/admin"):
        appliance.succeed(f"test \"$(stat -c %a:%U {secrets})\" = 700:root")
        appliance.succeed(f"test \"$(stat -c %a:%U {secrets}/grafana-admin-password)\" = 400:root")
        appliance.succeed(f"test \"$(stat -c %a:%U {secrets}/influx-admin-token)\" = 400:root")
        appliance.succeed(f"test \"$(stat -c %a:%U {secrets}/influx-uploader-token)\" = 400:root")
        appliance.succeed(f"test \"$(stat -c %a:%U {secrets}/connect-rest-password)\" = 400:root")
        appliance.fail(f"grep -qx admin {secrets}/grafana-admin-password")

    with subtest("first boot: no generated secret on any process's command line"):
        appliance.wait_for_file("/run/pulsewire-cmdlines.done", timeout=300)
        scanned = int(appliance.succeed("wc -l < /run/pulsewire-cmdlines").strip())
        # The scan saw the setup's private influxd and the ready check's curl.
        appliance.succeed("grep -q 'influxd --bolt-path' /run/pulsewire-cmdlines")
        appliance.succeed("grep -q '^curl ' /run/pulsewire-cmdlines")
        print(f"{scanned} command lines scanned during first boot")
        for name in ["influx-admin-password", "influx-admin-token", "influx-uploader-token",
                     "influx-grafana-token", "grafana-admin-password", "grafana-secret-key",
                     "connect-rest-password"]:
            appliance.fail(f"grep -qF -- \"$(cat {secrets}/{name})\" /run/pulsewire-cmdlines")

    with subtest("InfluxDB: the uploader's token may write but not query; no pprof, no metrics"):
        appliance.succeed(f"printf 'Authorization: Token %s\\n' \"$(cat {secrets}/influx-uploader-token)\" > /tmp/uploader-auth")
        code = appliance.succeed(
            "curl -s -o /dev/null -w '%{http_code}' -H @/tmp/uploader-auth -H 'Content-Type: application/json' "
            f"-d '{{\"query\": \"from(bucket: \\\"{bucket}\\\") |> range(start: -1h)\"}}' "
            f"'http://127.0.0.1:8086/api/v2/query?org={org}'"
        ).strip()
        assert code in ("401", "403", "404"), f"the uploader's token queried with HTTP {code}"
        for path in ["/debug/pprof/", "/metrics"]:
            code = appliance.succeed(f"curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1:8086{path}").strip()
            assert code in ("403", "404"), f"{path} answered HTTP {code}"

    with subtest("first boot: the uploader and Grafana start once InfluxDB accepts their tokens"):
        def entered(unit):
            return int(appliance.succeed(f"systemctl show -P ActiveEnterTimestampMonotonic {unit}").strip())
        ready = entered("pulsewire-influxdb-ready.service")
        assert ready > 0, "pulsewire-influxdb-ready never became active"
        for unit in ["pulsewire-uploader.service", "grafana.service"]:
            started = int(appliance.succeed(f"systemctl show -P ExecMainStartTimestampMonotonic {unit}").strip())
            assert started >= ready, f"{unit} started at {started}, before the tokens worked at {ready}"
        appliance.succeed("journalctl -u pulsewire-influxdb-ready -o cat --no-pager | grep -q 'accepts the uploader'")

    with subtest("the seed replay arrives with exact statistics"):
        seed_stats = wait_for_stats(expected)
        print(f"InfluxDB statistics: {seed_stats}")

    with subtest("the simulator replayed the seed file"):
        appliance.wait_until_succeeds(f"test \"$(wc -l < {readings})\" -ge {sum(e['count'] for e in expected)}")
        appliance.succeed("journalctl -u pulsewire-simulator.service -o cat --no-pager | grep -q .")
        appliance.fail("systemctl is-failed pulsewire-simulator.service")

    with subtest("Grafana: provisioned dashboard, healthy datasource, no admin/admin"):
        pw = appliance.succeed(f"cat {secrets}/grafana-admin-password").strip()
        auth = f"-u admin:{shlex.quote(pw)}"
        appliance.succeed(
            f"curl -sSf {auth} http://127.0.0.1:3000/api/dashboards/uid/pulsewire-heartrate"
            " | jq -e '.dashboard.templating.list | map(.name) | index(\"sensor\")'"
        )
        appliance.wait_until_succeeds(
            f"curl -sSf {auth} http://127.0.0.1:3000/api/datasources/uid/pulsewire-influxdb/health"
            " | jq -e '.status == \"OK\"'",
            timeout=300,
        )
        appliance.fail("curl -sSf -u admin:admin http://127.0.0.1:3000/api/dashboards/uid/pulsewire-heartrate")

    with subtest("Grafana: every dashboard panel, through /api/ds/query, gives the seed's numbers"):
        seed = csv_readings(${builtins.toJSON (lib.splitString "\n" (builtins.readFile ../../provisioning/data/seed-readings.csv))})
        board = json.loads(appliance.succeed(
            f"curl -sSf {auth} http://127.0.0.1:3000/api/dashboards/uid/pulsewire-heartrate"
        ))["dashboard"]
        minute_ms = 60_000
        first_ms = min(t for r in seed.values() for t in r) // 10**6
        start_ms = first_ms // minute_ms * minute_ms
        stop_ms = start_ms + 60 * minute_ms

        def ask(query, interval_ms):
            body = {
                "queries": [{
                    "refId": "A", "datasource": {"uid": "pulsewire-influxdb", "type": "influxdb"},
                    "query": query, "intervalMs": interval_ms, "maxDataPoints": 100000,
                }],
                "from": str(start_ms), "to": str(stop_ms),
            }
            appliance.succeed(f"echo {shlex.quote(json.dumps(body))} > /tmp/ds-query.json")
            out = appliance.succeed(
                f"curl -sSf {auth} -H 'Content-Type: application/json'"
                " --data @/tmp/ds-query.json http://127.0.0.1:3000/api/ds/query"
            )
            result = json.loads(out)["results"]["A"]
            assert "error" not in result, f"Grafana: {result['error']}\n{query}"
            return result.get("frames", [])

        ran = check_dashboard(ask, board, seed, "heart_rate", 1000)
        print(f"{ran} panel queries through Grafana gave the seed's numbers")

    with subtest("batch layer: the rollup tasks exist and run successfully"):
        appliance.succeed(
            f"printf 'Authorization: Token %s\\n' \"$(cat {secrets}/influx-admin-token)\" > /tmp/influx-auth"
        )
        api = "curl -sSf -H @/tmp/influx-auth -H 'Content-Type: application/json' http://127.0.0.1:8086"
        for window in ${builtins.toJSON pipeline.influxdb.rollups.windows}:
            name = f"pulsewire-rollup-{window}"
            tasks = json.loads(appliance.succeed(f"{api}/api/v2/tasks?name={name}"))["tasks"]
            assert [t["status"] for t in tasks if t["name"] == name] == ["active"], f"{name}: {tasks}"
            task = tasks[0]["id"]
            if window == "1m":
                # Scheduled every minute: a run of its own must have succeeded.
                appliance.wait_until_succeeds(
                    f"{api}/api/v2/tasks/{task}/runs | jq -e '[.runs[].status] | index(\"success\")'", timeout=180
                )
            else:
                # Hourly and daily ones may not have come due yet: run each once now.
                run = json.loads(appliance.succeed(f"{api}/api/v2/tasks/{task}/runs -X POST --data '{{}}'"))["id"]
                appliance.wait_until_succeeds(
                    f"{api}/api/v2/tasks/{task}/runs | jq -e '.runs[] | select(.id == \"{run}\") | .status == \"success\"'",
                    timeout=120,
                )
        appliance.succeed(
            f"curl -sSf {auth} http://127.0.0.1:3000/api/dashboards/uid/pulsewire-history"
            " | jq -e '.dashboard.links[0].url == \"/d/pulsewire-heartrate\"'"
        )

    with subtest("health: Prometheus has every target up, the alert rules and the pipeline dashboard are provisioned"):
        prom = "http://127.0.0.1:${toString pipeline.prometheus.port}"
        # Four stages, three brokers' and Connect's JMX exporter agents.
        appliance.wait_until_succeeds(
            f"curl -sSf {prom}/api/v1/targets | jq -e '[.data.activeTargets[] | select(.health == \"up\")] | length == 8'",
            timeout=180,
        )
        appliance.succeed(
            f"curl -sSf {prom}/api/v1/rules | jq -e '[.data.groups[].rules[].name] | sort == "
            "[\"PulsewireBrokerDown\", \"PulsewireConnectorTaskNotRunning\", \"PulsewireDlqRate\", "
            "\"PulsewireLagGrowing\", \"PulsewireStageDown\", \"PulsewireUnderReplicatedPartitions\"]'"
        )
        appliance.succeed(
            f"curl -sSf {prom}/api/v1/query --data-urlencode 'query=sum(up{{job=\"kafka-brokers\"}})'"
            " | jq -e '.data.result[0].value[1] == \"3\"'"
        )
        appliance.wait_until_succeeds(
            f"curl -sSf {prom}/api/v1/query --data-urlencode 'query=kafka_connect_task_status{{status=\"running\"}}'"
            " | jq -e '.data.result | length == 1'",
            timeout=120,
        )
        appliance.succeed(
            f"curl -sSf {auth} http://127.0.0.1:3000/api/dashboards/uid/pulsewire-pipeline"
            " | jq -e '.dashboard.links[0].url == \"/d/pulsewire-heartrate\"'"
        )
        appliance.succeed(
            f"curl -sSf {auth} http://127.0.0.1:3000/api/datasources/uid/pulsewire-prometheus/health"
            " | jq -e '.status == \"OK\"'"
        )
        # Grafana shows the rules through the datasource (its Prometheus rules API proxy).
        appliance.succeed(
            f"curl -sSf {auth} http://127.0.0.1:3000/api/prometheus/pulsewire-prometheus/api/v1/rules"
            " | jq -e '[.data.groups[].rules[]] | length == 6'"
        )

    with subtest("every Pulsewire unit logs to the journal"):
        for unit in [u for u in units if u.startswith("pulsewire-")] + ["pulsewire-simulator.service"]:
            appliance.succeed(f"journalctl -u {unit} -o cat --no-pager | grep -q .")
        appliance.succeed("journalctl -u pulsewire-kafka-1.service -o cat --no-pager | grep -q 'Kafka Server started'")

    with subtest("Connect's REST API answers 401 without the credential"):
        connect = "http://127.0.0.1:${toString pipeline.connect.rest_port}"
        name = ${builtins.toJSON pipeline.connect.connector_name}
        # A PUT carries a config that would point the connector at /etc/shadow.
        hostile = shlex.quote(json.dumps({"connector.class": "FileStreamSource", "file": "/etc/shadow"}))
        def connect_code(method, path, auth=""):
            data = f"-H 'Content-Type: application/json' --data {hostile}" if method == "PUT" else ""
            return appliance.succeed(
                f"curl -s -o /dev/null -w '%{{http_code}}' {auth} {data} -X {method} {connect}{path}"
            ).strip()
        appliance.succeed("printf 'Authorization: Basic %s\\n' \"$(printf 'pulsewire:wrong' | base64 -w0)\" > /tmp/connect-wrong")
        for auth in ["", "-H @/tmp/connect-wrong"]:
            for method, path in [("GET", "/connectors"), ("PUT", f"/connectors/{name}/config"),
                                 ("PUT", f"/connectors/{name}/pause"), ("DELETE", f"/connectors/{name}")]:
                code = connect_code(method, path, auth)
                assert code == "401", f"{method} {path} {auth or 'without a credential'}: HTTP {code}"
        appliance.succeed(
            f"printf 'Authorization: Basic %s\\n' \"$(printf 'pulsewire:%s' \"$(cat {secrets}/connect-rest-password)\" | base64 -w0)\""
            " > /tmp/connect-auth"
        )
        assert json.loads(appliance.succeed(f"curl -sSf -H @/tmp/connect-auth {connect}/connectors")) == [name]
        config = json.loads(appliance.succeed(f"curl -sSf -H @/tmp/connect-auth {connect}/connectors/{name}/config"))
        assert config["file"] == readings, f"the connector's file is {config['file']}"

    with subtest("the Connect watch finds the connector and its task RUNNING, under its limits"):
        # provisioning/connect/watch exits 0 only then; the timer runs it every 30 s.
        appliance.succeed("systemctl start pulsewire-connect-watch.service")
        appliance.succeed("systemctl is-active pulsewire-connect-watch.timer")
        for unit in [u for u in units if u.startswith("pulsewire-")] + ["influxdb2.service"]:
            limits = appliance.succeed(f"systemctl show -P MemoryMax -P TasksMax {unit}").split()
            assert "infinity" not in limits, f"{unit}: MemoryMax/TasksMax {limits}"

    with subtest("every Pulsewire unit is sandboxed (systemd-analyze security: OK or better)"):
        # tests/test_unit_sandbox.py rates the same units offline, from the modules.
        for unit in [u for u in units if u.startswith("pulsewire-")] + [
            "pulsewire-simulator.service",
            "pulsewire-connect-watch.service",
        ]:
            out = appliance.succeed(f"systemd-analyze security --no-pager {unit}")
            unit, exposure, level = security_rating(out)
            print(f"{unit}: {exposure} {level}")
            assert rated_at_least(out, "OK"), f"{unit}: {exposure} {level}, want OK or better"

    with subtest("one broker down: the flow continues, nothing lost or doubled"):
        appliance.succeed("systemctl stop pulsewire-kafka-3.service")
        lines, want = batch(11, [90, 100, 110, 100, 100], 0)
        append(lines[:2] + ["this is not a reading"] + lines[2:])
        wait_for_stats(expected + [want])
        # The malformed line went to the dead-letter topic, not to InfluxDB.
        appliance.succeed(
            f"kafka-console-consumer.sh --bootstrap-server {bootstrap} --topic {dlq_topic}"
            " --from-beginning --max-messages 1 --timeout-ms 60000 --isolation-level read_committed"
            " | grep -q 'this is not a reading'"
        )

    with subtest("the broker comes back and catches up"):
        appliance.succeed("systemctl start pulsewire-kafka-3.service")
        appliance.wait_for_unit("pulsewire-kafka-3.service")
        lines2, want2 = batch(12, [61, 62, 63], 1)
        append(lines2)
        final = wait_for_stats(expected + [want, want2])
        assert set(final) == {e["sensor_id"] for e in expected} | {11, 12}, f"unexpected sensors: {sorted(final)}"
        appliance.wait_until_succeeds(
            f"test -z \"$(kafka-topics.sh --bootstrap-server {bootstrap} --describe --under-replicated-partitions)\"",
            timeout=300,
        )
  '';
}
