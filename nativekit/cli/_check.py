"""``nativekit check``: reach Redis, Kafka and PostgreSQL, print versions and what is
misconfigured."""

from __future__ import annotations

import asyncio

import click

from nativekit.cli._checks import (
    Finding,
    Probes,
    kafka_findings,
    redis_findings,
    settings_findings,
)
from nativekit.cli._common import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE
from nativekit.cli._connect import load_settings, run
from nativekit.cli._db import postgres_findings
from nativekit.cli._output import duration_option, emit_json, json_option, table


@click.command()
@click.option(
    "--topic", "topics", multiple=True, metavar="NAME",
    help="A topic to check (repeatable; default: every topic but internal and .dlq ones).",
)  # fmt: skip
@duration_option("--termination-grace", help="The pod's terminationGracePeriodSeconds (e.g. 60s).")
@duration_option("--readiness-period", help="The readiness probe's periodSeconds.")
@click.option(
    "--readiness-failures", type=click.IntRange(1), metavar="N",
    help="The readiness probe's failureThreshold.",
)  # fmt: skip
@duration_option("--probe-timeout", help="The probes' timeoutSeconds.")
@json_option
def check(
    topics: tuple[str, ...],
    termination_grace: float | None,
    readiness_period: float | None,
    readiness_failures: int | None,
    probe_timeout: float | None,
    as_json: bool,
) -> int:
    """Check a deployment's settings, Redis and Kafka, as its services would see them.

    Reads the same NATIVEKIT_* variables and .env as the services. Exit codes:
    0 nothing wrong (warnings allowed), 1 misconfigured, 3 Redis or Kafka unreachable.
    """
    settings = load_settings()
    probes = Probes(termination_grace, readiness_period, readiness_failures, probe_timeout)

    async def go() -> list[Finding]:
        reached = await asyncio.gather(
            redis_findings(settings),
            kafka_findings(settings, list(topics) or None),
            postgres_findings(settings),
        )
        return [*reached[0], *reached[1], *reached[2], *settings_findings(settings, probes)]

    found = run(go())
    statuses = {f.status for f in found}
    verdict = (
        "unreachable"
        if "unreachable" in statuses
        else "misconfigured"
        if "fail" in statuses
        else "ok"
    )
    if as_json:
        emit_json({"status": verdict, "checks": [f.to_dict() for f in found]})
    else:
        click.echo(
            table(("CHECK", "STATUS", "DETAIL"), ((f.check, f.status, f.detail) for f in found))
        )
        problems = sum(f.status in ("fail", "unreachable") for f in found)
        click.echo(f"\n{verdict.upper()}" + (f": {problems} problem(s)" if problems else ""))
    if verdict == "unreachable":
        return EXIT_UNREACHABLE
    return EXIT_FAILED if verdict == "misconfigured" else EXIT_OK
