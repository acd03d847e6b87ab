//! Reading chat-history tables (a session becomes one record): langchain-postgres
//! `(id, session_id, message, created_at)` and langchain_community
//! `message_store(id, session_id, message)`.

use std::collections::HashMap;

use sqlx::Row;

use super::{Mode, PostgresSource};
use crate::error::StoreError;
use crate::sources::{BatchLimits, FailedRead, SourceBatch};
use crate::stores::chat;
use crate::stores::sql::{self, Dialect, where_sql};

pub(super) struct ChatTable {
    /// Quoted, possibly schema-qualified.
    pub(super) table: String,
    /// As configured, for messages and metadata.
    pub(super) name: String,
    /// SQL type of `session_id`, to compare keys in their own order (uses the index).
    pub(super) session_type: String,
    pub(super) has_created_at: bool,
    /// What each session becomes, under which thread id.
    pub(super) sessions: chat::SessionsAs,
}

impl PostgresSource {
    pub(super) async fn next_sessions(
        &mut self,
        limits: BatchLimits,
    ) -> Result<Option<SourceBatch>, StoreError> {
        let Mode::Chat(chat) = &self.mode else {
            unreachable!("called in chat mode")
        };
        let (table, name, session_type, has_created_at, sessions_as) = (
            chat.table.clone(),
            chat.name.clone(),
            chat.session_type.clone(),
            chat.has_created_at,
            chat.sessions.clone(),
        );
        let mut clauses = Vec::new();
        let mut params = Vec::new();
        if let Some(after) = &self.after {
            clauses.push(format!("session_id > CAST($1 AS {session_type})"));
            params.push(after.thread_id.clone());
        }
        let (more, more_params) = sql::thread_clauses(
            Dialect::Postgres,
            &self.pushdown,
            "session_id::text",
            params.len() + 1,
        );
        clauses.extend(more);
        params.extend(more_params);
        let sql = format!(
            "SELECT session_id::text FROM (SELECT DISTINCT session_id FROM {table} {}) s \
             ORDER BY session_id LIMIT {}",
            where_sql(&clauses),
            limits.max_records
        );
        let mut query = sqlx::query_scalar::<_, String>(&sql);
        for p in &params {
            query = query.bind(p);
        }
        let conn = self.conn().await?;
        let result = query.fetch_all(conn).await;
        let sessions = result.map_err(|e| self.failed(&format!("reading {name}"), e))?;
        if sessions.len() < limits.max_records {
            self.done = true;
        }
        let Some(last) = sessions.last().cloned() else {
            self.done = true;
            return Ok(None);
        };
        let created = if has_created_at {
            "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"
        } else {
            "NULL::text"
        };
        let sql = format!(
            "SELECT session_id::text, id::bigint, message::text, {created} FROM {table} \
             WHERE session_id = ANY(CAST($1 AS {session_type}[])) ORDER BY session_id, id"
        );
        let conn = self.conn().await?;
        let result = sqlx::query(&sql).bind(&sessions).fetch_all(conn).await;
        let rows = result.map_err(|e| self.failed(&format!("reading {name}"), e))?;
        let mut by_session: HashMap<String, Vec<(i64, String, Option<String>)>> = HashMap::new();
        let mut bytes = 0;
        for r in rows {
            let session: String = r.get(0);
            let message: String = r.get(2);
            bytes += message.len();
            by_session
                .entry(session)
                .or_default()
                .push((r.get(1), message, r.get(3)));
        }
        let mut batch = SourceBatch {
            last_key: Some(chat::session_key(&last)),
            bytes,
            ..SourceBatch::default()
        };
        for session in sessions {
            let messages = by_session.remove(&session).unwrap_or_default();
            let origin = self.origin(format!(
                "{} {name}[session_id={session:?}]",
                self.endpoint.url
            ));
            match chat::session_record(&name, &session, messages, origin.clone(), &sessions_as) {
                Ok(chain) => batch.records.extend(chain),
                Err(error) => batch.failed.push(FailedRead {
                    key: Some(chat::session_key(&session)),
                    origin,
                    error,
                }),
            }
        }
        self.after = Some(chat::session_key(&last));
        Ok(Some(batch))
    }
}
