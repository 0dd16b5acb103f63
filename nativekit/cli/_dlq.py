"""``nativekit dlq``: list, show and replay dead letters.

How a replay makes the consumer handle a message again is explained in
:mod:`nativekit.messaging._consume.deadletters`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import click

from nativekit.cli._common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CommandError
from nativekit.cli._connect import echo_err, load_settings, redis_client, require_kafka, run
from nativekit.cli._output import duration, emit_json, json_option, shorten, table
from nativekit.messaging._consume.deadletters import (
    DeadLetter,
    Replay,
    StoreFactory,
    dedup_states,
    replay,
)
from nativekit.messaging._wire.envelope import DLQ_PREFIX
from nativekit.settings import Settings

#: Most records ``show`` and ``replay`` scan to find the ones asked for.
SCAN_LIMIT = 100_000

_topic_argument = click.argument("topic", metavar="TOPIC")


@click.group()
def dlq() -> None:
    """Dead letters: list, show and replay them (Kafka of NATIVEKIT_KAFKA_URL).

    TOPIC is a dead-letter topic: by default '<consumed topic>.dlq'.
    """


@asynccontextmanager
async def _stores(settings: Settings) -> AsyncIterator[StoreFactory | None]:
    """Dedup stores of the services' PostgreSQL or Redis (None for memory://: marks are
    in-process)."""
    if settings.database.url:
        from nativekit.backends.postgres import Database, PostgresDedupStore

        database = Database(settings)
        try:
            yield lambda namespace, _: PostgresDedupStore(database, namespace=namespace)
        finally:
            await database.aclose()
        return
    if settings.redis.url.startswith("memory://"):
        yield None
        return
    from nativekit.backends.redis._dedup import RedisDedupStore
    from nativekit.settings import mask_url

    async with redis_client(settings) as client:
        safe = mask_url(settings.redis.url)
        default = settings.consumer.dedup_retention_seconds

        def store(namespace: str, retention: float | None) -> RedisDedupStore:
            # The bucket width follows the consumer's retention: read with the same one.
            return RedisDedupStore(
                client, namespace=namespace, retention=retention or default, url_safe=safe
            )

        yield store


async def _letters(settings: Settings, topic: str, limit: int) -> tuple[list[DeadLetter], int]:
    from nativekit.backends.kafka._admin import KafkaAdmin

    records, total = await KafkaAdmin(settings).read(topic, limit=limit)
    letters = [DeadLetter(r) for r in records]
    if letters and not any(letter.original_topic for letter in letters):
        raise CommandError(
            f"{topic!r} holds no dead letters (no dlq-original-topic header); dead-letter "
            f"topics are named '<topic>.dlq' unless the consumer sets dead_letter_topic, "
            f"e.g. '{topic}.dlq'.",
            EXIT_USAGE,
        )
    return letters, total


@dlq.command("list")
@_topic_argument
@click.option(
    "--limit", type=click.IntRange(1, SCAN_LIMIT), default=100, show_default=True,
    help="Most dead letters to print, oldest first.",
)  # fmt: skip
@json_option
def list_letters(topic: str, limit: int, as_json: bool) -> None:
    """List the dead letters of TOPIC with their origin, error and idempotency state.

    STATE is the consumer's mark for the message: DEAD (not handled since), DONE
    (replayed and handled), or '-' (no mark: never idempotent, or expired).
    """
    settings = load_settings()
    require_kafka(settings)

    async def go() -> tuple[list[DeadLetter], int, list[str | None]]:
        letters, total = await _letters(settings, topic, limit)
        async with _stores(settings) as stores:
            return letters, total, await dedup_states(letters, stores)

    letters, total, states = run(go())
    if as_json:
        emit_json(
            {
                "topic": topic,
                "total": total,
                "items": [x.to_dict(s) for x, s in zip(letters, states, strict=True)],
            }
        )
        return
    if not letters:
        echo_err(f"No dead letters in {topic}.")
        return
    rows = [_row(letter, state) for letter, state in zip(letters, states, strict=True)]
    headers = ("REF", "MESSAGE ID", "FROM", "GROUP:HANDLER", "TRIES", "STATE", "AGE", "ERROR")
    click.echo(table(headers, rows))
    if total > len(letters):
        echo_err(f"Showing {len(letters)} of {total}; raise --limit to see more.")


def _row(letter: DeadLetter, state: str | None) -> tuple[str, ...]:
    d = letter.to_dict()
    origin = d["original"]
    return (
        letter.ref,
        letter.message_id or "-",
        f"{origin['topic']}:{origin['partition']}:{origin['offset']}",
        letter.namespace or d["group"] or "-",
        str(d["attempts"] if d["attempts"] is not None else "-"),
        state or "-",
        _age(d["dead_lettered_at"]),
        shorten(f"{d['error_type']}: {d['error']}" if d["error_type"] else d["error"], 50),
    )


def _age(iso: str | None) -> str:
    if not iso:
        return "-"
    try:
        then = datetime.fromisoformat(iso)
    except ValueError:
        return "-"
    return duration((datetime.now(UTC) - then).total_seconds())


@dlq.command()
@_topic_argument
@click.argument("ref", metavar="REF")
@json_option
def show(topic: str, ref: str, as_json: bool) -> None:
    """Show one dead letter: REF is PARTITION:OFFSET in TOPIC, or the message id."""
    settings = load_settings()
    require_kafka(settings)

    async def go() -> tuple[DeadLetter, str | None]:
        letters, _ = await _letters(settings, topic, SCAN_LIMIT)
        letter = _find(letters, topic, ref)
        async with _stores(settings) as stores:
            return letter, (await dedup_states([letter], stores))[0]

    letter, state = run(go())
    data = letter.to_dict(state)
    if as_json:
        emit_json(data)
        return
    origin = data["original"]
    lines = [
        f"Dead letter:  {topic} {letter.ref} (at {data['timestamp']})",
        f"Message id:   {data['message_id'] or '-'}",
        f"From:         {origin['topic']} partition {origin['partition']} "
        f"offset {origin['offset']}",
        f"Consumer:     group {data['group']}, handler {data['handler'] or '-'}",
        f"Dedup key:    {data['dedup_key'] or '-'} (state {state or '-'})",
        f"Error:        {data['error_type']}: {data['error']}",
        f"Attempts:     {data['attempts']}",
        f"Dead since:   {data['dead_lettered_at']}",
        f"Key:          {data['key'] if data['key'] is not None else '-'}",
        "Headers:",
        *(f"  {k}: {v}" for k, v in data["headers"].items() if not k.startswith(DLQ_PREFIX)),
        "Value:",
        json.dumps(data["value"], indent=2, ensure_ascii=False)
        if not isinstance(data["value"], str)
        else data["value"],
    ]
    click.echo("\n".join(lines))


def _find(letters: Sequence[DeadLetter], topic: str, ref: str) -> DeadLetter:
    for letter in letters:
        if letter.matches(ref):
            return letter
    raise CommandError(
        f"no dead letter {ref!r} in {topic}; use PARTITION:OFFSET or a message id from "
        f"'nativekit dlq list {topic}'.",
        EXIT_FAILED,
    )


@dlq.command("replay")
@_topic_argument
@click.option(
    "--id", "refs", multiple=True, metavar="REF",
    help="A dead letter to replay: PARTITION:OFFSET or message id (repeatable).",
)  # fmt: skip
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter of TOPIC.")
@click.option(
    "--to", "to_topic", metavar="TOPIC",
    help="Publish to this topic instead of the original one (dlq-original-topic).",
)  # fmt: skip
@json_option
def replay_letters(
    topic: str, refs: tuple[str, ...], replay_all: bool, to_topic: str | None, as_json: bool
) -> int:
    """Send dead letters back through their consumer, which handles them again.

    The consumer's DEAD mark is cleared first and the copy keeps the message id,
    so it is handled once: a letter already replayed and handled (DONE) is
    skipped, and other groups on the topic skip the copy as a duplicate.
    """
    if bool(refs) == replay_all:
        raise CommandError("pass --id REF (one or more) or --all, not both.", EXIT_USAGE)
    settings = load_settings()
    require_kafka(settings)

    async def go() -> list[Replay]:
        from nativekit.backends.kafka._broker import KafkaBroker

        letters, _ = await _letters(settings, topic, SCAN_LIMIT)
        chosen = letters if replay_all else [_find(letters, topic, ref) for ref in refs]
        broker = KafkaBroker(settings)
        try:
            async with _stores(settings) as stores:
                return [
                    await replay(letter, broker=broker, stores=stores, to_topic=to_topic)
                    for letter in chosen
                ]
        finally:
            await broker.aclose()

    done = run(go())
    failed = [r for r in done if r.outcome == "skipped" and not r.detail.startswith("already")]
    if as_json:
        emit_json([r.to_dict() for r in done])
    else:
        for r in done:
            click.echo(f"{r.letter.ref} {r.letter.message_id or '-'}: {r.outcome}, {r.detail}")
        replayed = sum(r.outcome == "replayed" for r in done)
        echo_err(f"Replayed {replayed} of {len(done)} dead letter(s).")
    return EXIT_FAILED if failed else EXIT_OK
