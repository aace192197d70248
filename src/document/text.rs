//! The JSON-text walker.
//!
//! One pass over the top level validates the whole document (as strictly as `serde_json`,
//! except that numbers outside the policy are not range-checked: they are only copied)
//! and finds where each property's value starts and ends, without building any value. The
//! output is the input with the text of each selected property replaced: keys, whitespace,
//! order and every property outside the policy come out byte for byte. Under a selected
//! property a flat scan visits each primitive leaf (numbers are classified from their
//! literal text, by the .NET rule); keys, structure and `null` are copied as they are. For
//! nested policy paths the ancestors are scanned the same way to find the selected
//! children. Paths for error messages and reports are worked out only when needed, by
//! rescanning the input up to the offending offset.
//!
//! A property name with a lone UTF-16 surrogate escape (`"k\udb5e"`: valid JSON, which
//! JavaScript writes) is not Unicode, so no policy path names it: at any depth it is never
//! selected, and it and its value are copied like any property outside the policy. Under
//! a selected property it is a key like any other, copied as written.

use super::scan::{self, ScanError, path_at, paths_at, skip_ws};
use super::{
    Buffers, CellKey, Engine, KeySlot, Op, ROOT, Selected, SkippedProperty, property_name, unescape,
};
use zeroize::Zeroize;

use crate::cipher::ReserveWiping;
use crate::error::{Error, Result};
use crate::value::{Plaintext, write_plaintext_json};

/// Validates that `input` is one JSON object with nothing but white space after it, and
/// calls `member` with each top-level property in order: its name (`None` for a name that
/// no policy path can name: one whose escapes hold a lone UTF-16 surrogate), the start and
/// end of its value, and whether the value's text holds escapes. `names` is scratch for
/// unescaping names, `stack` for the scanner. Shared by the document walker and rotation.
pub(crate) fn top_level_members(
    input: &str,
    names: &mut String,
    stack: &mut Vec<u8>,
    mut member: impl FnMut(Option<&str>, usize, usize, bool),
) -> Result<()> {
    let b = input.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return Err(Error::InvalidDocument {
            path: String::new(),
            reason: "a document must be a JSON object".into(),
        });
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        i += 1;
    } else {
        loop {
            if b.get(i) != Some(&b'"') {
                return Err(syntax(input, i, "expected a property name"));
            }
            let (key_end, escaped) = scan::string(b, i).map_err(|e| scan_error(input, e))?;
            let name = if escaped {
                property_name(slice_str(input, i, key_end)?, names)
                    .map_err(|r| syntax(input, i, r))?
            } else {
                Some(slice_str(input, i + 1, key_end - 1)?)
            };
            let colon = skip_ws(b, key_end);
            if b.get(colon) != Some(&b':') {
                return Err(syntax(input, colon, "expected ':'"));
            }
            let start = skip_ws(b, colon + 1);
            let (end, escaped) =
                scan::value_escaped(b, start, stack).map_err(|e| scan_error(input, e))?;
            member(name, start, end, escaped);
            i = skip_ws(b, end);
            match b.get(i) {
                Some(b',') => i = skip_ws(b, i + 1),
                Some(b'}') => {
                    i += 1;
                    break;
                }
                _ => return Err(syntax(input, i, "expected ',' or '}'")),
            }
        }
    }
    if skip_ws(b, i) != b.len() {
        return Err(syntax(input, i, "trailing characters after the document"));
    }
    Ok(())
}

