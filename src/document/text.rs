//! The JSON-text walker.
//!
//! `serde_json` parses (and validates) the top level only, into `(key, &RawValue)` pairs:
//! no value is built, and the raw text of every property stays a slice of the input. The
//! output is the input with the text of each selected property replaced: keys, whitespace,
//! order and every property outside the policy come out byte for byte. Under a selected
//! property a flat scan visits each primitive leaf (numbers are classified from their
//! literal text, by the .NET rule); keys, structure and `null` are copied as they are. For
//! nested policy paths the ancestors are scanned the same way to find the selected
//! children. Paths for error messages and reports are worked out only when needed, by
//! rescanning the input up to the offending offset.

use std::borrow::Cow;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::{Buffers, Engine, KeySlot, MAX_DEPTH, Op, ROOT, Selected, SkippedProperty, unescape};
use crate::cipher::CbcHmacKey;
use crate::error::{Error, Result};
use crate::path::push_token;
use crate::value::{
    Plaintext, decrypt_stored_into, encrypt_to_stored_bytes_into, write_plaintext_json,
};

/// Encrypts or decrypts the selected properties of the JSON object `input`, returning the
/// new text; skipped properties (lenient decryption) are appended to `skipped`.
pub(crate) fn transform(
    engine: &Engine,
    op: Op,
    input: &str,
    skipped: &mut Vec<SkippedProperty>,
) -> Result<Vec<u8>> {
    let entries = parse_top_level(input)?;
    let capacity = match op {
        Op::Encrypt => input.len() + input.len() / 2 + 64,
        Op::Decrypt { .. } => input.len(),
    };
    let mut w = Walk {
        engine,
        op,
        input,
        bufs: Buffers::default(),
        skipped,
    };
    let mut out = Vec::with_capacity(capacity);
    let root = engine.node(ROOT);
    let mut copied = 0;
    for (key, raw) in entries.0 {
        let Some(child) = engine.child(root, &key) else {
            continue;
        };
        let (start, end) = span_in(input, raw.get())?;
        out.extend_from_slice(slice(input, copied, start)?);
        w.node(child, start, end, 1, &mut out)?;
        copied = end;
    }
    out.extend_from_slice(slice(input, copied, input.len())?);
    Ok(out)
}

struct Walk<'e, 'a, 'r> {
    engine: &'e Engine,
    op: Op,
    input: &'a str,
    bufs: Buffers,
    skipped: &'r mut Vec<SkippedProperty>,
}

