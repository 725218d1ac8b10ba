//! Path names: what a stream may be called, and the patterns path rules use.

/// Longest path name accepted, in bytes.
pub const MAX_PATH_LEN: usize = 256;

/// Why a path name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathNameError {
    #[error("path name is empty")]
    Empty,
    #[error("path name is longer than {MAX_PATH_LEN} bytes")]
    TooLong,
    #[error("path name has an empty segment (leading, trailing or double '/')")]
    EmptySegment,
    #[error("path name has a '.' or '..' segment")]
    DotSegment,
    #[error("path name contains {0:?}: only letters, digits and '_-.~/' are allowed")]
    BadChar(char),
    #[error("path name ends in {0:?}, a name the HTTP side reserves")]
    Reserved(String),
}

/// Checks a concrete path name (as published or requested).
///
/// Allowed: ASCII letters and digits, `_ - . ~` and `/` between non-empty
/// segments; no `.`/`..` segments; at most [`MAX_PATH_LEN`] bytes. The last
/// segment may not be a name the HTTP server uses below a path (`whep`, `whip`,
/// or anything ending in `.m3u8`, `.mp4`, `.m4s`, `.js`), so that
/// `http://HOST/{path}/index.m3u8` is never ambiguous.
pub fn validate_path_name(name: &str) -> Result<(), PathNameError> {
    check(name, false)
}

/// Checks the name of a path rule: a path name that may also contain `*`.
pub fn validate_rule_name(name: &str) -> Result<(), PathNameError> {
    check(name, true)
}

fn check(name: &str, allow_glob: bool) -> Result<(), PathNameError> {
    if name.is_empty() {
        return Err(PathNameError::Empty);
    }
    if name.len() > MAX_PATH_LEN {
        return Err(PathNameError::TooLong);
    }
    // Bytes, not chars: every allowed character is ASCII, so the first
    // byte refused starts the character to report (the bytes before it
    // are ASCII: it is on a character boundary). Checked on every HLS
    // request's path.
    let allowed = |b: u8| {
        b.is_ascii_alphanumeric()
            || matches!(b, b'_' | b'-' | b'.' | b'~' | b'/')
            || (allow_glob && b == b'*')
    };
    if let Some(at) = name.bytes().position(|b| !allowed(b)) {
        let c = name.get(at..).and_then(|rest| rest.chars().next());
        return Err(PathNameError::BadChar(
            c.unwrap_or(char::REPLACEMENT_CHARACTER),
        ));
    }
    for segment in name.as_bytes().split(|&b| b == b'/') {
        match segment {
            b"" => return Err(PathNameError::EmptySegment),
            b"." | b".." => return Err(PathNameError::DotSegment),
            _ => {}
        }
    }
    let last_start = name
        .bytes()
        .rposition(|b| b == b'/')
        .map_or(0, |slash| slash + 1);
    let last = name.get(last_start..).unwrap_or(name);
    if is_reserved(last) {
        return Err(PathNameError::Reserved(last.to_string()));
    }
    Ok(())
}

fn is_reserved(segment: &str) -> bool {
    matches!(segment, "whep" | "whip")
        || [".m3u8", ".mp4", ".m4s", ".js"]
            .iter()
            .any(|ext| segment.ends_with(ext))
}

/// Matches `path` against a rule pattern: `*` matches any characters except
/// `/`, `**` matches any characters including `/`.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((b'*', rest)) => {
                let (cross, rest) = match rest.split_first() {
                    Some((b'*', r)) => (true, r),
                    _ => (false, rest),
                };
                // Try every split point; patterns are short, paths are short.
                for i in 0..=s.len() {
                    if go(rest, &s[i..]) {
                        return true;
                    }
                    if !cross && s.get(i) == Some(&b'/') {
                        return false;
                    }
                }
                false
            }
            Some((c, rest)) => s.first() == Some(c) && go(rest, &s[1..]),
        }
    }
    go(pattern.as_bytes(), path.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in ["live/cam1", "a/b/c", "cam_1-x.y~z", "live/index.m3u8x"] {
            assert_eq!(validate_path_name(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refuses_bad_names() {
        use PathNameError::*;
        let long = "a".repeat(MAX_PATH_LEN + 1);
        let cases: &[(&str, PathNameError)] = &[
            ("", Empty),
            (&long, TooLong),
            ("/live", EmptySegment),
            ("live/", EmptySegment),
            ("a//b", EmptySegment),
            ("a/../b", DotSegment),
            ("./a", DotSegment),
            ("a\nb", BadChar('\n')),
            ("a b", BadChar(' ')),
            ("a?b", BadChar('?')),
            ("caf\u{e9}", BadChar('\u{e9}')),
            ("live/whep", Reserved("whep".into())),
            ("live/index.m3u8", Reserved("index.m3u8".into())),
            ("live/seg_1.m4s", Reserved("seg_1.m4s".into())),
            ("live/init.mp4", Reserved("init.mp4".into())),
            ("live/*", BadChar('*')),
            // A refused character is told before a bad segment after it.
            ("/a b", BadChar(' ')),
            ("a b/../", BadChar(' ')),
            ("a/\u{e9}/", BadChar('\u{e9}')),
        ];
        for (name, err) in cases {
            assert_eq!(validate_path_name(name).as_ref(), Err(err), "{name:?}");
        }
        assert_eq!(validate_rule_name("live/*"), Ok(()));
    }

    #[test]
    fn globs() {
        assert!(glob_match("live/*", "live/cam1"));
        assert!(!glob_match("live/*", "live/a/b"));
        assert!(glob_match("live/**", "live/a/b"));
        assert!(glob_match("**", "x/y/z"));
        assert!(glob_match("*/cam*", "site/cam7"));
        assert!(!glob_match("*/cam*", "site/x/cam7"));
        assert!(!glob_match("live/*", "other/cam1"));
        assert!(glob_match("exact", "exact"));
    }
}
