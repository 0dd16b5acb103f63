-- nativekit schema version 2: a saga transition as one function call.
-- A step that used ctx.db ends its transaction with one message to the server:
-- "SELECT saga_write(...); COMMIT; <session reset>" (one round trip instead of three).
-- The function raises SQLSTATE NKL01 when the fenced update matched no row, which
-- aborts the transaction, so the COMMIT after it never commits the step's writes.
-- Arguments and expressions are those of PostgresSagaStore's UPDATE (see _saga_store.py).
CREATE FUNCTION {schema}.saga_write(
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
            THEN now_s ELSE now_s + p_lease END,
        expires = CASE WHEN p_finished THEN now_s + p_retention END
    WHERE id = p_id AND token = p_token AND status = p_current
      AND (expires IS NULL OR expires > now_s);
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'NKL01',
            MESSAGE = 'nativekit: saga ' || p_id || ' transition refused (lease or status changed)';
    END IF;
END
$fn$;
