//! The target's routes, as labelled in `/metrics` and [`crate::TargetStats`].

/// A route of the target. Requests are classified by path (and never by anything a
/// client controls beyond that), so the label set is fixed and bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Route {
    Login,
    Execute,
    Missions,
    Dashboard,
    Health,
    Cable,
    /// `GET /api/v1/cache/{key}` (Redis-backed).
    Cache,
    /// `/metrics` scrapes: not counted in the request statistics.
    Metrics,
    /// Any other path (answered 404 or 405).
    Other,
}

impl Route {
    /// Every route, in display order.
    pub const ALL: [Route; 9] = [
        Route::Login,
        Route::Execute,
        Route::Missions,
        Route::Dashboard,
        Route::Health,
        Route::Cable,
        Route::Cache,
        Route::Metrics,
        Route::Other,
    ];

    /// Dense index for per-route arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The route's label: its path pattern.
    pub fn label(self) -> &'static str {
        match self {
            Route::Login => "/api/v1/auth/login",
            Route::Execute => "/api/v1/ai/agents/{id}/execute",
            Route::Missions => "/api/v1/ai/missions",
            Route::Dashboard => "/api/v1/ai/monitoring/dashboard",
            Route::Health => "/health",
            Route::Cable => "/cable",
            Route::Cache => "/api/v1/cache/{key}",
            Route::Metrics => "/metrics",
            Route::Other => "other",
        }
    }

    /// The short key used in the config file and `--error-rate`.
    pub fn key(self) -> &'static str {
        match self {
            Route::Login => "login",
            Route::Execute => "execute",
            Route::Missions => "missions",
            Route::Dashboard => "dashboard",
            Route::Health => "health",
            Route::Cable => "cable",
            Route::Cache => "cache",
            Route::Metrics => "metrics",
            Route::Other => "other",
        }
    }

    /// Classifies a request path.
    pub fn classify(path: &str) -> Route {
        match path {
            "/api/v1/auth/login" => Route::Login,
            "/api/v1/ai/missions" => Route::Missions,
            "/api/v1/ai/monitoring/dashboard" => Route::Dashboard,
            "/health" => Route::Health,
            "/cable" => Route::Cable,
            "/metrics" => Route::Metrics,
            p if p.starts_with("/api/v1/cache/") => Route::Cache,
            p => match p
                .strip_prefix("/api/v1/ai/agents/")
                .and_then(|rest| rest.strip_suffix("/execute"))
            {
                Some(id) if !id.is_empty() && !id.contains('/') => Route::Execute,
                _ => Route::Other,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_paths() {
        assert_eq!(Route::classify("/api/v1/auth/login"), Route::Login);
        assert_eq!(
            Route::classify("/api/v1/ai/agents/42/execute"),
            Route::Execute
        );
        assert_eq!(Route::classify("/api/v1/ai/agents//execute"), Route::Other);
        assert_eq!(
            Route::classify("/api/v1/ai/agents/1/2/execute"),
            Route::Other
        );
        assert_eq!(Route::classify("/nope"), Route::Other);
        for (i, r) in Route::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
