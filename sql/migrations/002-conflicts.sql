-- 002: concurrent-write losers (issue: never lose a write silently).
-- Safe to run again (IF NOT EXISTS).
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
