-- ClusterStorage registry schema: the truth about which files exist, at which
-- version, and which nodes hold them.  Loads into whatever database the client
-- is using:   mysql cs < sql/schema.sql
-- Idempotent: safe to load again on an existing registry.  A registry made
-- by an earlier version also needs the files in migrations/, in order.

-- One row per node.  `up` is derived from heartbeat_at (cs-replicate serve
-- refreshes it every 2 s; down after CS_DOWN_AFTER without), never stored.
-- state is the operator's (cs-replicate node drain|remove|undrain): active
-- nodes take copies; draining ones still serve but their copies no longer
-- count toward CS_REPLICAS, so repair makes them elsewhere; removed ones
-- are out, their holder records gone.  backlog: journal entries the node's
-- agent had not replicated at its last heartbeat.
CREATE TABLE IF NOT EXISTS nodes (
  id           INT UNSIGNED NOT NULL AUTO_INCREMENT,
  name         VARCHAR(64) NOT NULL,
  url          VARCHAR(512) NOT NULL DEFAULT '',
  zone         VARCHAR(64) NOT NULL DEFAULT '',
  heartbeat_at DATETIME(3) NULL,
  state        ENUM('active','draining','removed') NOT NULL DEFAULT 'active',
  state_at     DATETIME(3) NULL,
  backlog      BIGINT UNSIGNED NOT NULL DEFAULT 0,
  created_at   DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (id),
  UNIQUE KEY nodes_name (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- One row per path ever registered.  path_hash = SHA-256(namespace NUL path)
-- is the lookup key (paths may be longer than an index allows); namespace and
-- path are kept verbatim and compared too.  A delete is a tombstone version
-- (deleted = 1), so versions keep increasing through delete and re-create.
-- files_dir answers "is there a live file below this directory" with a range
-- scan; files_updated lets each agent poll for names registered since it
-- last looked (its index of names, see README).  parent_hash is
-- SHA-256(namespace NUL the file's directory, "" for a file at the top),
-- computed by the server from path so that every writer keeps it right:
-- files_parent answers "the files of this directory" (listings).
CREATE TABLE IF NOT EXISTS files (
  id         BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  path_hash  BINARY(32) NOT NULL,
  namespace  VARBINARY(64) NOT NULL,
  path       VARBINARY(4096) NOT NULL,
  version    BIGINT UNSIGNED NOT NULL,
  size       BIGINT UNSIGNED NOT NULL,
  mtime_ns   BIGINT NOT NULL,
  sha256     BINARY(32) NOT NULL,
  deleted    TINYINT(1) NOT NULL DEFAULT 0,
  updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
             ON UPDATE CURRENT_TIMESTAMP(3),
  parent_hash BINARY(32) AS (UNHEX(SHA2(CONCAT(namespace, 0x00,
    IF(LOCATE('/', path) = 0, '', LEFT(path, LENGTH(path) - LENGTH(SUBSTRING_INDEX(path, '/', -1)) - 1))),
    256))) STORED,
  PRIMARY KEY (id),
  UNIQUE KEY files_path_hash (path_hash),
  KEY files_namespace (namespace),
  KEY files_dir (namespace, path(255)),
  KEY files_updated (updated_at),
  KEY files_parent (parent_hash)
) ENGINE=InnoDB;

-- One row per directory that ever held a registered file (its writer's
-- agent adds the row, and its parents', with the file's first version;
-- never removed).  Keyed like files; parent_hash as there.  A listing of a
-- directory takes its subdirectories from dirs_parent, each while a live
-- file lies below it (files_dir), and its files from files_parent.
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

-- Which node holds which version of a file, and what that copy looked like
-- when it was installed (size, mtime_ns): a copy whose version was
-- superseded (stale = 1) is removed by its node only while it still looks
-- like that, so a local write that has not been registered yet is never
-- thrown away.  A holder of an older version is not a holder of the file.
-- pinned: the copy counts toward CS_REPLICAS (written, pushed or repaired
-- there); 0 for one the node pulled on a miss, a cache that CS_CACHE_MAX
-- may evict (its row goes first, then the file).
CREATE TABLE IF NOT EXISTS replicas (
  file_id    BIGINT UNSIGNED NOT NULL,
  node_id    INT UNSIGNED NOT NULL,
  version    BIGINT UNSIGNED NOT NULL,
  size       BIGINT UNSIGNED NOT NULL DEFAULT 0,
  mtime_ns   BIGINT NOT NULL DEFAULT 0,
  stale      TINYINT(1) NOT NULL DEFAULT 0,
  pinned     TINYINT(1) NOT NULL DEFAULT 1,
  updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
             ON UPDATE CURRENT_TIMESTAMP(3),
  PRIMARY KEY (file_id, node_id),
  KEY replicas_node (node_id, stale),
  CONSTRAINT replicas_file FOREIGN KEY (file_id) REFERENCES files (id) ON DELETE CASCADE,
  CONSTRAINT replicas_node FOREIGN KEY (node_id) REFERENCES nodes (id) ON DELETE CASCADE
) ENGINE=InnoDB;

-- A version that a write which never saw it replaced: two nodes wrote one
-- path at about the same time, and the later registration won.  The writer
-- that won records it as it registers (its node held no copy of the version
-- it replaced); each holder of the lost version moves its copy out of the
-- web root into CS_SPOOL/lost/ instead of removing it, and the first to do
-- so is named here.  Listed by `cs-replicate conflicts`, counted by
-- `cs-replicate status`.
CREATE TABLE IF NOT EXISTS conflicts (
  id             BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  file_id        BIGINT UNSIGNED NOT NULL,
  lost_version   BIGINT UNSIGNED NOT NULL,
  size           BIGINT UNSIGNED NOT NULL,
  sha256         BINARY(32) NOT NULL,
  winner_version BIGINT UNSIGNED NOT NULL,
  winner_node    INT UNSIGNED NOT NULL,
  detected_at    DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  kept_node      INT UNSIGNED NULL,
  kept_path      VARBINARY(4096) NULL,
  PRIMARY KEY (id),
  UNIQUE KEY conflicts_lost (file_id, lost_version),
  CONSTRAINT conflicts_file FOREIGN KEY (file_id) REFERENCES files (id) ON DELETE CASCADE
) ENGINE=InnoDB;

-- The census: how well the cluster holds its files, counted by one agent
-- (the lowest-numbered node that is up and active) in paced walks of the
-- files by id ranges, at most every 10 s.  `cs-replicate status` reads it
-- when counting exactly would take longer than CS_STATUS_EXACT_MS (a
-- registry of millions of files), and writers rank the nodes to push to
-- by census_nodes.files.  census has one row (id 1): live files, those
-- with fewer than `replicas` copies that count, those with no live copy,
-- who counted them, when the walk began and ended, and the time its
-- statements took (work_ms: status does not try an exact count that would
-- take longer than CS_STATUS_EXACT_MS).  census_nodes: per
-- node, its current copies, their bytes, and how many are pinned.
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
