"""Scale-out: two instances of the aggregator and of the processor share their inputs through
their consumer groups, each with its own transactional.id (`<prefix>-<instance>`, KIP-447).
One instance of each is SIGKILLed mid-stream and not restarted: the survivors take over its
partitions (once the killed one's open transaction is aborted) and every reading is still in
the store exactly once, with running counts 1..N per sensor.

With one transactional.id for both instances (the code before `--instance`), each instance's
init_transactions fences the other, which then fails its batch, reconnects and fences back.
"""

from __future__ import annotations

import time

import pytest

from expected import Expected, check
from harness import BIG, assert_midstream, big_run_args, file_lines, simulator, store_progress, verify, wait_progress, wait_store
from pulsewire_stack import processes, services

pytestmark = pytest.mark.usefixtures("fresh_stack")

RATE = 33.0  # readings per second per sensor, as test_faults: ~60 s of writing
STAGES = ("aggregator", "processor")
# Which instance of each stage is killed: one the stack started, one the test added.
KILLED = {"aggregator": 1, "processor": 2}


def records_in(stage: str, instance: int) -> float:
    m = services.scrape(services.metrics_port(stage, instance))
    return sum(v for k, v in m.items() if k.startswith("pulsewire_records_in_total"))


# What librdkafka logs when another producer took this one's transactional.id.
FENCED = "fenced by a newer instance"


def check_not_fenced(instances) -> None:
    """No instance was ever fenced: none of them restarted, so only an instance sharing its
    transactional.id could have fenced it."""
    for stage, n in instances:
        name = services.component(stage, n)
        check(not processes.log_contains(name, FENCED),
              f"{name} was fenced by another instance ({FENCED!r} in its log): two instances share a transactional.id")


def test_two_instances_one_of_each_killed(dist) -> None:
    for stage in STAGES:
        services.start_service(stage, instance=2)
    simulator(big_run_args(realtime_rate=RATE))
    want = BIG["count"]
    wait_progress(0.25, want)
    assert_midstream("the kill")
    # Both instances of each stage hold partitions and have committed from them; each
    # transacts under its own id, so none fences another.
    check_not_fenced((stage, n) for stage in STAGES for n in (1, 2))
    before = {}
    for stage in STAGES:
        for n in (1, 2):
            before[stage, n] = records_in(stage, n)
            check(before[stage, n] > 0, f"{stage} instance {n} consumed nothing: the input is not shared")
            tid = f"{stage}-localhost-{n}"  # <transactional_id_prefix>-<instance>
            check(processes.log_contains(services.component(stage, n), f'transactional_id="pulsewire-{tid}"'),
                  f"{services.component(stage, n)} does not log transactional.id pulsewire-{tid}")
    seen = store_progress()
    for stage, n in KILLED.items():
        processes.kill(services.component(stage, n))
    processes.wait_for("the simulator to finish", lambda: processes.running_pid("simulator") is None, 600)
    exp = Expected(file_lines())
    check(exp.total == want, f"simulator wrote {exp.total} valid readings, expected {want}")
    took = wait_store(dist, exp.total)
    verify(exp)
    check_not_fenced((stage, 3 - n) for stage, n in KILLED.items())
    # The survivors took over the killed instances' partitions: they consumed more than
    # their own share after the kill (everything the killed ones would have).
    for stage, n in KILLED.items():
        survivor = 3 - n
        after = records_in(stage, survivor)
        check(after > before[stage, survivor], f"{stage} instance {survivor} consumed nothing after the kill")
    print(f"two instances each; SIGKILL aggregator-1 and processor-2 at {seen} readings, not restarted; "
          f"drained {took:.0f}s after the simulator; {exp.total} readings exact, none missing or doubled")