/// Encrypts or decrypts the selected properties of the JSON object `input`, returning the
/// new text; skipped properties (lenient decryption) are appended to `skipped`.
pub(crate) fn transform(
    engine: &Engine,
    op: Op,
    input: &str,
    skipped: &mut Vec<SkippedProperty>,
) -> Result<Vec<u8>> {
    if input.len() > engine.limits.max_document_bytes {
        return Err(Error::LimitExceeded {
            path: String::new(),
            limit: "max_document_bytes",
            max: engine.limits.max_document_bytes,
        });
    }
    let capacity = match op {
        Op::Encrypt => input.len() + input.len() / 2 + 64,
        Op::Decrypt { .. } => input.len(),
    };
    let mut w = Walk {
        engine,
        op,
        input,
        bufs: Buffers::new(),
        stack: Vec::new(),
        skipped,
        leaves: 0,
        skip_offsets: Vec::new(),
    };
    let root = engine.node(ROOT);
    // First validate the whole document and note the selected top-level values (tree node,
    // start, end), so that invalid JSON is always reported as such; then transform.
    let mut matched: Vec<(usize, usize, usize, bool)> = Vec::new();
    top_level_members(
        input,
        &mut w.bufs.text,
        &mut w.stack,
        |name, start, end, escaped| {
            if let Some(child) = name.and_then(|name| engine.child(root, name)) {
                matched.push((child, start, end, escaped));
            }
        },
    )?;
    let mut out = Vec::with_capacity(capacity);
    let mut copied = 0;
    let run = || -> Result<()> {
        for (child, start, end, escaped) in matched {
            w.put(&mut out, slice(input, copied, start)?);
            w.top_level(child, start, end, escaped, &mut out)?;
            copied = end;
        }
        w.put(&mut out, slice(input, copied, input.len())?);
        Ok(())
    };
    match run() {
        Ok(()) => {
            let first = w.skipped.len() - w.skip_offsets.len();
            let paths = paths_at(input, &w.skip_offsets);
            for (s, p) in w.skipped[first..].iter_mut().zip(paths) {
                s.path = p;
            }
            Ok(out)
        }
        Err(e) => {
            // The partial output may hold decrypted values: wipe it before it is freed.
            out.zeroize();
            Err(e)
        }
    }
}

fn syntax(input: &str, at: usize, what: &str) -> Error {
    let (line, column) = scan::line_column(input, at);
    Error::InvalidDocument {
        path: String::new(),
        reason: format!("not valid JSON: {what} at line {line} column {column}"),
    }
}

fn scan_error(input: &str, e: ScanError) -> Error {
    syntax(input, e.at, e.what)
}

struct Walk<'e, 'a, 'r> {
    engine: &'e Engine,
    op: Op,
    input: &'a str,
    bufs: Buffers,
    /// Nesting scratch for the scanner.
    stack: Vec<u8>,
    skipped: &'r mut Vec<SkippedProperty>,
    /// Leaves transformed so far.
    leaves: usize,
    /// Where each property pushed to `skipped` starts.
    skip_offsets: Vec<usize>,
}

