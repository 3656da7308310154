//! Throwaway databases for benchmarks and tests: a SQLite file in a temporary directory, or a
//! fresh database on the configured PostgreSQL server, dropped again afterwards.
use std::path::PathBuf;

use anyhow::Context;
use sea_orm::{ConnectionTrait, Database};
use uuid::Uuid;

pub struct ScratchDatabase {
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    SqliteDir(PathBuf),
    Postgres { server_url: String, name: String },
}

impl ScratchDatabase {
    /// A new, empty database of the same kind as `like_url` (same server for PostgreSQL).
    pub async fn create(like_url: &str, label: &str) -> anyhow::Result<Self> {
        if like_url.starts_with("sqlite:") {
            let dir =
                std::env::temp_dir().join(format!("atelier-{label}-{}", Uuid::new_v4().simple()));
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let url = format!("sqlite://{}?mode=rwc", dir.join("atelier.sqlite").display());
            return Ok(Self {
                url,
                cleanup: Cleanup::SqliteDir(dir),
            });
        }
        let name = format!("atelier_{label}_{}", Uuid::new_v4().simple());
        let server = Database::connect(like_url)
            .await
            .with_context(|| format!("cannot reach {}", crate::startup::redact(like_url)))?;
        server
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await?;
        server.close().await?;
        Ok(Self {
            url: with_database_name(like_url, &name),
            cleanup: Cleanup::Postgres {
                server_url: like_url.to_owned(),
                name,
            },
        })
    }

    /// Removes the database. Connections still open to it are terminated.
    pub async fn destroy(self) -> anyhow::Result<()> {
        match self.cleanup {
            Cleanup::SqliteDir(dir) => std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot remove {}", dir.display())),
            Cleanup::Postgres { server_url, name } => {
                let server = Database::connect(&server_url).await?;
                server
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await?;
                server.close().await?;
                Ok(())
            }
        }
    }
}

/// `postgres://user@host:port/old?params` with the database name replaced.
pub fn with_database_name(url: &str, name: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |index| index + 3);
    let path_start = url[after_scheme..]
        .find('/')
        .map(|index| after_scheme + index);
    let query_start = url.find('?');
    let (base, query) = match query_start {
        Some(index) => (&url[..index], &url[index..]),
        None => (url, ""),
    };
    let host = match path_start {
        Some(index) if index < base.len() => &base[..index],
        _ => base,
    };
    format!("{host}/{name}{query}")
}

#[cfg(test)]
mod tests {
    use super::with_database_name;

    #[test]
    fn replaces_only_the_database_name() {
        assert_eq!(
            with_database_name("postgres://root@127.0.0.1:5432/test", "x"),
            "postgres://root@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database_name("postgres://a:b@h/test?sslmode=disable", "x"),
            "postgres://a:b@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database_name("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
    }
}
