//! How the Redis engine writes bytes and seconds for people.

/// Formats a byte count the way people read them (`2.0 MB`, `512 B`; 1 MB = 1024 KB).
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// Formats seconds compactly (`42s`, `3m12s`, `2h05m`).
pub fn human_secs(s: f64) -> String {
    if !s.is_finite() {
        return "-".to_string();
    }
    let s = s.max(0.0);
    if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s as u64) % 60)
    } else {
        format!("{}h{:02}m", (s / 3600.0) as u64, ((s as u64) % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanizes() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(2 * 1024 * 1024), "2.0 MB");
        assert_eq!(human_secs(42.0), "42.0s");
        assert_eq!(human_secs(192.0), "3m12s");
        assert_eq!(human_secs(7500.0), "2h05m");
    }
}
