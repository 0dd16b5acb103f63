"""Is a group whose member was SIGKILLed unjoinable because of the broker? Plain aiokafka,
no nativekit: a member joins, is SIGKILLed, a new member joins the same group; how long
until it has the partition? ``python -m tests.faults.tansu_probe [TRIALS] [CAP_S] [static]``
starts its own Tansu (memory storage) per trial and prints one JSON line per trial.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

from nativekit.testing.servers import free_port
from tests.faults.infra import TansuProcess

SESSION_MS = 6000


async def member(bootstrap: str, instance: str | None) -> None:
    """Join group ``g`` on topic ``t``; print ``assigned`` once it has the partition."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        "t", bootstrap_servers=bootstrap, group_id="g", group_instance_id=instance,
        session_timeout_ms=SESSION_MS, heartbeat_interval_ms=SESSION_MS // 3,
    )  # fmt: skip
    await consumer.start()
    said = False
    while True:
        await consumer.getmany(timeout_ms=100)
        if consumer.assignment() and not said:
            print("assigned", flush=True)
            said = True


def start_member(bootstrap: str, instance: str | None) -> subprocess.Popen[str]:
    code = (
        "import asyncio, sys; from tests.faults.tansu_probe import member; "
        f"asyncio.run(member({bootstrap!r}, {instance!r}))"
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


def trial(cap: float, static: bool) -> dict[str, object]:
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
            await admin.create_topics([NewTopic("t", 1, 1)])
            await admin.close()

        asyncio.run(topic())
        first = start_member(bootstrap, instance)
        processes.append(first)
        first_join = wait_assigned(first, 60)
        first.kill()
        first.wait()
        second = start_member(bootstrap, instance)
        processes.append(second)
        rejoin = wait_assigned(second, cap)
        return {"static": static, "first_join_s": first_join, "rejoin_after_kill_s": rejoin,
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
    for _ in range(trials):
        print(json.dumps(trial(cap, static)), flush=True)


if __name__ == "__main__":
    main()
