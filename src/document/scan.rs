//! A validating JSON scanner over text: finds where values end without building them.
//!
//! It accepts exactly what `serde_json` accepts when it skips a value (RFC 8259: no
//! trailing commas, no leading zeros, no control characters in strings, only the standard
//! escapes, `\u` followed by four hex digits), at any nesting depth (the nesting stack is
//! a byte per level on the heap, no recursion). Strings are scanned a word at a time.

/// A scan failure: the byte offset and what was wrong there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ScanError {
    pub(crate) at: usize,
    pub(crate) what: &'static str,
}

type Scan<T> = Result<T, ScanError>;

fn err<T>(at: usize, what: &'static str) -> Scan<T> {
    Err(ScanError { at, what })
}

pub(crate) fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// A mask with the high bit set in (at least) the lowest byte of `x` that is `"`, `\\` or
/// below 0x20, and no bit below it: the bytes a string scan must stop at.
#[inline]
fn special_mask(x: u64) -> u64 {
    let below_space = x.wrapping_sub(ONES * 0x20) & !x;
    let q = x ^ (ONES * u64::from(b'"'));
    let quote = q.wrapping_sub(ONES) & !q;
    let bs = x ^ (ONES * u64::from(b'\\'));
    let backslash = bs.wrapping_sub(ONES) & !bs;
    (below_space | quote | backslash) & HIGHS
}

/// The index of the first byte at or after `j` that is `"`, `\\` or below 0x20 (or the
/// end), eight bytes at a time.
#[inline]
fn skip_plain(b: &[u8], mut j: usize) -> usize {
    match b.get(j) {
        Some(&c) if c == b'"' || c == b'\\' || c < 0x20 => return j,
        None => return j,
        Some(_) => {}
    }
    for chunk in b.get(j..).unwrap_or(&[]).chunks_exact(8) {
        let Ok(w) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let m = special_mask(u64::from_le_bytes(w));
        if m != 0 {
            // Borrows only run upwards, so the lowest flagged byte is a true match.
            return j + (m.trailing_zeros() / 8) as usize;
        }
        j += 8;
    }
    while let Some(&c) = b.get(j) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            break;
        }
        j += 1;
    }
    j
}

/// Scans the string whose opening quote is at `b[i]`. Returns the index after the closing
/// quote and whether the string holds an escape.
pub(crate) fn string(b: &[u8], i: usize) -> Scan<(usize, bool)> {
    let mut j = i + 1;
    let mut escaped = false;
    loop {
        j = skip_plain(b, j);
        match b.get(j) {
            None => return err(j, "unterminated string"),
            Some(b'"') => return Ok((j + 1, escaped)),
            Some(b'\\') => {
                escaped = true;
                match b.get(j + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => j += 2,
                    Some(b'u') => {
                        let hex = b.get(j + 2..j + 6).unwrap_or(&[]);
                        if hex.len() != 4 || !hex.iter().all(u8::is_ascii_hexdigit) {
                            return err(j, "invalid \\u escape");
                        }
                        j += 6;
                    }
                    _ => return err(j, "invalid escape"),
                }
            }
            Some(_) => return err(j, "control character in a string"),
        }
    }
}

/// Scans the number starting at `b[i]`; returns the index after it.
pub(crate) fn number(b: &[u8], i: usize) -> Scan<usize> {
    let digits = |mut j: usize| {
        while matches!(b.get(j), Some(b'0'..=b'9')) {
            j += 1;
        }
        j
    };
    let mut j = i;
    if b.get(j) == Some(&b'-') {
        j += 1;
    }
    match b.get(j) {
        Some(b'0') => j += 1,
        Some(b'1'..=b'9') => j = digits(j + 1),
        _ => return err(j, "invalid number"),
    }
    if b.get(j) == Some(&b'.') {
        let k = digits(j + 1);
        if k == j + 1 {
            return err(k, "invalid number");
        }
        j = k;
    }
    if matches!(b.get(j), Some(b'e' | b'E')) {
        j += 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let k = digits(j);
        if k == j {
            return err(k, "invalid number");
        }
        j = k;
    }
    Ok(j)
}

fn literal(b: &[u8], i: usize, word: &[u8]) -> Scan<usize> {
    if b.get(i..i + word.len()) == Some(word) {
        Ok(i + word.len())
    } else {
        err(i, "invalid literal")
    }
}

/// Expects `"key"` then `:` (with whitespace); returns the index after the colon.
fn key_colon(b: &[u8], i: usize) -> Scan<usize> {
    let i = skip_ws(b, i);
    if b.get(i) != Some(&b'"') {
        return err(i, "expected a property name");
    }
    let (end, _) = string(b, i)?;
    let j = skip_ws(b, end);
    if b.get(j) != Some(&b':') {
        return err(j, "expected ':'");
    }
    Ok(j + 1)
}

