-- 005: the census (issue: 10 million files).  `cs-replicate status` reads
-- how well the cluster holds its files from here when counting them
-- exactly would take longer than CS_STATUS_EXACT_MS; the agents' write
-- target ranking reads the per-node counts from here always.
--   census:        one row (id 1): live files, those with fewer than
--                  `replicas` copies that count, those with no live copy;
--                  counted by the agent of node counted_by, in a walk of
--                  the files by id ranges that began at started_at and
--                  ended at counted_at, its statements taking work_ms in
--                  all (status skips an exact count that would take longer)
--   census_nodes:  per node, the current copies it holds (files, their
--                  bytes, and how many of them are pinned), as of the same
--                  walk
-- Two new small tables: neither files nor replicas is altered, so this
-- runs in milliseconds whatever the registry holds.  Safe to run again.
CREATE TABLE IF NOT EXISTS census (
  id               TINYINT UNSIGNED NOT NULL,
  live             BIGINT UNSIGNED NOT NULL,
  under_replicated BIGINT UNSIGNED NOT NULL,
  no_live_copy     BIGINT UNSIGNED NOT NULL,
  replicas         INT UNSIGNED NOT NULL,
  counted_by       INT UNSIGNED NOT NULL,
  started_at       DATETIME(3) NOT NULL,
  counted_at       DATETIME(3) NOT NULL,
  work_ms          INT UNSIGNED NOT NULL,
  PRIMARY KEY (id)
) ENGINE=InnoDB;
CREATE TABLE IF NOT EXISTS census_nodes (
  node_id    INT UNSIGNED NOT NULL,
  files      BIGINT UNSIGNED NOT NULL,
  bytes      BIGINT UNSIGNED NOT NULL,
  pinned     BIGINT UNSIGNED NOT NULL,
  counted_at DATETIME(3) NOT NULL,
  PRIMARY KEY (node_id)
) ENGINE=InnoDB;
