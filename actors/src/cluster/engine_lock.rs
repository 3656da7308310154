//! SQLite keeps today's single engine: a second engine process on the same database file is
//! refused at start. Shards and leases would buy nothing there (SQLite admits one writer per
//! file, and its processes share one machine), so the first engine holds every shard,
//! unfenced, for as long as it holds an exclusive lock on a file beside the database — which
//! the kernel drops with the process, however it ends, so a crash never leaves it behind.
use std::fs::{File, OpenOptions, TryLockError};
use std::path::PathBuf;

/// Held for the engine's life.
#[derive(Debug)]
pub struct EngineLock {
    _file: File,
}

/// The lock file of a SQLite database URL: `None` for an in-memory database (no other
/// process can open it) and for other databases.
pub fn lock_path(database_url: &str) -> Option<PathBuf> {
    let rest = database_url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" || query.contains("mode=memory") {
        return None;
    }
    Some(PathBuf::from(format!("{path}.engine-lock")))
}

/// Takes the engine lock of the SQLite database at `database_url`, or says why not.
pub fn acquire(database_url: &str) -> Result<Option<EngineLock>, String> {
    let Some(path) = lock_path(database_url) else {
        return Ok(None);
    };
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|error| format!("cannot open the engine lock {}: {error}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(EngineLock { _file: file })),
        Err(TryLockError::WouldBlock) => Err(format!(
            "another engine process runs on this SQLite database (it holds {}): SQLite runs \
             one engine per database file; run this process with workflow.run_engine = false \
             to serve the API beside it, or use PostgreSQL for several engines",
            path.display()
        )),
        Err(TryLockError::Error(error)) => Err(format!("cannot lock {}: {error}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_file_sits_beside_the_database() {
        assert_eq!(
            lock_path("sqlite://data/atelier.sqlite?mode=rwc"),
            Some(PathBuf::from("data/atelier.sqlite.engine-lock"))
        );
        assert_eq!(
            lock_path("sqlite:/tmp/a.db"),
            Some(PathBuf::from("/tmp/a.db.engine-lock"))
        );
        assert_eq!(lock_path("sqlite::memory:"), None);
        assert_eq!(lock_path("sqlite://shared?mode=memory&cache=shared"), None);
        assert_eq!(lock_path("postgres://localhost/test"), None);
    }

    #[test]
    fn a_second_engine_is_refused_until_the_first_is_gone() {
        let dir = std::env::temp_dir().join(format!("atelier-lock-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("a.sqlite").display());
        let first = acquire(&url).unwrap().expect("a file database is locked");
        let refused = acquire(&url).expect_err("a second engine");
        assert!(refused.contains("another engine process"), "{refused}");
        drop(first);
        assert!(acquire(&url).unwrap().is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