/// Validates the value starting at `b[i]` (no leading whitespace) and returns the index
/// after it. `stack` is scratch space for the nesting (cleared first).
pub(crate) fn value(b: &[u8], i: usize, stack: &mut Vec<u8>) -> Scan<usize> {
    value_escaped(b, i, stack).map(|(end, _)| end)
}

/// [`value`], also saying whether a string value (not a key) in it holds an escape.
pub(crate) fn value_escaped(b: &[u8], i: usize, stack: &mut Vec<u8>) -> Scan<(usize, bool)> {
    stack.clear();
    let mut i = i;
    let mut escaped = false;
    loop {
        // A value at `i`.
        i = skip_ws(b, i);
        match b.get(i) {
            Some(b'"') => {
                let (end, e) = string(b, i)?;
                escaped |= e;
                i = end;
            }
            Some(b'-' | b'0'..=b'9') => i = number(b, i)?,
            Some(b't') => i = literal(b, i, b"true")?,
            Some(b'f') => i = literal(b, i, b"false")?,
            Some(b'n') => i = literal(b, i, b"null")?,
            Some(b'{') => {
                let j = skip_ws(b, i + 1);
                if b.get(j) == Some(&b'}') {
                    i = j + 1;
                } else {
                    stack.push(b'{');
                    i = key_colon(b, j)?;
                    continue;
                }
            }
            Some(b'[') => {
                let j = skip_ws(b, i + 1);
                if b.get(j) == Some(&b']') {
                    i = j + 1;
                } else {
                    stack.push(b'[');
                    i = j;
                    continue;
                }
            }
            None => return err(i, "unexpected end"),
            Some(_) => return err(i, "expected a value"),
        }
        // After a value: close containers until a comma asks for the next value.
        loop {
            let Some(&top) = stack.last() else {
                return Ok((i, escaped));
            };
            i = skip_ws(b, i);
            match (b.get(i), top) {
                (Some(b','), b'{') => {
                    i = key_colon(b, i + 1)?;
                    break;
                }
                (Some(b','), _) => {
                    i += 1;
                    break;
                }
                (Some(b'}'), b'{') | (Some(b']'), b'[') => {
                    stack.pop();
                    i += 1;
                }
                (None, _) => return err(i, "unexpected end"),
                _ => return err(i, "expected ',' or the end of the object or array"),
            }
        }
    }
}

/// The JSON Pointer of the value that starts at byte `target` of the document `input`,
/// found by rescanning the input from the start (only on errors and skips).
pub(crate) fn path_at(input: &str, target: usize) -> String {
    paths_at(input, &[target]).pop().unwrap_or_default()
}

