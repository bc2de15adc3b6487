//! Route, path and SQL normalization, and the glob patterns of the configuration.

/// Removes Rails' optional format suffix: `/users/:id(.:format)` → `/users/:id`.
pub fn strip_format(route: &str) -> String {
    if route.contains('(') {
        route.replace("(.:format)", "")
    } else {
        route.to_string()
    }
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Collapses ids in a raw path so that it becomes a low-cardinality route:
/// numbers → `:id`, UUIDs → `:uuid`, long hex strings → `:hex`, long tokens
/// mixing letters and digits → `:token`.
pub fn normalize_path(path: &str) -> String {
    if path.is_empty() {
        return "/".to_string();
    }
    let mut out = String::with_capacity(path.len());
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        let repl = if seg.is_empty() {
            seg
        } else if seg.bytes().all(|b| b.is_ascii_digit()) {
            ":id"
        } else if is_uuid(seg) {
            ":uuid"
        } else if seg.len() >= 16 && seg.bytes().all(|b| b.is_ascii_hexdigit()) {
            ":hex"
        } else if seg.len() >= 20
            && seg.bytes().any(|b| b.is_ascii_digit())
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            ":token"
        } else {
            seg
        };
        out.push_str(repl);
    }
    out
}

/// Longest statement kept as it was sent ([`sql_sample`]), in bytes.
pub const MAX_SAMPLE_LEN: usize = 2048;

/// The statement as the span sent it, when it can be run as it is: it carries its
/// values as literals (the instrumentation captured them) and no `$n` or `?`
/// placeholder, and is at most [`MAX_SAMPLE_LEN`] bytes. `db explain` runs it with
/// ANALYZE; a statement with placeholders can only be planned.
pub fn sql_sample(q: &str) -> Option<String> {
    let q = q.trim();
    if q.is_empty() || q.len() > MAX_SAMPLE_LEN {
        return None;
    }
    let normalized = normalize_sql(q);
    let placeholders = normalized.matches('?').count();
    let literals = placeholders > 0
        && !q.contains('?')
        && !q
            .as_bytes()
            .windows(2)
            .any(|w| w[0] == b'$' && w[1].is_ascii_digit());
    literals.then(|| q.to_string())
}

/// Longest normalized statement kept, in bytes.
pub const MAX_STATEMENT_LEN: usize = 300;

