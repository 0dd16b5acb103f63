"""One fault run: load, the fault, the checks, the figures (see ``test_*.py`` here).

``NATIVEKIT_TEST_FAULTS_RESULTS`` names a JSON-lines file each run appends its figures
to (docs/reliability.md, ``python -m tests.faults.report``).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from dataclasses import asdict
from pathlib import Path

import pytest

from tests.faults.checks import check_invariants, dead_letters
from tests.faults.conftest import LONG
from tests.faults.faults import FAULTS, FaultRun, all_ready
from tests.faults.load import Load
from tests.faults.shop import SERVICES, SESSION_TIMEOUT, STATIC, FaultShop

#: Marks of every fault test module.
MARKS = [
    pytest.mark.faults,
    pytest.mark.redis,
    pytest.mark.kafka,
    pytest.mark.slow,
    pytest.mark.timeout(600),
]

#: Concurrent clients placing orders: in the quick version (``make test``, next to the
#: rest of the tests) 4 keep several orders in flight through every fault while leaving
#: the machine's cores to the services.
WORKERS = 16 if LONG else 4
WARMUP = 60 if LONG else 8  # orders accepted before the fault
AFTER = 10.0 if LONG else 1.0  # seconds of load after the fault is over
STOCK = 200 if LONG else 40
RECOVERY_BUDGET = 60.0


async def fault_test(shop: FaultShop, name: str) -> None:
    """Run fault ``name``; a run that broke off is written to the results with why."""
    try:
        await run_fault(shop, name)
    except asyncio.CancelledError:  # Ctrl-C: stop the session (and everything started)
        pytest.exit("interrupted", returncode=2)
    except Exception as exc:  # the table shows a run that broke off, with why
        if name not in WRITTEN:
            write_result({"fault": name, "mode": "long" if LONG else "quick",
                          "error": f"{type(exc).__name__}: {exc}"[:400],
                          "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})  # fmt: skip
        raise


WRITTEN: set[str] = set()


def write_result(record: dict[str, object]) -> None:
    """Append one run's figures to ``NATIVEKIT_TEST_FAULTS_RESULTS`` when it is set."""
    WRITTEN.add(str(record["fault"]))
    results = os.environ.get("NATIVEKIT_TEST_FAULTS_RESULTS")
    if results:
        with Path(results).open("a") as out:
            out.write(json.dumps(record) + "\n")


async def run_fault(shop: FaultShop, name: str) -> None:
    """Load, the fault, the checks; the figures written before any assertion."""
    for service in SERVICES:  # a previous fault that failed may have left one down
        if service not in shop.cluster.processes:
            shop.start(service)
    await all_ready(shop)
    skus = {f"{name}-{n}-{uuid.uuid4().hex[:4]}": STOCK for n in range(3)}
    clients = {s: shop.client(s) for s in SERVICES}
    try:
        for sku, stock in skus.items():
            body = {"name": sku, "price": 500 + len(sku), "available": stock}
            reply = await clients["inventory"].put(f"/inventory/products/{sku}", json=body)
            reply.raise_for_status()
        prefix = f"faults-{shop.tag}."
        bootstrap = f"127.0.0.1:{shop.kafka_proxy_port}"
        letters_before = await dead_letters(bootstrap, prefix)
        load = Load(clients["orders"], list(skus), workers=WORKERS, seed=hash(name) % 1000)
        load.start()
        run = FaultRun()
        began = time.monotonic()
        try:
            await load.wait_accepted(WARMUP)
            await FAULTS[name](shop, run)
            fault_over = time.monotonic()
            await asyncio.sleep(AFTER)
        except BaseException:
            load.cancel()
            raise
        result = await load.stop()
        outcome = await check_invariants(
            clients, skus, result.accepted, fault_over, RECOVERY_BUDGET
        )
        letters = await dead_letters(bootstrap, prefix)
        new_letters = {t: v[len(letters_before.get(t, [])) :] for t, v in letters.items()}
        outcome.dead_letters = [f"{t}: {r}" for t, rs in new_letters.items() for r in rs]
    finally:
        for client in clients.values():
            await client.aclose()
    record = {
        "fault": name,
        "mode": "long" if LONG else "quick",
        "fault_seconds": round(fault_over - began, 1),
        "orders": outcome.orders,
        "confirmed": outcome.confirmed,
        "cancelled": outcome.cancelled,
        "reasons": dict(outcome.reasons),
        "final_after": round(outcome.final_after, 1),
        "settled_after": round(outcome.settled_after, 1),
        "http": {str(k): v for k, v in sorted(result.statuses.items())},
        "transport_errors": result.transport_errors,
        "restarts": [asdict(r) for r in run.restarts],
        "exit_codes": run.exit_codes,
        "problems": outcome.problems,
        "dead_letters": outcome.dead_letters,
        "unaccepted": len(result.unaccepted),
        "server_errors": result.server_errors,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_result(record)
    assert not result.unaccepted, f"orders never accepted: {len(result.unaccepted)}"
    assert not result.server_errors, (result.server_errors, result.failures[:5])
    assert not result.failures, result.failures[:5]
    assert not outcome.problems, outcome.problems[:10]
    assert not outcome.dead_letters, outcome.dead_letters[:10]
    assert outcome.final_after <= RECOVERY_BUDGET
    for service, code in run.exit_codes.items():
        # uvicorn re-raises the SIGTERM it handled once it shut down: -15 is a clean stop
        assert code in (0, -signal.SIGTERM), run.exit_codes
        assert "service.stopped" in shop.log(service), f"{service} did not stop cleanly"
    for restart in run.restarts:
        # CPU time, not wall time: on a loaded machine a starved interpreter's imports
        # alone take seconds of waiting for a core
        assert restart.live_cpu < 2.0, restart
        # Every consumer (the saga reply consumer too) is a static member, replaced under
        # its group.instance.id after a SIGTERM or a SIGKILL alike: no rebalance, no wait
        # for the old member's session. Tansu holds a static member's JoinGroup and
        # SyncGroup 3 s each (PAUSE_MS in its coordinator): about 6 s there, within the
        # session timeout + 5 s. Dynamic members (FAULTS_STATIC=0) wait on Tansu for the
        # old member's session and a rebalance (rebalance timeout = session timeout),
        # after a SIGKILL and, from a group's first generation (0, where aiokafka sends no
        # LeaveGroup), after a SIGTERM too: 12-13 s with plain aiokafka (tansu_probe.py).
        # Counted from /livez: the wall time before it is the interpreter starting, which
        # on a loaded machine is mostly waiting for a core (checked in CPU time above).
        bound = SESSION_TIMEOUT + 5 if STATIC else 2 * SESSION_TIMEOUT + 5
        assert restart.ready_after - restart.live_after < bound, restart
