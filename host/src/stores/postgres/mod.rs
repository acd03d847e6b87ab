//! The PostgreSQL store: LangGraph `PostgresSaver` schemas (`checkpoints` with a JSONB
//! document, `checkpoint_blobs`, `checkpoint_writes`, `checkpoint_migrations`) and
//! LangChain chat-history tables.
//!
//! - [`config`]: what users write in `source_config` / `destination_config`.
//! - [`read`]: the source. [`write`]: the destination.
//! - this file: what both sides share (connecting, errors without secrets).

pub mod config;
mod items;
mod read;
mod write;

use std::str::FromStr;

use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use crate::error::StoreError;
use crate::secrets::{redact_url, scrub};

pub use items::{open_item_sink, open_item_source};
pub use read::PostgresSource;
pub use write::PostgresSink;

/// A server to connect to, and how to speak of it without its password.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    options: PgConnectOptions,
    /// The URL without its password.
    pub url: String,
    password: Option<String>,
}

impl Endpoint {
    pub fn parse(connection_string: &str) -> Result<Self, StoreError> {
        let url = redact_url(connection_string);
        let options = PgConnectOptions::from_str(connection_string)
            .map_err(|e| {
                StoreError::fatal(format!(
                    "PostgreSQL connection string {url} is not valid: {}",
                    scrub(&e.to_string(), None)
                ))
            })?
            .disable_statement_logging();
        Ok(Self {
            options,
            url,
            password: password_of(connection_string),
        })
    }

    pub async fn connect(&self) -> Result<PgConnection, StoreError> {
        self.options
            .connect()
            .await
            .map_err(|e| self.error("cannot connect", e))
    }

    /// A store error for `e`, retriable when the server or network may recover, with
    /// the password scrubbed from anything the driver echoed.
    pub fn error(&self, what: &str, e: sqlx::Error) -> StoreError {
        let retriable = match &e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Protocol(_) => true,
            sqlx::Error::Database(db) => db.code().is_some_and(|c| {
                c.starts_with("08")
                    || matches!(
                        c.as_ref(),
                        "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "53300"
                    )
            }),
            _ => false,
        };
        let detail = match &e {
            sqlx::Error::Database(db) => match db.code().as_deref() {
                Some("28P01" | "28000") => format!("authentication failed: {}", db.message()),
                Some("42501") => format!("permission denied: {}", db.message()),
                Some("3D000") => format!("database does not exist: {}", db.message()),
                _ => db.message().to_owned(),
            },
            other => other.to_string(),
        };
        StoreError {
            message: scrub(
                &format!("PostgreSQL {}: {what}: {detail}", self.url),
                self.password.as_deref(),
            ),
            retriable,
        }
    }
}

fn password_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    Some(userinfo.split_once(':')?.1.to_owned()).filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_found_for_scrubbing() {
        assert_eq!(
            password_of("postgresql://u:s3cret@h/db").as_deref(),
            Some("s3cret")
        );
        assert_eq!(password_of("postgresql://u@h/db"), None);
        assert_eq!(password_of("postgresql://h/db"), None);
    }
}
