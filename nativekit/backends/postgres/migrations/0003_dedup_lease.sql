-- nativekit schema version 3: consumer dedup claims keep their lease in a column of its own.
-- Before, `expires` was both the lease of an in-progress claim and, once DONE or DEAD, the
-- end of the retention; every finish and every lease renewal rewrote it, and since it is
-- indexed (dedup_expires, for retention) none of those updates could be HOT: each wrote a
-- new entry into both indexes. Now a claim sets `expires` once, to cover its lease and the
-- retention, and `lease` to the lease's end; a finish and a renewal change only unindexed
-- columns, and with free room on the page (fillfactor 50) PostgreSQL writes the new row
-- version into the same page (a HOT update): no index entries to write, much less WAL.
-- A DONE mark may therefore be kept up to one lease longer than the retention.
-- `lease` is NULL on rows a replica of an older nativekit writes during a rolling upgrade;
-- their `expires` is the lease's end, which is what the claim's `expires <= now` test reads.
ALTER TABLE {schema}.dedup ADD COLUMN lease double precision;
-- in-progress claims made before the upgrade: their lease ends at their `expires`
-- (DONE and DEAD rows never read `lease`, so they are left alone: no table rewrite)
UPDATE {schema}.dedup SET lease = expires WHERE state = 'P';
-- pages filled from now on keep half their room for the new versions of their rows;
-- pages already full get room as their expired rows are deleted
ALTER TABLE {schema}.dedup SET (fillfactor = 50);
