"""`tests/local/stack`: the operator's commands for the local stack (see tests/local/README.md).

  tests/local/stack up [--fresh] [--no-services] [--no-store] [--no-build] [--retention SECONDS] [--secure-kafka] [--store-tls]
  tests/local/stack down [--purge]
  tests/local/stack status
  tests/local/stack kafka-libs      # the folder of the Kafka jars (resolved once), for bench/
"""

from __future__ import annotations

import argparse
import json
import sys

from . import kafka, stack, tls
from .processes import exclusive, running_pid
from .render import render
from .services import read_token_file
from .settings import STATE, StackError, bin_dir, readings_file
from .store import store


def cmd_up(args) -> int:
    with exclusive("tests/local/stack up"):
        if stack.running_components():
            print(f"the stack is already running: {', '.join(stack.running_components())}")
            print("`tests/local/stack status` shows it; `tests/local/stack down` stops it")
            return 0
        if args.fresh:
            stack.down(purge=True)
        stack.up(services=not args.no_services, build=not args.no_build, retention_seconds=args.retention,
                 with_store=not args.no_store, secure_kafka=args.secure_kafka, store_tls=args.store_tls)
        print_status()
        return 0


def cmd_down(args) -> int:
    with exclusive("tests/local/stack down"):
        stopped = stack.down(purge=args.purge)
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        if args.purge:
            print(f"removed {STATE}")
        return 0


def print_status() -> None:
    for name, row in stack.status():
        print(f"{name:11} {row}")
    r = render()
    code, out = (0, b"")
    if running_pid("connect"):
        try:
            code, out = kafka.connect_http("GET", f"/connectors/{r['connectorName']}/status")
        except OSError:
            pass
    if code == 200:
        st = json.loads(out)
        tasks = ",".join(t["state"] for t in st["tasks"]) or "none"
        print(f"connector   {r['connectorName']}: {st['connector']['state']} (tasks {tasks})")
    print(f"bootstrap   {r['bootstrapServers']}" + (
        f"   (mTLS and ACLs: each client its own certificate in {tls.TLS})" if r["secure"] else "   (PLAINTEXT)"))
    print(f"readings    {readings_file()}   (append CSV lines here; Connect tails it)")
    db = store()
    print(f"store       {db.url}   (InfluxDB 2: org {db.org}, bucket {db.bucket})" +
          (f"   (CA {db.ca_file})" if db.ca_file else ""))
    print(f"read token  {read_token_file()}   (may only read the bucket)")
    print(f"binaries    {bin_dir()}")
    print(f"operator    PULSEWIRE_CTL_TARGETS={stack.ctl_targets()} {bin_dir()}/pulsewire-ctl status")


def cmd_status(args) -> int:
    print_status()
    return 0 if stack.running_components() else 3


def cmd_kafka_libs(args) -> int:
    print(kafka.kafka_dist().classpath.removesuffix("/*"))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(prog="tests/local/stack", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start brokers, store, services and Connect (resumes existing state)")
    up.add_argument("--fresh", action="store_true", help="discard the previous state (topics, store, logs) first")
    up.add_argument("--no-services", action="store_true", help="infrastructure only: brokers, topics, store, Connect")
    up.add_argument("--no-store", action="store_true", help="no InfluxDB (and so no services): Kafka and Connect only")
    up.add_argument("--no-build", action="store_true", help="do not run cargo build first")
    up.add_argument("--retention", type=int, metavar="SECONDS",
                    help="the bucket's retention when the store is first set up (default: pipeline.toml's; "
                         "0 keeps everything, e.g. to replay the 2024 seed dataset)")
    up.add_argument("--secure-kafka", action="store_true",
                    help="Kafka as across hosts (nixos/lib/kafka-security.nix): mTLS on every listener, ACLs, "
                         "each client its own principal; kept until --fresh")
    up.add_argument("--store-tls", action="store_true",
                    help="the store over https only, with a self-signed certificate made into the state "
                         "(as services.pulsewire.influxdb.tls); kept until --fresh")
    up.set_defaults(func=cmd_up)
    down = sub.add_parser("down", help="stop every process the stack started, by PID")
    down.add_argument("--purge", action="store_true", help="also delete the state (data and logs)")
    down.set_defaults(func=cmd_down)
    st = sub.add_parser("status", help="what runs, on which port, where its log is (exit 3 if nothing runs)")
    st.set_defaults(func=cmd_status)
    kl = sub.add_parser("kafka-libs", help="print the folder of the Kafka jars (resolving them once)")
    kl.set_defaults(func=cmd_kafka_libs)
    args = p.parse_args()
    try:
        return args.func(args)
    except StackError as e:
        print(f"stack: {e}", file=sys.stderr)
        return 1
