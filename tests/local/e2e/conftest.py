"""The end-to-end suite's fixtures: the stack's lock for the whole session, and a fresh stack
for every test.

Every test starts from an empty stack: stopped, its state (Kafka log dirs, Connect offsets,
the store, the readings file) deleted, and brought up again with the real topic names, group
ids and connector, exactly as the appliance runs them. A failed test's logs are kept in
<state>/e2e/<test>/ (and their ends printed under CI=true).

  python3 -m pytest tests/local/e2e                    # every test
  python3 -m pytest tests/local/e2e -k "seed or fault" # some
  python3 -m pytest tests/local/e2e --no-build         # without cargo build first
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for folder in (HERE, HERE.parent, HERE.parent.parent):  # e2e helpers, pulsewire_stack, dashboards
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from pulsewire_stack import kafka, processes, services, settings, stack  # noqa: E402

ARTIFACTS = settings.STATE / "e2e"


def pytest_addoption(parser):
    parser.addoption("--no-build", action="store_true", help="do not run cargo build first")


@pytest.fixture(scope="session", autouse=True)
def stack_session(request):
    """Holds the machine-wide stack lock for the whole run; stops the stack at the end."""
    with processes.exclusive("tests/local/e2e (pytest)"):
        if stack.running_components():
            print(f"e2e: stopping the running stack ({', '.join(stack.running_components())}) first")
        if not request.config.getoption("--no-build"):
            services.build_services()
        shutil.rmtree(ARTIFACTS, ignore_errors=True)
        try:
            yield
        finally:
            stack.down(broker_timeout=5)


@pytest.fixture(scope="session")
def dist(stack_session) -> kafka.KafkaDist:
    """The Kafka classpath, for the command-line tools the tests read topics with."""
    return kafka.kafka_dist()


@pytest.fixture
def fresh_stack(request, dist):
    """An empty stack, up with every service; the simulator is stopped afterwards. Its
    bucket keeps everything (the tests' data is older than pipeline.toml's retention)
    unless the test is marked `retention(...)`."""
    marker = request.node.get_closest_marker("retention")
    stack.down(broker_timeout=5)
    stack.wipe(keep=(ARTIFACTS.name,))
    stack.up(services=True, build=False, retention_seconds=marker.args[0] if marker else 0)
    yield
    processes.stop("simulator", timeout=10)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed and report.when in ("setup", "call"):
        report.sections.append(("stack logs", f"kept in {keep_logs(item.name)}"))
    return report


def keep_logs(name: str) -> Path:
    dest = ARTIFACTS / name
    shutil.rmtree(dest, ignore_errors=True)
    if settings.LOGS.exists():
        shutil.copytree(settings.LOGS, dest)
        if os.environ.get("CI"):
            # CI keeps only the output: show the end of every component's log.
            for log in sorted(dest.glob("*.log")):
                tail = log.read_bytes()[-4000:].decode(errors="replace").splitlines()[-12:]
                print(f"--- {log.name} (last {len(tail)} lines)", file=sys.stderr)
                for line in tail:
                    print("  " + line[:300], file=sys.stderr)
    return dest