impl Walk<'_, '_, '_> {
    /// A top-level value, already validated. A selected string (the common case) is
    /// handled directly, without scanning it again.
    fn top_level(
        &mut self,
        id: usize,
        start: usize,
        end: usize,
        escaped: bool,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let engine = self.engine;
        if let Some(sel) = engine.node(id).selected()
            && self.input.as_bytes().get(start) == Some(&b'"')
        {
            let sel = engine.sel(sel);
            if let KeySlot::Ready(key) = &sel.key {
                return self
                    .string_leaf(sel, key, start, end, escaped, out)
                    .map_err(|e| e.at_path(&path_at(self.input, start)));
            }
        }
        self.node(id, start, end, 1, out)
    }

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
                    let (key_end, _) = scan::string(b, i).map_err(|_| self.bad_json(i))?;
                    let raw_key = slice_str(self.input, i, key_end)?;
                    let child = match property_name(raw_key, &mut self.bufs.text) {
                        Ok(Some(key)) => engine.child(node, key),
                        Ok(None) => None,
                        Err(r) => return Err(self.invalid(i, r)),
                    };
                    i = skip_ws(b, key_end);
                    if b.get(i) != Some(&b':') {
                        return Err(self.bad_json(i));
                    }
                    i = skip_ws(b, i + 1);
                    let v_end = scan::value(b, i, &mut self.stack).map_err(|_| self.bad_json(i))?;
                    if let Some(child) = child {
                        self.put(out, slice(self.input, copied, i)?);
                        self.node(child, i, v_end, depth + 1, out)?;
                        copied = v_end;
                    }
                    i = v_end;
                }
                self.put(out, slice(self.input, copied, end)?);
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
                    let v_end = scan::value(b, i, &mut self.stack).map_err(|_| self.bad_json(i))?;
                    self.put(out, slice(self.input, copied, i)?);
                    self.node(el, i, v_end, depth + 1, out)?;
                    copied = v_end;
                    i = v_end;
                }
                self.put(out, slice(self.input, copied, end)?);
            }
            // Absent shape (a scalar where the policy expects an object or array):
            // nothing is selected here.
            _ => self.put(out, slice(self.input, start, end)?),
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
                if self.op == (Op::Decrypt { lenient: true }) {
                    // The path is found afterwards, for every skip in one rescan.
                    self.skipped
                        .push(SkippedProperty::new(String::new(), key_id, error));
                    self.skip_offsets.push(start);
                    self.put(out, slice(self.input, start, end)?);
                    return Ok(());
                }
                return Err(Error::KeyUnavailable {
                    path: path_at(self.input, start),
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
                    let (s_end, escaped) = scan::string(b, i).map_err(|_| self.bad_json(i))?;
                    if b.get(skip_ws(b, s_end)) == Some(&b':') {
                        // An object key: copied as it is.
                        i = s_end;
                        continue;
                    }
                    self.put(out, slice(self.input, copied, i)?);
                    self.string_leaf(sel, key, i, s_end, escaped, out)
                        .map_err(|e| e.at_path(&path_at(self.input, i)))?;
                    copied = s_end;
                    i = s_end;
                }
                b'-' | b'0'..=b'9' => {
                    let n_end = scan::number(b, i).map_err(|_| self.bad_json(i))?;
                    self.put(out, slice(self.input, copied, i)?);
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
                    self.put(out, slice(self.input, copied, i)?);
                    self.scalar_leaf(sel, key, Scalar::Bool(v), out)
                        .map_err(|e| e.at_path(&path_at(self.input, i)))?;
                    copied = i + len;
                    i += len;
                }
                b'{' | b'[' => {
                    nesting += 1;
                    if depth + nesting > self.engine.limits.max_depth {
                        return Err(self.engine.limits.too_deep(path_at(self.input, i)));
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
        self.put(out, slice(self.input, copied, end)?);
        Ok(())
    }

    fn string_leaf(
        &mut self,
        sel: &Selected,
        key: &CellKey,
        start: usize,
        end: usize,
        escaped: bool,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let limits = &self.engine.limits;
        limits.leaf(&mut self.leaves)?;
        limits.string(end.saturating_sub(start + 2))?;
        let Buffers {
            scratch,
            plain,
            text,
        } = &mut self.bufs;
        let s = if escaped {
            unescape(slice_str(self.input, start, end)?, text).map_err(|r| {
                Error::InvalidDocument {
                    path: String::new(),
                    reason: r.into(),
                }
            })?
        } else {
            slice_str(self.input, start + 1, end - 1)?
        };
        match self.op {
            Op::Encrypt => {
                out.push(b'"');
                key.encrypt_to_bytes(sel.mode, &Plaintext::string(s), sel.alphabet, scratch, out)?;
                out.push(b'"');
            }
            Op::Decrypt { .. } => {
                let marker = key.decrypt(s, sel.alphabet, scratch, plain)?;
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
        key: &CellKey,
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
        self.engine.limits.leaf(&mut self.leaves)?;
        let pt = match v {
            Scalar::Number(lit) => Plaintext::from_number_literal(lit)?,
            Scalar::Bool(b) => Plaintext::boolean(b),
        };
        out.push(b'"');
        key.encrypt_to_bytes(sel.mode, &pt, sel.alphabet, &mut self.bufs.scratch, out)?;
        out.push(b'"');
        Ok(())
    }

    /// Appends a piece of the input to the output. When decrypting, the output holds the
    /// values decrypted so far, so a growth wipes the old allocation before it is freed
    /// (also for the decrypted values, written by [`write_plaintext_json`]). When
    /// encrypting it holds only ciphertext and the properties outside the policy.
    #[inline]
    fn put(&self, out: &mut Vec<u8>, bytes: &[u8]) {
        if self.op != Op::Encrypt {
            out.reserve_wiping(bytes.len());
        }
        out.extend_from_slice(bytes);
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

pub(crate) fn internal() -> Error {
    Error::InvalidDocument {
        path: String::new(),
        reason: "internal error: lost track of the input".into(),
    }
}

pub(crate) fn slice(input: &str, start: usize, end: usize) -> Result<&[u8]> {
    input.as_bytes().get(start..end).ok_or_else(internal)
}

pub(crate) fn slice_str(input: &str, start: usize, end: usize) -> Result<&str> {
    input.get(start..end).ok_or_else(internal)
}
