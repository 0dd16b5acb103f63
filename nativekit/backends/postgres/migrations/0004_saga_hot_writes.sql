-- nativekit schema version 4: a saga transition that does not change the saga's status is
-- a HOT update.
-- Before, every transition set lease_until to now + lease. lease_until is indexed
-- (saga_active_lease, for recovery), so no transition could be HOT: each wrote a new entry
-- into all five indexes of the saga table (primary key, both listing indexes and, while
-- the saga is active, saga_active_lease and saga_active_definition). Now a transition
-- leaves the lease as it is while at least half of the requested lease remains (and no
-- more than all of it: a shorter lease still shortens it); the runtime's renewal loop
-- extends leases every third of their length anyway. A "step N completed, step N+1
-- started" write then changes only unindexed columns (fields) and, with free room on the
-- page (fillfactor 70), PostgreSQL writes the new row version into the same page.
-- The expressions are those of PostgresSagaStore's batched UPDATE (see _saga_batch.py).
CREATE OR REPLACE FUNCTION {schema}.saga_write(
    p_id text, p_token text, p_current text, p_fields jsonb, p_lease double precision,
    p_retention double precision, p_status text, p_release boolean, p_active boolean,
    p_finished boolean, p_release_if_any text[]
) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    now_s double precision := extract(epoch from clock_timestamp())::double precision;
BEGIN
    UPDATE {schema}.saga SET
        fields = fields || p_fields || jsonb_build_object('updated', now_s::text),
        status = p_status,
        since = CASE WHEN status = p_status THEN since ELSE now_s END,
        token = CASE WHEN p_active AND NOT (p_release OR (cardinality(p_release_if_any) > 0
                AND EXISTS (SELECT 1 FROM jsonb_each_text(fields || p_fields) AS f
                            WHERE f.key = ANY(p_release_if_any) AND f.value <> '')))
            THEN token END,
        lease_until = CASE WHEN NOT p_active THEN NULL
            WHEN (p_release OR (cardinality(p_release_if_any) > 0
                AND EXISTS (SELECT 1 FROM jsonb_each_text(fields || p_fields) AS f
                            WHERE f.key = ANY(p_release_if_any) AND f.value <> '')))
            THEN now_s
            WHEN lease_until BETWEEN now_s + p_lease / 2 AND now_s + p_lease THEN lease_until
            ELSE now_s + p_lease END,
        expires = CASE WHEN p_finished THEN now_s + p_retention END
    WHERE id = p_id AND token = p_token AND status = p_current
      AND (expires IS NULL OR expires > now_s);
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'NKL01',
            MESSAGE = 'nativekit: saga ' || p_id || ' transition refused (lease or status changed)';
    END IF;
END
$fn$;
-- pages filled from now on keep 30% of their room for the new versions of their rows;
-- pages already full get room as their finished rows are deleted by retention
ALTER TABLE {schema}.saga SET (fillfactor = 70);
