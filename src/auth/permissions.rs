//! Whether a list of permissions allows an action on a path. Pure.

use crate::config::{Action, Permission, glob_match};

/// Longest path pattern honoured (from a JWT claim); longer ones match nothing.
const MAX_PATTERN_LEN: usize = 512;

/// Whether `permission` allows `action` on `path`. A permission without a
/// path (or with `""`) covers every path; `api` and `metrics` ignore paths.
/// Patterns use `crate::config::glob_match`: `*` within one segment, `**`
/// across segments.
pub fn allows(permission: &Permission, action: Action, path: &str) -> bool {
    if permission.action != action {
        return false;
    }
    if !action.has_path() {
        return true;
    }
    match permission.path.as_deref() {
        None | Some("") => true,
        Some(pattern) => pattern.len() <= MAX_PATTERN_LEN && glob_match(pattern, path),
    }
}

/// Whether any of `permissions` allows `action` on `path`.
pub fn any_allows(permissions: &[Permission], action: Action, path: &str) -> bool {
    permissions.iter().any(|p| allows(p, action, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(action: Action, path: Option<&str>) -> Permission {
        Permission {
            action,
            path: path.map(str::to_string),
        }
    }

    #[test]
    fn globbing() {
        let p = [perm(Action::Publish, Some("live/*"))];
        assert!(any_allows(&p, Action::Publish, "live/cam1"));
        assert!(!any_allows(&p, Action::Publish, "other/x"));
        assert!(
            !any_allows(&p, Action::Publish, "live/a/b"),
            "* stays in a segment"
        );
        assert!(!any_allows(&p, Action::Read, "live/cam1"), "other action");
        let p = [perm(Action::Read, Some("live/**"))];
        assert!(any_allows(&p, Action::Read, "live/a/b"));
        let p = [perm(Action::Read, Some("exact/path"))];
        assert!(any_allows(&p, Action::Read, "exact/path"));
        assert!(!any_allows(&p, Action::Read, "exact/path2"));
    }

    #[test]
    fn no_path_covers_all_and_api_ignores_paths() {
        for p in [perm(Action::Read, None), perm(Action::Read, Some(""))] {
            assert!(allows(&p, Action::Read, "any/thing/at/all"));
        }
        let p = perm(Action::Api, Some("live/*"));
        assert!(allows(&p, Action::Api, ""));
        assert!(!allows(&p, Action::Metrics, ""));
        assert!(!any_allows(&[], Action::Read, "x"));
    }
}
