-- nativekit schema version 4: dedup keys compare byte by byte (collation "C").
-- A claim of a fresh key walks the (namespace, key) primary key twice (the ON CONFLICT
-- check, then the insertion with its uniqueness check) and a finish once more; under
-- the database's collation each comparison on the way is a locale-aware strcoll.
-- Keys are identifiers, not words: their order means nothing, and equality under any
-- deterministic collation already is byte equality, so "C" finds the same rows for less
-- CPU (server CPU per claimed and finished random UUID key, benchmarks/pg_dedup_collation.py:
-- en-US ICU 17.7 -> C 13.3-13.5 us; C.UTF-8 14.0-14.3 -> 13.3-13.5 us). Statements of an older nativekit keep working: a column's "C"
-- wins over the default collation of their parameters, so they still use the index.
-- The primary key is rebuilt (the table is not rewritten) under a lock on the table:
-- about 4 s per million marks on a 2-core test machine; consumers wait meanwhile.
ALTER TABLE {schema}.dedup
    ALTER COLUMN namespace TYPE text COLLATE "C",
    ALTER COLUMN key TYPE text COLLATE "C";
