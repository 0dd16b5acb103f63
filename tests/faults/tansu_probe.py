"""Is a group whose member was SIGKILLed unjoinable because of the broker? Plain aiokafka,
no nativekit: a member joins, is SIGKILLed, a new member joins the same group; how long
until it has the partition? ``python -m tests.faults.tansu_probe [TRIALS] [CAP_S] [static]
[MEMBERS]`` starts its own Tansu (memory storage) per trial and prints one JSON line per
trial. With MEMBERS > 1 each process runs that many members of the one group, each on a
topic of its own (as inventory's two consumers shared the group ``inventory`` before each
consumer had a group of its own): the case first reported unjoinable for minutes.
Further arguments: ``midjoin`` SIGKILLs one more process 2 s into its join (a crash
loop) before the measured one starts; ``term`` stops the first process with SIGTERM (it
stops its consumers cleanly, as a rolling restart does) instead of SIGKILL;
``sequential`` starts a process's members one after the other, each ``start()`` waiting
for its join (the old nativekit's startup), instead of all at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

from nativekit.testing.servers import free_port
from tests.faults.infra import TansuProcess

SESSION_MS = 6000


async def member(bootstrap: str, instance: str | None, members: int = 1) -> None:
    """``members`` consumers join group ``g``, the n-th on topic ``t`` + n (``t`` for the
    first); print ``assigned`` once every one has its partition."""
    from aiokafka import AIOKafkaConsumer

    consumers = [
        AIOKafkaConsumer(
            f"t{n or ''}", bootstrap_servers=bootstrap, group_id="g",
            group_instance_id=f"{instance}-{n}" if instance and n else instance,
            session_timeout_ms=SESSION_MS, heartbeat_interval_ms=SESSION_MS // 3,
        )
        for n in range(members)
    ]  # fmt: skip
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    if os.environ.get("TANSU_PROBE_SEQUENTIAL"):  # one start() after the other
        for c in consumers:
            await c.start()
    else:
        await asyncio.gather(*(c.start() for c in consumers))
    said = False
    while not stopping.is_set():
        await asyncio.gather(*(c.getmany(timeout_ms=100) for c in consumers))
        if all(c.assignment() for c in consumers) and not said:
            print("assigned", flush=True)
            said = True
    await asyncio.gather(*(c.stop() for c in consumers))  # a clean stop, as on SIGTERM


def start_member(bootstrap: str, instance: str | None, members: int) -> subprocess.Popen[str]:
    code = (
        "import asyncio, sys; from tests.faults.tansu_probe import member; "
        f"asyncio.run(member({bootstrap!r}, {instance!r}, {members}))"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )


def wait_assigned(process: subprocess.Popen[str], cap: float) -> float | None:
    """Seconds until the member printed ``assigned``, or None after ``cap``."""
    import selectors

    started = time.monotonic()
    selector = selectors.DefaultSelector()
    assert process.stdout is not None
    selector.register(process.stdout, selectors.EVENT_READ)
    while time.monotonic() - started < cap:
        if selector.select(timeout=0.2) and process.stdout.readline().startswith("assigned"):
            return time.monotonic() - started
    return None


def trial(
    cap: float, static: bool, members: int = 1, midjoin: bool = False, term: bool = False
) -> dict[str, object]:
    kafka = TansuProcess(advertised_port=free_port())
    kafka.advertised_port = kafka.port
    kafka.start()
    bootstrap = f"127.0.0.1:{kafka.port}"
    instance = "probe-0" if static else None
    processes = []
    try:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        async def topic() -> None:
            admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
            await admin.start()
            await admin.create_topics([NewTopic(f"t{n or ''}", 1, 1) for n in range(members)])
            await admin.close()

        asyncio.run(topic())
        stop = "SIGTERM" if term else "SIGKILL"
        first = start_member(bootstrap, instance, members)
        processes.append(first)
        first_join = wait_assigned(first, 60)
        if term:
            first.terminate()
        else:
            first.kill()
        first.wait()
        if midjoin:
            crashed = start_member(bootstrap, instance, members)
            processes.append(crashed)
            time.sleep(2.0)
            crashed.kill()
            crashed.wait()
        second = start_member(bootstrap, instance, members)
        processes.append(second)
        rejoin = wait_assigned(second, cap)
        sequential = bool(os.environ.get("TANSU_PROBE_SEQUENTIAL"))
        return {"static": static, "members": members, "midjoin": midjoin, "stop": stop,
                "sequential": sequential,
                "first_join_s": first_join, "rejoin_after_kill_s": rejoin,
                "cap_s": cap}  # fmt: skip
    finally:
        for process in processes:
            process.kill()
            process.wait()
        kafka.stop()


def main() -> None:
    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    cap = float(sys.argv[2]) if len(sys.argv) > 2 else 120
    static = len(sys.argv) > 3 and sys.argv[3] == "static"
    members = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    midjoin = "midjoin" in sys.argv[5:]
    term = "term" in sys.argv[5:]
    if "sequential" in sys.argv[5:]:
        os.environ["TANSU_PROBE_SEQUENTIAL"] = "1"  # inherited by the member processes
    for _ in range(trials):
        print(json.dumps(trial(cap, static, members, midjoin, term)), flush=True)


if __name__ == "__main__":
    main()
