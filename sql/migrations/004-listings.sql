-- 004: cluster-wide directory listings (issue: a drop-in for real hosts).
--   files.parent_hash: SHA-256(namespace NUL the file's directory), computed
--                      by the server from path, so every writer (an older
--                      agent, a bulk load) keeps it right; "the files of a
--                      directory" is one lookup of files_parent
--   dirs:              one row per directory that ever held a registered
--                      file, keyed like files (path_hash), with its parent's
--                      hash; "the subdirectories of a directory" is one
--                      lookup of dirs_parent (a directory is listed while a
--                      live file lies below it)
-- The INSERT at the end fills dirs from the files already registered; it is
-- safe to run again, and worth running once more after the last agent was
-- upgraded: an agent older than this one registers files without their
-- directories.  Safe to run again on MariaDB (IF NOT EXISTS); on MySQL 8,
-- run the ALTER once without those three words.
ALTER TABLE files
  ADD COLUMN IF NOT EXISTS parent_hash BINARY(32) AS (UNHEX(SHA2(CONCAT(namespace, 0x00,
    IF(LOCATE('/', path) = 0, '', LEFT(path, LENGTH(path) - LENGTH(SUBSTRING_INDEX(path, '/', -1)) - 1))),
    256))) STORED,
  ADD KEY IF NOT EXISTS files_parent (parent_hash);

CREATE TABLE IF NOT EXISTS dirs (
  path_hash   BINARY(32) NOT NULL,
  namespace   VARBINARY(64) NOT NULL,
  path        VARBINARY(4096) NOT NULL,
  parent_hash BINARY(32) AS (UNHEX(SHA2(CONCAT(namespace, 0x00,
    IF(LOCATE('/', path) = 0, '', LEFT(path, LENGTH(path) - LENGTH(SUBSTRING_INDEX(path, '/', -1)) - 1))),
    256))) STORED,
  PRIMARY KEY (path_hash),
  KEY dirs_parent (parent_hash)
) ENGINE=InnoDB;

INSERT IGNORE INTO dirs (path_hash, namespace, path)
WITH RECURSIVE up (namespace, path) AS (
  SELECT DISTINCT namespace,
    LEFT(path, LENGTH(path) - LENGTH(SUBSTRING_INDEX(path, '/', -1)) - 1)
  FROM files WHERE LOCATE('/', path) > 0
  UNION
  SELECT namespace, LEFT(path, LENGTH(path) - LENGTH(SUBSTRING_INDEX(path, '/', -1)) - 1)
  FROM up WHERE LOCATE('/', path) > 0)
SELECT UNHEX(SHA2(CONCAT(namespace, 0x00, path), 256)), namespace, path FROM up;
