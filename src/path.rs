//! Path syntax: policy paths (`/ssn`, `/patient/address/zip`, `/cards/[]/number`) and the
//! JSON Pointers (RFC 6901) used by patch operations, query parameters and error messages.
//!
//! A policy path is `/` followed by segments separated by `/`. A segment is a property
//! name, written verbatim (as the Cosmos SDKs read it: no escapes), or `[]`, which stands
//! for every element of an array. The first segment is always a property name. Property
//! names cannot contain `/`, and a property literally named `[]` cannot be selected. A
//! document's property name with a lone UTF-16 surrogate escape is not Unicode, so no
//! policy path names it.
//!
//! In the JSON Pointers of errors and reports, such a name keeps its escape (`/k\udb5e`);
//! messages escape control characters (see [`Error`](crate::Error)).

use std::borrow::Cow;

/// The most segments a policy path may have. Keeps the walk's recursion shallow.
pub(crate) const MAX_SEGMENTS: usize = 32;

/// One step of a policy path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Segment {
    /// A property of an object.
    Property(Box<str>),
    /// Every element of an array (`[]`).
    Elements,
}

/// Parses a policy path into its segments. The reason says which rule it breaks.
pub(crate) fn parse_policy_path(path: &str) -> Result<Vec<Segment>, &'static str> {
    if path.is_empty() {
        return Err("a path must not be empty");
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err("a path must start with '/'");
    };
    if rest.is_empty() {
        return Err("'/' is the whole document; a path must name a property");
    }
    let mut segments = Vec::new();
    for (i, seg) in rest.split('/').enumerate() {
        if seg.is_empty() {
            return Err("a path must not contain an empty segment ('//' or a trailing '/')");
        }
        if seg == "[]" {
            if i == 0 {
                return Err("a path must start with a property name, not '[]'");
            }
            segments.push(Segment::Elements);
        } else {
            segments.push(Segment::Property(seg.into()));
        }
    }
    if segments.len() > MAX_SEGMENTS {
        return Err("a path must not have more than 32 segments");
    }
    Ok(segments)
}

/// True when `prefix` equals `path` or is one of its ancestors.
pub(crate) fn is_prefix(prefix: &[Segment], path: &[Segment]) -> bool {
    prefix.len() <= path.len() && prefix.iter().zip(path).all(|(a, b)| a == b)
}

/// Parses a JSON Pointer (RFC 6901) into unescaped reference tokens. The pointer must name
/// something inside the document: `""` and `"/"` alone are refused by the callers, not here.
pub(crate) fn parse_pointer(pointer: &str) -> Result<Vec<Cow<'_, str>>, &'static str> {
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err("a path must start with '/'");
    };
    rest.split('/').map(unescape_token).collect()
}

fn unescape_token(token: &str) -> Result<Cow<'_, str>, &'static str> {
    if !token.contains('~') {
        return Ok(Cow::Borrowed(token));
    }
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return Err("'~' must be followed by '0' or '1' in a JSON Pointer"),
            }
        } else {
            out.push(c);
        }
    }
    Ok(Cow::Owned(out))
}

/// Appends `/` and `token`, escaped as a JSON Pointer reference token (`~` as `~0`, `/` as
/// `~1`).
pub(crate) fn push_token(out: &mut String, token: &str) {
    out.push('/');
    if token.contains(['~', '/']) {
        for c in token.chars() {
            match c {
                '~' => out.push_str("~0"),
                '/' => out.push_str("~1"),
                c => out.push(c),
            }
        }
    } else {
        out.push_str(token);
    }
}

/// True for a pointer token that can address an array element: digits, or `-` (the end).
pub(crate) fn is_array_token(token: &str) -> bool {
    token == "-" || (!token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prop(s: &str) -> Segment {
        Segment::Property(s.into())
    }

    #[test]
    fn policy_paths() {
        assert_eq!(parse_policy_path("/ssn").unwrap(), vec![prop("ssn")]);
        assert_eq!(
            parse_policy_path("/cards/[]/number").unwrap(),
            vec![prop("cards"), Segment::Elements, prop("number")]
        );
        // Verbatim names: no JSON Pointer escapes, spaces and dots kept.
        assert_eq!(parse_policy_path("/a~1b").unwrap(), vec![prop("a~1b")]);
        assert_eq!(parse_policy_path("/a b.c").unwrap(), vec![prop("a b.c")]);
        for bad in ["", "ssn", "/", "//", "/a/", "/a//b", "/[]", "/[]/x"] {
            assert!(parse_policy_path(bad).is_err(), "{bad:?}");
        }
        let deep = "/a".repeat(MAX_SEGMENTS + 1);
        assert!(parse_policy_path(&deep).is_err());
        assert!(parse_policy_path(&"/a".repeat(MAX_SEGMENTS)).is_ok());
    }

    #[test]
    fn prefixes() {
        let a = parse_policy_path("/a").unwrap();
        let ab = parse_policy_path("/a/b").unwrap();
        let ac = parse_policy_path("/a/c").unwrap();
        assert!(is_prefix(&a, &ab) && is_prefix(&a, &a));
        assert!(!is_prefix(&ab, &a) && !is_prefix(&ab, &ac));
    }

    #[test]
    fn pointers() {
        assert_eq!(parse_pointer("/a/0/b").unwrap(), vec!["a", "0", "b"]);
        assert_eq!(parse_pointer("/a~1b/c~0d").unwrap(), vec!["a/b", "c~d"]);
        assert_eq!(parse_pointer("/").unwrap(), vec![""]);
        assert!(parse_pointer("a").is_err());
        assert!(parse_pointer("").is_err());
        assert!(parse_pointer("/a~2").is_err());
        assert!(parse_pointer("/a~").is_err());
        let mut s = String::new();
        push_token(&mut s, "a/b~c");
        push_token(&mut s, "plain");
        assert_eq!(s, "/a~1b~0c/plain");
        assert_eq!(parse_pointer(&s).unwrap(), vec!["a/b~c", "plain"]);
        assert!(is_array_token("0") && is_array_token("12") && is_array_token("-"));
        assert!(!is_array_token("") && !is_array_token("1a") && !is_array_token("-1"));
    }
}
