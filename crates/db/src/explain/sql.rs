//! A small SQL lexer: enough to split text into statements without being fooled by
//! `;` inside quotes, identifiers, comments or dollar-quoted bodies, and to quote
//! literals for `EXECUTE`.

/// The statements of `sql` (trimmed, comments kept, empty statements dropped).
/// Unterminated quotes or comments are errors naming what was left open.
pub fn split_statements(sql: &str) -> Result<Vec<String>, String> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\'' => {
                // E'..' strings allow backslash escapes.
                let escapes =
                    i > 0 && (b[i - 1] == b'E' || b[i - 1] == b'e') && !is_ident(b, i - 1);
                i = skip_quoted(b, i, b'\'', escapes)
                    .ok_or("an unterminated string literal ('...)")?;
            }
            b'"' => {
                i = skip_quoted(b, i, b'"', false)
                    .ok_or("an unterminated quoted identifier (\"...)")?;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0usize;
                loop {
                    if i + 1 >= b.len() {
                        return Err("an unterminated /* comment".into());
                    }
                    if b[i] == b'/' && b[i + 1] == b'*' {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b[i + 1] == b'/' {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'$' if i == 0 || !is_ident_byte(b[i - 1]) => {
                if let Some(tag_end) = dollar_tag(b, i) {
                    let tag = &b[i..=tag_end];
                    let body = tag_end + 1;
                    match find(b, body, tag) {
                        Some(close) => i = close + tag.len(),
                        None => {
                            return Err(format!(
                                "an unterminated dollar-quoted string ({})",
                                String::from_utf8_lossy(tag)
                            ))
                        }
                    }
                } else {
                    i += 1;
                }
            }
            b';' => {
                push_statement(&mut out, &sql[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    push_statement(&mut out, &sql[start..]);
    Ok(out)
}

fn push_statement(out: &mut Vec<String>, s: &str) {
    if !strip_comments(s).trim().is_empty() {
        out.push(s.trim().to_string());
    }
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

/// Whether the byte at `i` continues an identifier started before it.
fn is_ident(b: &[u8], i: usize) -> bool {
    i > 0 && is_ident_byte(b[i - 1])
}

/// Index just past the closing quote of the quoted run starting at `start`.
fn skip_quoted(b: &[u8], start: usize, q: u8, escapes: bool) -> Option<usize> {
    let mut i = start + 1;
    while i < b.len() {
        if escapes && b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

/// If a dollar-quote tag (`$$` or `$name$`) starts at `i`, the index of its closing `$`.
fn dollar_tag(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < b.len() {
        let c = b[j];
        if c == b'$' {
            return Some(j);
        }
        let ok = if j == i + 1 {
            c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
        } else {
            is_ident_byte(c)
        };
        if !ok {
            return None;
        }
        j += 1;
    }
    None
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// `s` without `--` and `/* */` comments (quotes respected only roughly: used for
/// emptiness and keyword checks, never for execution).
pub fn strip_comments(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0usize;
            while i + 1 < b.len() {
                if b[i] == b'/' && b[i + 1] == b'*' {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b[i + 1] == b'/' {
                    depth = depth.saturating_sub(1);
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            if i + 1 >= b.len() {
                i = b.len();
            }
            out.push(b' ');
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first keyword of a statement, upper-cased (`SELECT`, `WITH`, `UPDATE`, ...).
pub fn first_keyword(stmt: &str) -> String {
    strip_comments(stmt)
        .trim_start()
        .trim_start_matches('(')
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("")
        .to_ascii_uppercase()
}

/// A standard SQL string literal: `'it''s'`. Refuses NUL bytes, which PostgreSQL
/// text cannot hold.
pub fn quote_literal(v: &str) -> Result<String, String> {
    if v.contains('\0') {
        return Err("a parameter contains a NUL byte".into());
    }
    Ok(format!("'{}'", v.replace('\'', "''")))
}

/// Whether `name` is a plain setting name (`work_mem`, `pg_trgm.similarity_threshold`).
pub fn is_setting_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
}

/// The highest `$n` placeholder used in `sql` outside quotes and comments.
pub fn max_placeholder(sql: &str) -> usize {
    let stripped = blank_quoted(sql);
    let b = stripped.as_bytes();
    let mut max = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && (i == 0 || !is_ident_byte(b[i - 1])) {
            let mut j = i + 1;
            let mut n = 0usize;
            while j < b.len() && b[j].is_ascii_digit() {
                n = n.saturating_mul(10).saturating_add((b[j] - b'0') as usize);
                j += 1;
            }
            if j > i + 1 {
                max = max.max(n);
            }
            i = j;
        } else {
            i += 1;
        }
    }
    max
}

/// `sql` with string literals, quoted identifiers, dollar bodies and comments blanked.
fn blank_quoted(sql: &str) -> String {
    let b = sql.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let end = match b[i] {
            b'\'' => skip_quoted(b, i, b'\'', false).unwrap_or(b.len()),
            b'"' => skip_quoted(b, i, b'"', false).unwrap_or(b.len()),
            b'-' if b.get(i + 1) == Some(&b'-') => {
                let mut j = i;
                while j < b.len() && b[j] != b'\n' {
                    j += 1;
                }
                j
            }
            b'$' if i == 0 || !is_ident_byte(b[i - 1]) => match dollar_tag(b, i) {
                Some(t) => find(b, t + 1, &b[i..=t])
                    .map(|c| c + (t - i) + 1)
                    .unwrap_or(b.len()),
                None => i + 1,
            },
            _ => i + 1,
        };
        if end > start + 1 || b[start] == b'\'' || b[start] == b'"' {
            for c in out.iter_mut().take(end).skip(start) {
                *c = b' ';
            }
        }
        i = end.max(start + 1);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_statement_with_tricky_semicolons() {
        let s = "SELECT ';' AS a, \"x;y\", $$a;b$$, $fn$ c;d $fn$ -- trailing; comment\n /* a; /* nested; */ b */ FROM t;";
        assert_eq!(split_statements(s).unwrap().len(), 1);
        assert_eq!(split_statements("SELECT E'it\\'s; ok'").unwrap().len(), 1);
        assert_eq!(
            split_statements("SELECT 'it''s; ok';  ;; -- x")
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn two_statements_are_seen() {
        assert_eq!(split_statements("SELECT 1; DROP TABLE t").unwrap().len(), 2);
        assert_eq!(split_statements("SELECT $1;SELECT 2;").unwrap().len(), 2);
        assert_eq!(split_statements("select a$b; select 2").unwrap().len(), 2);
    }

    #[test]
    fn unterminated_runs_are_errors() {
        assert!(split_statements("SELECT 'abc").is_err());
        assert!(split_statements("SELECT $$abc").is_err());
        assert!(split_statements("SELECT 1 /* x").is_err());
        assert!(split_statements("SELECT \"abc").is_err());
    }

    #[test]
    fn keywords_literals_and_placeholders() {
        assert_eq!(first_keyword(" -- hi\n /* x */ select 1"), "SELECT");
        assert_eq!(first_keyword("(SELECT 1)"), "SELECT");
        assert_eq!(quote_literal("it's").unwrap(), "'it''s'");
        assert!(quote_literal("a\0b").is_err());
        assert_eq!(
            max_placeholder("SELECT $1, $2 FROM t WHERE a = '$3' -- $9"),
            2
        );
        assert_eq!(max_placeholder("SELECT $$ $4 $$, $10"), 10);
        assert!(is_setting_name("work_mem"));
        assert!(!is_setting_name("work_mem; DROP"));
    }
}