/// The JSON Pointers of the values that start at the byte offsets `targets` (ascending) of
/// `input`, in one rescan: linear however many there are (lenient decryption may skip
/// every element of a large array).
pub(crate) fn paths_at(input: &str, targets: &[usize]) -> Vec<String> {
    enum Frame {
        Object(Option<(usize, usize)>),
        Array(usize),
    }
    let pointer = |stack: &[Frame]| {
        let mut path = String::new();
        let mut buf = String::new();
        for frame in stack {
            match frame {
                Frame::Object(Some((s, e))) => {
                    let raw = input.get(*s..*e).unwrap_or("\"?\"");
                    crate::path::push_token(
                        &mut path,
                        super::pointer_name(raw, &mut buf).unwrap_or("?"),
                    );
                }
                Frame::Object(None) => {}
                Frame::Array(n) => crate::path::push_token(&mut path, &n.to_string()),
            }
        }
        path
    };
    let b = input.as_bytes();
    let mut out = Vec::with_capacity(targets.len());
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    loop {
        while let Some(&t) = targets.get(out.len())
            && (t <= i || i >= b.len())
        {
            out.push(pointer(&stack));
        }
        if out.len() == targets.len() || i >= b.len() {
            break;
        }
        match b[i] {
            b'{' => stack.push(Frame::Object(None)),
            b'[' => stack.push(Frame::Array(0)),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => {
                if let Some(Frame::Array(n)) = stack.last_mut() {
                    *n += 1;
                }
            }
            b'"' => {
                let Ok((end, _)) = string(b, i) else { break };
                if b.get(skip_ws(b, end)) == Some(&b':')
                    && let Some(Frame::Object(key)) = stack.last_mut()
                {
                    *key = Some((i, end));
                }
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Line and column (1-based, columns in bytes) of byte `at`, as `serde_json` reports them.
pub(crate) fn line_column(input: &str, at: usize) -> (usize, usize) {
    let before = input.as_bytes().get(..at).unwrap_or(input.as_bytes());
    let line = 1 + before.iter().filter(|&&c| c == b'\n').count();
    let col = before.len()
        - before
            .iter()
            .rposition(|&c| c == b'\n')
            .map_or(0, |p| p + 1)
        + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(s: &str) -> Scan<usize> {
        let b = s.as_bytes();
        let i = skip_ws(b, 0);
        let end = value(b, i, &mut Vec::new())?;
        if skip_ws(b, end) != b.len() {
            return err(end, "trailing characters");
        }
        Ok(end)
    }

    fn serde_accepts(s: &str) -> bool {
        serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok()
    }

    #[test]
    fn accepts_and_rejects_like_serde_json() {
        for s in [
            "0",
            "-0",
            "1.5e-3",
            "-12E+4",
            "true",
            "false",
            "null",
            r#""a\"b\\\/\b\f\n\r\t\u00e9""#,
            r#""\ud800""#,
            "[]",
            "{}",
            " [ 1 , { \"a\" : [ ] } ] ",
            r#"{"a":{"b":[1,2,{"c":null}]}}"#,
            "\"long string with no escapes at all, more than eight bytes\"",
            "\"é😀 ünïcödé\"",
        ] {
            assert!(check(s).is_ok(), "{s}");
            assert!(serde_accepts(s), "{s}");
        }
        for s in [
            "",
            "01",
            "-",
            "1.",
            ".5",
            "1e",
            "1e+",
            "+1",
            "tru",
            "nul",
            "[1,]",
            "{\"a\":1,}",
            "[1 2]",
            "{\"a\" 1}",
            "{1:2}",
            "\"\\x\"",
            "\"\\u12\"",
            "\"\\u12g4\"",
            "\"abc",
            "\"a\u{1}b\"",
            "[",
            "{",
            "{\"a\":",
            "[1]]",
            "NaN",
            "\"tab\there\"",
            "'a'",
        ] {
            assert!(check(s).is_err(), "{s}");
            assert!(!serde_accepts(s), "{s}");
        }
    }

    #[test]
    fn any_depth_without_recursion() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(check(&deep), Ok(deep.len()));
        let open = "[{\"a\":".repeat(50_000);
        assert!(check(&open).is_err());
    }

    #[test]
    fn string_scan_reports_escapes() {
        assert_eq!(string(br#""abcdefghijklmnop" "#, 0), Ok((18, false)));
        assert_eq!(string(br#""abcdefgh\nijklmnop""#, 0), Ok((20, true)));
        assert!(string(b"\"abcdefghijklmnop", 0).is_err());
    }

    #[test]
    fn positions() {
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("abc", 0), (1, 1));
        let doc = r#"{"a": 1, "b\/c": {"x": [10, {"y": "t"}, [5, 6]]}, "z": "q"}"#;
        let at = |needle: &str| path_at(doc, doc.find(needle).unwrap());
        assert_eq!(at("1,"), "/a");
        assert_eq!(at("10"), "/b~1c/x/0");
        assert_eq!(at("\"t\""), "/b~1c/x/1/y");
        assert_eq!(at("6]"), "/b~1c/x/2/1");
        assert_eq!(at("\"q\""), "/z");
        assert_eq!(at("{\"x\""), "/b~1c");
    }

    fn json_like() -> impl Strategy<Value = String> {
        // Fragments that make valid and nearly valid JSON.
        let frag = prop::sample::select(vec![
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "\"a\"",
            "\"\\n\"",
            "\"\\u00e9\"",
            "\"\\x\"",
            "1",
            "-0",
            "01",
            "1.5",
            "1.",
            "2e5",
            "true",
            "fals",
            "null",
            " ",
            "\n",
            "\"abcdefghijk\"",
            "\"é\"",
            "\"",
            "\\",
            "\u{1}",
            "\"\\ud800\"",
        ]);
        prop::collection::vec(frag, 0..24).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn same_accept_set_as_serde_json(s in json_like()) {
            prop_assert_eq!(check(&s).is_ok(), serde_accepts(&s), "{:?}", s);
        }

        #[test]
        fn same_accept_set_on_arbitrary_text(s in any::<String>()) {
            prop_assert_eq!(check(&s).is_ok(), serde_accepts(&s), "{:?}", s);
        }

        #[test]
        fn valid_documents_end_where_serde_says(v in any_json()) {
            let s = serde_json::to_string_pretty(&v).unwrap();
            prop_assert_eq!(check(&s), Ok(s.len()));
        }
    }

    fn any_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            any::<String>().prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(5, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                prop::collection::vec((any::<String>(), inner), 0..6)
                    .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
            ]
        })
    }
}