impl Walk<'_, '_, '_> {
    /// Writes the transformed text of the value at `input[start..end]`, which the tree node
    /// `id` matches; `depth` is the number of segments of its path.
    fn node(
        &mut self,
        id: usize,
        start: usize,
        end: usize,
        depth: usize,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let engine = self.engine;
        let node = engine.node(id);
        if let Some(sel) = node.selected() {
            return self.selected(engine.sel(sel), start, end, depth, out);
        }
        let b = self.input.as_bytes();
        match b.get(start) {
            Some(b'{') if node.has_children() => {
                let mut copied = start;
                let mut i = start + 1;
                loop {
                    i = skip_ws(b, i);
                    match b.get(i) {
                        Some(b'}') => break,
                        Some(b',') => {
                            i += 1;
                            continue;
                        }
                        Some(b'"') => {}
                        _ => return Err(self.bad_json(i)),
                    }
                    let key_end = string_end(b, i).ok_or_else(|| self.bad_json(i))?;
                    let raw_key = slice_str(self.input, i, key_end)?;
                    let child = match unescape(raw_key, &mut self.bufs.text) {
                        Ok(key) => engine.child(node, key),
                        Err(r) => return Err(self.invalid(i, r)),
                    };
                    i = skip_ws(b, key_end);
                    if b.get(i) != Some(&b':') {
                        return Err(self.bad_json(i));
                    }
                    i = skip_ws(b, i + 1);
                    let v_end = value_end(b, i).ok_or_else(|| self.bad_json(i))?;
                    if let Some(child) = child {
                        out.extend_from_slice(slice(self.input, copied, i)?);
                        self.node(child, i, v_end, depth + 1, out)?;
                        copied = v_end;
                    }
                    i = v_end;
                }
                out.extend_from_slice(slice(self.input, copied, end)?);
            }
            Some(b'[') if node.elements().is_some() => {
                let el = node.elements().unwrap_or(ROOT);
                let mut copied = start;
                let mut i = start + 1;
                loop {
                    i = skip_ws(b, i);
                    match b.get(i) {
                        Some(b']') => break,
                        Some(b',') => {
                            i += 1;
                            continue;
                        }
                        None => return Err(self.bad_json(i)),
                        _ => {}
                    }
                    let v_end = value_end(b, i).ok_or_else(|| self.bad_json(i))?;
                    out.extend_from_slice(slice(self.input, copied, i)?);
                    self.node(el, i, v_end, depth + 1, out)?;
                    copied = v_end;
                    i = v_end;
                }
                out.extend_from_slice(slice(self.input, copied, end)?);
            }
            // Absent shape (a scalar where the policy expects an object or array):
            // nothing is selected here.
            _ => out.extend_from_slice(slice(self.input, start, end)?),
        }
        Ok(())
    }

    /// A selected property: every primitive leaf under it, in one flat scan.
    fn selected(
        &mut self,
        sel: &Selected,
        start: usize,
        end: usize,
        depth: usize,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let key = match &sel.key {
            KeySlot::Ready(k) => k,
            KeySlot::Unavailable { key_id, error } => {
                let path = path_at(self.input, start);
                if self.op == (Op::Decrypt { lenient: true }) {
                    self.skipped.push(SkippedProperty::new(path, key_id, error));
                    out.extend_from_slice(slice(self.input, start, end)?);
                    return Ok(());
                }
                return Err(Error::KeyUnavailable {
                    path,
                    key_id: key_id.clone(),
                    source: error.clone(),
                });
            }
        };
        let b = self.input.as_bytes();
        if sel.is_id && self.op == Op::Encrypt && b.get(start) != Some(&b'"') {
            return Err(Error::UnsupportedValue {
                path: path_at(self.input, start),
                reason: "the encrypted id must be a string".into(),
            });
        }
        let mut copied = start;
        let mut nesting = 0usize;
        let mut i = start;
        while i < end {
            let Some(&c) = b.get(i) else { break };
            match c {
                b'"' => {
                    let s_end = string_end(b, i).ok_or_else(|| self.bad_json(i))?;
                    if b.get(skip_ws(b, s_end)) == Some(&b':') {
                        // An object key: copied as it is.
                        i = s_end;
                        continue;
                    }
                    out.extend_from_slice(slice(self.input, copied, i)?);
                    self.string_leaf(sel, key, i, s_end, out)
                        .map_err(|e| e.at_path(&path_at(self.input, i)))?;
                    copied = s_end;
                    i = s_end;
                }
                b'-' | b'0'..=b'9' => {
                    let n_end = number_end(b, i);
                    out.extend_from_slice(slice(self.input, copied, i)?);
                    let lit = slice_str(self.input, i, n_end)?;
                    self.scalar_leaf(sel, key, Scalar::Number(lit), out)
                        .map_err(|e| e.at_path(&path_at(self.input, i)))?;
                    copied = n_end;
                    i = n_end;
                }
                b't' | b'f' => {
                    let (v, len) = if b[i..].starts_with(b"true") {
                        (true, 4)
                    } else if b[i..].starts_with(b"false") {
                        (false, 5)
                    } else {
                        return Err(self.bad_json(i));
                    };
                    out.extend_from_slice(slice(self.input, copied, i)?);
                    self.scalar_leaf(sel, key, Scalar::Bool(v), out)
                        .map_err(|e| e.at_path(&path_at(self.input, i)))?;
                    copied = i + len;
                    i += len;
                }
                b'{' | b'[' => {
                    nesting += 1;
                    if depth + nesting > MAX_DEPTH {
                        return Err(Error::InvalidDocument {
                            path: path_at(self.input, i),
                            reason: format!("nested more than {MAX_DEPTH} levels deep"),
                        });
                    }
                    i += 1;
                }
                b'}' | b']' => {
                    nesting = nesting.saturating_sub(1);
                    i += 1;
                }
                // `null` (stays as it is), whitespace, `:` and `,`.
                _ => i += 1,
            }
        }
        out.extend_from_slice(slice(self.input, copied, end)?);
        Ok(())
    }

    fn string_leaf(
        &mut self,
        sel: &Selected,
        key: &CbcHmacKey,
        start: usize,
        end: usize,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let raw = slice_str(self.input, start, end)?;
        let Buffers {
            scratch,
            plain,
            text,
        } = &mut self.bufs;
        let s = unescape(raw, text).map_err(|r| Error::InvalidDocument {
            path: String::new(),
            reason: r.into(),
        })?;
        match self.op {
            Op::Encrypt => {
                out.push(b'"');
                encrypt_to_stored_bytes_into(
                    key,
                    sel.mode,
                    &Plaintext::string(s),
                    sel.alphabet,
                    scratch,
                    out,
                )?;
                out.push(b'"');
            }
            Op::Decrypt { .. } => {
                let marker = decrypt_stored_into(key, s, sel.alphabet, scratch, plain)?;
                write_plaintext_json(marker, plain, out).map_err(|reason| {
                    Error::MalformedCiphertext {
                        path: String::new(),
                        key_id: key.key_id().to_owned(),
                        reason,
                    }
                })?;
            }
        }
        Ok(())
    }

    fn scalar_leaf(
        &mut self,
        sel: &Selected,
        key: &CbcHmacKey,
        v: Scalar<'_>,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        if self.op != Op::Encrypt {
            return Err(Error::MalformedCiphertext {
                path: String::new(),
                key_id: key.key_id().to_owned(),
                reason: "an encrypted value must be a JSON string",
            });
        }
        let pt = match v {
            Scalar::Number(lit) => Plaintext::from_number_literal(lit)?,
            Scalar::Bool(b) => Plaintext::boolean(b),
        };
        out.push(b'"');
        encrypt_to_stored_bytes_into(
            key,
            sel.mode,
            &pt,
            sel.alphabet,
            &mut self.bufs.scratch,
            out,
        )?;
        out.push(b'"');
        Ok(())
    }

    fn bad_json(&self, at: usize) -> Error {
        self.invalid(at, "invalid JSON")
    }

    fn invalid(&self, at: usize, reason: &str) -> Error {
        Error::InvalidDocument {
            path: path_at(self.input, at),
            reason: reason.into(),
        }
    }
}

