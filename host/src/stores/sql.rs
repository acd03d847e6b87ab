//! SQL shared by the SQL sources: pushed-down thread filters and identifiers.

use crate::filters::ThreadPushdown;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The placeholder for the `n`-th parameter (1-based).
    pub fn param(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => "?".into(),
            Dialect::Postgres => format!("${n}"),
        }
    }
}

/// `WHERE` clauses (joined with AND by the caller) and their string parameters for
/// the pushed-down thread filters; parameters are numbered from `first_param`.
pub fn thread_clauses(
    dialect: Dialect,
    pushdown: &ThreadPushdown,
    column: &str,
    first_param: usize,
) -> (Vec<String>, Vec<String>) {
    let mut clauses = Vec::new();
    let mut params = Vec::new();
    let next = |params: &mut Vec<String>, value: String| {
        params.push(value);
        dialect.param(first_param + params.len() - 1)
    };
    if let Some(t) = &pushdown.thread_id {
        let p = next(&mut params, t.clone());
        clauses.push(format!("{column} = {p}"));
    }
    let matcher = |negated: bool, p: String| match dialect {
        Dialect::Sqlite => format!("{column} {}GLOB {p}", if negated { "NOT " } else { "" }),
        Dialect::Postgres => {
            format!(
                "{column} {}LIKE {p} ESCAPE '\\'",
                if negated { "NOT " } else { "" }
            )
        }
    };
    let pattern = |glob: &str| match dialect {
        Dialect::Sqlite => glob.to_owned(),
        Dialect::Postgres => glob_to_like(glob),
    };
    if let Some(g) = &pushdown.include_glob {
        let p = next(&mut params, pattern(g));
        clauses.push(matcher(false, p));
    }
    for g in &pushdown.exclude_globs {
        let p = next(&mut params, pattern(g));
        clauses.push(matcher(true, p));
    }
    // SQLite's SQL cannot hash: its source joins a list of the shard's threads.
    if let (Some(shard), Dialect::Postgres) = (&pushdown.shard, dialect) {
        clauses.push(shard.postgres_condition(column));
    }
    (clauses, params)
}

/// `WHERE a AND b …`, or nothing when there is no clause.
pub fn where_sql(clauses: &[String]) -> String {
    if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    }
}

/// How the pushed-down clauses read in logs and the dry run.
pub fn pushdown_summary(clauses: &[String]) -> String {
    if clauses.is_empty() {
        "none".into()
    } else {
        format!("SQL WHERE {}", clauses.join(" AND "))
    }
}

/// A `*`/`?` glob as a `LIKE` pattern with `\` as the escape character.
pub fn glob_to_like(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len() + 4);
    for c in glob.chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// A table name as given in config: `name` or `schema.name`, each part a plain SQL
/// identifier. Returns the parts; anything else is refused (never spliced into SQL).
pub fn parse_table_name(name: &str) -> Result<(Option<String>, String), String> {
    let valid = |part: &str| {
        let mut chars = part.chars();
        matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
            && part.len() <= 63
    };
    let parts: Vec<&str> = name.split('.').collect();
    match parts.as_slice() {
        [table] if valid(table) => Ok((None, (*table).to_owned())),
        [schema, table] if valid(schema) && valid(table) => {
            Ok((Some((*schema).to_owned()), (*table).to_owned()))
        }
        _ => Err(format!(
            "table_name {name:?} is not a table name (letters, digits, _ and $, optionally schema.table)"
        )),
    }
}

/// A validated identifier, quoted.
pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_become_escaped_like_patterns() {
        assert_eq!(glob_to_like("customer-*"), "customer-%");
        assert_eq!(glob_to_like("a_b%c?\\"), "a\\_b\\%c_\\\\");
    }

    #[test]
    fn table_names_are_validated() {
        assert_eq!(
            parse_table_name("chat_message_history").unwrap(),
            (None, "chat_message_history".into())
        );
        assert_eq!(
            parse_table_name("app.message_store").unwrap(),
            (Some("app".into()), "message_store".into())
        );
        for bad in ["x; DROP TABLE y", "a.b.c", "1abc", "", "a b", "\"x\""] {
            assert!(parse_table_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn postgres_clauses_are_numbered() {
        let pushdown = ThreadPushdown {
            thread_id: None,
            include_glob: Some("c-*".into()),
            exclude_globs: vec!["*-3".into()],
            ..ThreadPushdown::default()
        };
        let (clauses, params) = thread_clauses(Dialect::Postgres, &pushdown, "thread_id", 4);
        assert_eq!(
            clauses,
            [
                "thread_id LIKE $4 ESCAPE '\\'",
                "thread_id NOT LIKE $5 ESCAPE '\\'"
            ]
        );
        assert_eq!(params, ["c-%", "%-3"]);
    }
}