/// Normalizes a SQL statement so that the same query with different values groups
/// together: string and number literals and `$n` placeholders become `?`, `IN (?, ?)`
/// lists collapse to `IN (?)`, whitespace collapses. At most [`MAX_STATEMENT_LEN`]
/// bytes are kept.
pub fn normalize_sql(q: &str) -> String {
    // Bytes out; only whole UTF-8 characters or ASCII are ever copied, so the result
    // is valid UTF-8.
    let mut out: Vec<u8> = Vec::with_capacity(q.len().min(320));
    let b = q.as_bytes();
    let mut i = 0;
    let mut prev_space = false;
    // A placeholder: `?, ?` and `?,?` collapse into one as they are written.
    fn placeholder(out: &mut Vec<u8>) {
        if out.ends_with(b"?, ") {
            out.truncate(out.len() - 2);
        } else if out.ends_with(b"?,") {
            out.truncate(out.len() - 1);
        } else {
            out.push(b'?');
        }
    }
    while i < b.len() && out.len() < MAX_STATEMENT_LEN {
        let c = b[i];
        if c == b'\'' {
            // string literal, '' escapes
            i += 1;
            while i < b.len() {
                if b[i] == b'\'' {
                    if i + 1 < b.len() && b[i + 1] == b'\'' {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i += 1;
            placeholder(&mut out);
            prev_space = false;
            continue;
        }
        if c == b'?' {
            // Already a placeholder (MySQL / ActiveRecord binds).
            i += 1;
            placeholder(&mut out);
            prev_space = false;
            continue;
        }
        if c == b'$' && i + 1 < b.len() && b[i + 1].is_ascii_digit() {
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            placeholder(&mut out);
            prev_space = false;
            continue;
        }
        if c.is_ascii_digit() {
            let prev_ident = out
                .last()
                .map(|p| p.is_ascii_alphanumeric() || *p == b'_' || *p == b'"')
                .unwrap_or(false);
            if !prev_ident {
                while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                    i += 1;
                }
                placeholder(&mut out);
                prev_space = false;
                continue;
            }
        }
        if c.is_ascii_whitespace() {
            if !prev_space && !out.is_empty() {
                out.push(b' ');
            }
            prev_space = true;
            i += 1;
            continue;
        }
        prev_space = false;
        if c.is_ascii() {
            // A run of plain ASCII (no quote, `$`, space, or digit starting a number)
            // is copied in one go.
            let ident = |p: u8| p.is_ascii_alphanumeric() || p == b'_' || p == b'"';
            let room = MAX_STATEMENT_LEN - out.len();
            let mut j = i + 1;
            while j < b.len() && j - i < room {
                let d = b[j];
                if !d.is_ascii()
                    || d == b'\''
                    || d == b'$'
                    || d == b'?'
                    || d.is_ascii_whitespace()
                    || (d.is_ascii_digit() && !ident(b[j - 1]))
                {
                    break;
                }
                j += 1;
            }
            out.extend_from_slice(&b[i..j]);
            i = j;
            continue;
        }
        // Copy one UTF-8 character.
        let end = (i + utf8_len(c)).min(b.len());
        out.extend_from_slice(&b[i..end]);
        i = end;
    }
    while out.last() == Some(&b' ') {
        out.pop();
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// Glob match over `/`-separated segments: `*` matches one segment (or, inside a
/// segment, any characters), `**` any number of segments (zero included).
pub fn path_glob(pattern: &str, path: &str) -> bool {
    let p: Vec<&str> = pattern.split('/').collect();
    let s: Vec<&str> = path.split('/').collect();
    seg_match(&p, &s)
}

fn seg_match(p: &[&str], s: &[&str]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(&"**") => (0..=s.len()).any(|k| seg_match(&p[1..], &s[k..])),
        Some(pat) => match s.first() {
            Some(seg) => text_glob(pat, seg) && seg_match(&p[1..], &s[1..]),
            None => false,
        },
    }
}

/// `*` matches any run of characters (span names, one path segment).
pub fn text_glob(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_kept_only_when_it_carries_its_values() {
        let q = "SELECT * FROM big WHERE note = 'n-7' AND id > 3";
        assert_eq!(sql_sample(q).as_deref(), Some(q));
        assert_eq!(sql_sample("SELECT * FROM big WHERE id = $1"), None);
        assert_eq!(sql_sample("SELECT * FROM big WHERE id = ?"), None);
        assert_eq!(sql_sample("SELECT count(*) FROM big"), None);
        assert_eq!(sql_sample(&format!("SELECT '{}'", "x".repeat(4096))), None);
    }

    #[test]
    fn paths_collapse_ids() {
        assert_eq!(normalize_path("/api/v1/users/42"), "/api/v1/users/:id");
        assert_eq!(
            normalize_path("/api/v1/agents/0b4e7a0e-5b1c-4d2e-9f1a-123456789abc/execute"),
            "/api/v1/agents/:uuid/execute"
        );
        assert_eq!(
            normalize_path("/files/deadbeefdeadbeef00/x"),
            "/files/:hex/x"
        );
        assert_eq!(normalize_path("/a/tok_ABCDEF1234567890xyz"), "/a/:token");
        assert_eq!(normalize_path("/api/v1/auth/login"), "/api/v1/auth/login");
        assert_eq!(strip_format("/users/:id(.:format)"), "/users/:id");
    }

    #[test]
    fn sql_literals_become_placeholders() {
        assert_eq!(
            normalize_sql("SELECT  *\nFROM users WHERE id = 42 AND name = 'o''brien'"),
            "SELECT * FROM users WHERE id = ? AND name = ?"
        );
        assert_eq!(
            normalize_sql("SELECT * FROM t2 WHERE id IN ($1, $2, $3)"),
            "SELECT * FROM t2 WHERE id IN (?)"
        );
        assert_eq!(normalize_sql("SELECT 1"), "SELECT ?");
        assert_eq!(
            normalize_sql("SELECT * FROM t WHERE id IN (?, ?,?) AND x = ?"),
            "SELECT * FROM t WHERE id IN (?) AND x = ?"
        );
        assert_eq!(
            normalize_sql("INSERT INTO t (a, b) VALUES (1, 'x'),(2,'y')  "),
            "INSERT INTO t (a, b) VALUES (?),(?)"
        );
        assert_eq!(
            normalize_sql("SELECT 'é', \"naïve\" FROM t"),
            "SELECT ?, \"naïve\" FROM t"
        );
        assert!(normalize_sql(&"x".repeat(1000)).len() <= 300);
    }

    #[test]
    fn globs() {
        assert!(path_glob("/api/v1/auth/**", "/api/v1/auth/login"));
        assert!(path_glob(
            "/api/v1/ai/**/execute",
            "/api/v1/ai/agents/:id/execute"
        ));
        assert!(path_glob("/api/v1/ai/**/execute", "/api/v1/ai/execute"));
        assert!(!path_glob("/api/v1/ai/**/execute", "/api/v1/ai/agents/:id"));
        assert!(path_glob("/api/*/users", "/api/v2/users"));
        assert!(!path_glob("/api/*/users", "/api/v2/x/users"));
        assert!(path_glob("**/webhook*", "/api/v1/stripe/webhooks"));
        assert!(text_glob("ai.mission*", "ai.mission.completed"));
        assert!(!text_glob("ai.agent*", "ai.mission"));
    }
}