enum Scalar<'a> {
    Number(&'a str),
    Bool(bool),
}

/// The top-level properties of a document: (unescaped key, raw value text).
struct Entries<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

fn parse_top_level(input: &str) -> Result<Entries<'_>> {
    serde_json::from_str(input).map_err(|e| Error::InvalidDocument {
        path: String::new(),
        reason: match e.classify() {
            // A data error can only be "not an object"; its message would quote the
            // value, so it is not passed on.
            serde_json::error::Category::Data => format!(
                "a document must be a JSON object (line {}, column {})",
                e.line(),
                e.column()
            ),
            _ => format!("not valid JSON: {e}"),
        },
    })
}

impl<'de> Deserialize<'de> for Entries<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Entries<'de>, A::Error> {
                let mut v = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some(Key(k)) = map.next_key()? {
                    let raw: &'de RawValue = map.next_value()?;
                    v.push((k, raw));
                }
                Ok(Entries(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// An object key, borrowed from the input when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(
                self,
                s: &'de str,
            ) -> std::result::Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }

            fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }

            fn visit_string<E: de::Error>(self, s: String) -> std::result::Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// The byte range of `inner`, a slice of `outer`.
fn span_in(outer: &str, inner: &str) -> Result<(usize, usize)> {
    let start = (inner.as_ptr() as usize).wrapping_sub(outer.as_ptr() as usize);
    let end = start.wrapping_add(inner.len());
    match outer.get(start..end) {
        Some(s) if std::ptr::eq(s.as_ptr(), inner.as_ptr()) => Ok((start, end)),
        _ => Err(internal()),
    }
}

