//! Which route a request target names, the label it is counted under, and which targets
//! belong to the chain application behind a node (SPEC §2, §13).

use super::MAX_BODY_BYTES;

/// What requests are counted under in `/metrics`: the route, or `Other` when none matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    Root,
    Nodes,
    Random,
    Index,
    Status,
    Metrics,
    /// Forwarded to the chain application (SPEC §13).
    App,
    Other,
}

impl Label {
    /// Every label, in the order `/metrics` lists them.
    pub const ALL: [Label; 8] = [
        Label::Root,
        Label::Nodes,
        Label::Random,
        Label::Index,
        Label::Status,
        Label::Metrics,
        Label::App,
        Label::Other,
    ];

    /// The label's text in `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Root => "/",
            Label::Nodes => "/nodes/",
            Label::Random => "/nodes/random/",
            Label::Index => "/nodes/<i>/",
            Label::Status => "/status",
            Label::Metrics => "/metrics",
            Label::App => "app",
            Label::Other => "other",
        }
    }

    /// The label of a request target (path and optional query).
    pub fn of(target: &str) -> Label {
        let path = target.split_once('?').map_or(target, |(path, _)| path);
        Route::parse(path).map_or(Label::Other, Route::label)
    }

    /// The label of a request target for a process that forwards the paths that are not the
    /// API's to a chain application when `with_app` (SPEC §13): `App` for those.
    pub fn of_target(target: &str, with_app: bool) -> Label {
        match with_app && is_app_target(target) {
            true => Label::App,
            false => Label::of(target),
        }
    }
}

/// The routes, with the methods each allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    Root,
    Nodes,
    Random,
    Index(usize),
    Status,
    Metrics,
}

impl Route {
    pub(super) fn parse(path: &str) -> Option<Route> {
        let path = path.strip_suffix('/').unwrap_or(path);
        match path {
            "" => Some(Route::Root),
            "/nodes" => Some(Route::Nodes),
            "/nodes/random" => Some(Route::Random),
            "/status" => Some(Route::Status),
            "/metrics" => Some(Route::Metrics),
            _ => {
                let index = path.strip_prefix("/nodes/")?;
                if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                // More digits than usize holds is simply out of range.
                Some(Route::Index(index.parse().unwrap_or(usize::MAX)))
            }
        }
    }

    pub(super) fn allow(self) -> &'static str {
        match self {
            Route::Root => "GET, HEAD, POST",
            Route::Nodes => "GET, HEAD, POST, DELETE",
            Route::Random | Route::Index(_) | Route::Status | Route::Metrics => "GET, HEAD",
        }
    }

    pub(super) fn label(self) -> Label {
        match self {
            Route::Root => Label::Root,
            Route::Nodes => Label::Nodes,
            Route::Random => Label::Random,
            Route::Index(_) => Label::Index,
            Route::Status => Label::Status,
            Route::Metrics => Label::Metrics,
        }
    }
}

/// Whether `path` (without its query) is one of the API's own: `/`, `/nodes` and every path
/// under `/nodes/`, `/status`, `/metrics`, with or without a trailing slash (SPEC §2, §13).
/// The API answers these (404 when no route matches, as under `/nodes/`); with `--app`, the
/// application answers the others.
pub fn is_api_path(path: &str) -> bool {
    let path = path.strip_suffix('/').unwrap_or(path);
    matches!(path, "" | "/nodes" | "/status" | "/metrics") || path.starts_with("/nodes/")
}

/// Whether a request for `target` goes to the chain application when there is one: an
/// origin-form target (`/…`; not `*` or a `CONNECT` authority) outside the API's paths.
pub fn is_app_target(target: &str) -> bool {
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    path.starts_with('/') && !is_api_path(path)
}

/// The body limit of a request for `target`, in bytes, decided from its head before any of
/// the body is read: `app_body_limit` (`--app_body_limit`) for the application's paths when
/// there is one, `MAX_BODY_BYTES` for the API's (SPEC §3, §13).
pub fn body_limit(target: &str, app_body_limit: Option<usize>) -> usize {
    match app_body_limit {
        Some(limit) if is_app_target(target) => limit,
        _ => MAX_BODY_BYTES,
    }
}
