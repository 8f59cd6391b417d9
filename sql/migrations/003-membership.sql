-- 003: membership, repair and the cache quota (issue: nodes come, go and
-- fail).
--   nodes.state:      what the operator decided (cs-replicate node
--                     drain|remove|undrain): active nodes take copies,
--                     draining ones give theirs away, removed ones are out
--   nodes.state_at:   when it was last changed
--   nodes.backlog:    the node's journal entries not yet replicated, as
--                     its agent last reported with its heartbeat
--   replicas.pinned:  1 for a copy that counts toward CS_REPLICAS (written,
--                     pushed or repaired there), 0 for one the node merely
--                     pulled on a miss: a cache, evicted under CS_CACHE_MAX
-- Safe to run again on MariaDB (IF NOT EXISTS).  On MySQL 8, run it once
-- without those three words.
ALTER TABLE nodes
  ADD COLUMN IF NOT EXISTS state ENUM('active','draining','removed') NOT NULL DEFAULT 'active',
  ADD COLUMN IF NOT EXISTS state_at DATETIME(3) NULL,
  ADD COLUMN IF NOT EXISTS backlog BIGINT UNSIGNED NOT NULL DEFAULT 0;
ALTER TABLE replicas
  ADD COLUMN IF NOT EXISTS pinned TINYINT(1) NOT NULL DEFAULT 1;