fn internal() -> Error {
    Error::InvalidDocument {
        path: String::new(),
        reason: "internal error: lost track of the input".into(),
    }
}

fn slice(input: &str, start: usize, end: usize) -> Result<&[u8]> {
    input.as_bytes().get(start..end).ok_or_else(internal)
}

fn slice_str(input: &str, start: usize, end: usize) -> Result<&str> {
    input.get(start..end).ok_or_else(internal)
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The index after the closing quote of the string starting at `b[i] == b'"'`.
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        match b.get(j)? {
            b'"' => return Some(j + 1),
            b'\\' => j += 2,
            _ => j += 1,
        }
    }
}

fn number_end(b: &[u8], mut i: usize) -> usize {
    while matches!(
        b.get(i),
        Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
    ) {
        i += 1;
    }
    i
}

/// The index after the (valid) JSON value starting at `i`. Iterative: any depth.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match b.get(j)? {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while !matches!(
                b.get(j),
                None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            ) {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

/// The JSON Pointer of the value that starts at byte `target` of the document `input`,
/// found by rescanning the input (only on errors and skips).
pub(crate) fn path_at(input: &str, target: usize) -> String {
    enum Frame {
        Object(Option<(usize, usize)>),
        Array(usize),
    }
    let b = input.as_bytes();
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < target && i < b.len() {
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
                let Some(end) = string_end(b, i) else { break };
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
    let mut path = String::new();
    let mut buf = String::new();
    for frame in &stack {
        match frame {
            Frame::Object(Some((s, e))) => {
                let raw = input.get(*s..*e).unwrap_or("\"?\"");
                push_token(&mut path, unescape(raw, &mut buf).unwrap_or("?"));
            }
            Frame::Object(None) => {}
            Frame::Array(n) => push_token(&mut path, &n.to_string()),
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_at_finds_the_pointer() {
        let doc = r#"{"a": 1, "b\/c": {"x": [10, {"y": "t"}, [5, 6]]}, "z": "q"}"#;
        let at = |needle: &str| path_at(doc, doc.find(needle).unwrap());
        assert_eq!(at("1,"), "/a");
        assert_eq!(at("10"), "/b~1c/x/0");
        assert_eq!(at("\"t\""), "/b~1c/x/1/y");
        assert_eq!(at("6]"), "/b~1c/x/2/1");
        assert_eq!(at("\"q\""), "/z");
        assert_eq!(at("{\"x\""), "/b~1c");
    }

    #[test]
    fn value_end_skips_nested_values() {
        let s = br#"{"a": [1, "]}", {"b": "\"}"}]} , 5"#;
        assert_eq!(value_end(s, 0), Some(s.len() - 4));
        assert_eq!(value_end(b"12.5e3, ", 0), Some(6));
        assert_eq!(value_end(b"true}", 0), Some(4));
        assert_eq!(value_end(br#""a\"b" "#, 0), Some(6));
        assert_eq!(value_end(b"[[[", 0), None);
        assert_eq!(value_end(b"", 0), None);
    }

    #[test]
    fn span_in_rejects_foreign_slices() {
        let a = String::from("hello world");
        let b = String::from("world");
        assert_eq!(span_in(&a, &a[6..]).unwrap(), (6, 11));
        assert!(span_in(&a, &b).is_err());
    }
}
