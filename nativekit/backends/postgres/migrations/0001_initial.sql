-- nativekit schema version 1: sagas, their outbox, consumer DONE marks, command replies.
-- {schema} is replaced by NATIVEKIT_DATABASE_SCHEMA_NAME (a checked identifier).
-- Times are epoch seconds of the server's clock (double precision).

-- One row per saga instance. The record's fields (SagaRecord.to_fields: scalars, one
-- JSON string per step and per result) are one JSONB object, so fields added to the
-- model need no migration; what queries filter or sort on is a column.
CREATE TABLE {schema}.saga (
    id text PRIMARY KEY,
    name text NOT NULL,
    definition text NOT NULL,
    status text NOT NULL,
    since double precision NOT NULL,        -- when it entered its status (listings)
    token text,                             -- lease holder (NULL: nobody)
    lease_until double precision,           -- lease expiry (recovery claims after it)
    expires double precision,               -- finished sagas: deleted after (retention)
    fields jsonb NOT NULL
);
-- the operator API: by status (and name), oldest in the status first, cursor on (since, id)
CREATE INDEX saga_status_since ON {schema}.saga (status, since, id);
CREATE INDEX saga_name_status_since ON {schema}.saga (name, status, since, id);
-- recovery and backlog: active sagas by lease expiry
CREATE INDEX saga_active_lease ON {schema}.saga (lease_until)
    WHERE status IN ('RUNNING', 'COMPENSATING');
-- the definition check: active instances per name and definition
CREATE INDEX saga_active_definition ON {schema}.saga (name, definition)
    WHERE status IN ('RUNNING', 'COMPENSATING');
-- retention
CREATE INDEX saga_expires ON {schema}.saga (expires) WHERE expires IS NOT NULL;

-- Messages written with saga transitions (and by handlers in their transaction), relayed
-- to Kafka in seq order per saga; a relay takes rows for claim_after seconds.
CREATE TABLE {schema}.outbox (
    seq bigserial PRIMARY KEY,
    saga_id text NOT NULL,
    entry text NOT NULL,
    created double precision NOT NULL,
    taken_by text,
    taken_until double precision
);
CREATE INDEX outbox_saga_seq ON {schema}.outbox (saga_id, seq);

-- Consumer dedup marks: P (in progress, leased), D (done), X (dead-lettered).
CREATE TABLE {schema}.dedup (
    namespace text NOT NULL,
    key text NOT NULL,
    state text NOT NULL,
    token bigint NOT NULL,
    expires double precision NOT NULL,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX dedup_expires ON {schema}.dedup (expires);
CREATE SEQUENCE {schema}.dedup_token;

-- Replies participants gave to commands (by idempotency key).
CREATE TABLE {schema}.reply (
    namespace text NOT NULL,
    key text NOT NULL,
    token text,
    reply text,
    expires double precision NOT NULL,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX reply_expires ON {schema}.reply (expires);
