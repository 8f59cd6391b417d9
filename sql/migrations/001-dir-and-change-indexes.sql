-- 001: indexes the node agent needs (ClusterStorage with cs-replicate serve
-- doing misses and replication for its node).
--   files_dir:     is there a live file below a directory (a directory a
--                  node lacks is made when a host asks for it)
--   files_updated: names registered since an agent last polled (its index)
-- Safe to run again on MariaDB (IF NOT EXISTS).  On MySQL 8, which has no
-- IF NOT EXISTS for indexes, run it once without those two words.
ALTER TABLE files
  ADD INDEX IF NOT EXISTS files_dir (namespace, path(255)),
  ADD INDEX IF NOT EXISTS files_updated (updated_at);
