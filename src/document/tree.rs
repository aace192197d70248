//! The `serde_json::Value` walker. It never changes its input: it computes the new values
//! of the selected top-level properties, and the caller swaps them in only when every one
//! succeeded, so a failed call leaves the document as it was.

use serde_json::{Map, Value};
use zeroize::Zeroize;

use super::{Buffers, CellKey, Engine, KeySlot, Op, ROOT, Selected, SkippedProperty};
use crate::error::{Error, Result};
use crate::path::push_token;
use crate::value::{Alphabet, Plaintext, double_from_number, long_from_number, plaintext_to_json};

/// How numbers are typed when encrypting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Numbers {
    /// As parsed ([`Plaintext::from_number`]): an int64 is a Long, `-0.0` is refused,
    /// anything else is a Double.
    AsParsed,
    /// Every number as a Long (its value must be an integer that fits int64).
    Long,
    /// Every number as a Double (it must have an exact double).
    Double,
}

/// A step of the path of the value being visited.
#[derive(Clone, Copy)]
pub(crate) enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

pub(crate) struct Walk<'e, 'a> {
    engine: &'e Engine,
    op: Op,
    numbers: Numbers,
    bufs: Buffers,
    stack: Vec<Seg<'a>>,
    pub(crate) skipped: Vec<SkippedProperty>,
    /// Leaves transformed so far.
    leaves: usize,
}

impl<'e, 'a> Walk<'e, 'a> {
    pub(crate) fn new(engine: &'e Engine, op: Op) -> Self {
        Walk {
            engine,
            op,
            numbers: Numbers::AsParsed,
            bufs: Buffers::new(),
            stack: Vec::new(),
            skipped: Vec::new(),
            leaves: 0,
        }
    }

    /// Types numbers as `numbers` (query parameters).
    pub(crate) fn with_numbers(mut self, numbers: Numbers) -> Self {
        self.numbers = numbers;
        self
    }

    /// Starts the walk at `prefix` (the path of a patch operation or query parameter),
    /// which error messages then include.
    pub(crate) fn at(mut self, prefix: &[&'a str]) -> Self {
        self.stack.extend(prefix.iter().map(|s| Seg::Key(s)));
        self
    }

    /// The new values of the top-level properties of `doc` that change, as (position in
    /// the object's order, new value).
    pub(crate) fn document(&mut self, doc: &'a Map<String, Value>) -> Result<Vec<(usize, Value)>> {
        let engine = self.engine;
        let root = engine.node(ROOT);
        let mut changes = Vec::new();
        for (pos, (k, v)) in doc.iter().enumerate() {
            if let Some(child) = engine.child(root, k) {
                self.stack.push(Seg::Key(k));
                let r = self.node(child, v);
                self.stack.pop();
                match r {
                    Ok(Some(nv)) => changes.push((pos, nv)),
                    Ok(None) => {}
                    Err(e) => return Err(wipe_changes(changes, e)),
                }
            }
        }
        Ok(changes)
    }

    /// The new value of `v`, which tree node `id` matches; `None` when nothing changes.
    pub(crate) fn node(&mut self, id: usize, v: &'a Value) -> Result<Option<Value>> {
        let engine = self.engine;
        let node = engine.node(id);
        if let Some(sel) = node.selected() {
            return self.selected(engine.sel(sel), v, true);
        }
        match v {
            Value::Object(m) if node.has_children() => {
                let mut changes = Vec::new();
                for (pos, (k, x)) in m.iter().enumerate() {
                    if let Some(child) = engine.child(node, k) {
                        self.stack.push(Seg::Key(k));
                        let r = self.node(child, x);
                        self.stack.pop();
                        match r {
                            Ok(Some(nx)) => changes.push((pos, nx)),
                            Ok(None) => {}
                            Err(e) => return Err(wipe_changes(changes, e)),
                        }
                    }
                }
                if changes.is_empty() {
                    return Ok(None);
                }
                let mut m = m.clone();
                apply(&mut m, changes);
                Ok(Some(Value::Object(m)))
            }
            Value::Array(a) => match node.elements() {
                Some(el) => {
                    let mut changes = Vec::new();
                    for (i, x) in a.iter().enumerate() {
                        self.stack.push(Seg::Index(i));
                        let r = self.node(el, x);
                        self.stack.pop();
                        match r {
                            Ok(Some(nx)) => changes.push((i, nx)),
                            Ok(None) => {}
                            Err(e) => return Err(wipe_changes(changes, e)),
                        }
                    }
                    if changes.is_empty() {
                        return Ok(None);
                    }
                    let mut a = a.clone();
                    for (i, nx) in changes {
                        replace_wiping(&mut a[i], nx);
                    }
                    Ok(Some(Value::Array(a)))
                }
                None => Ok(None),
            },
            _ => Ok(None),
        }
    }

    /// The new value of a selected property `v` (leaf by leaf). `exact` is false for a value
    /// strictly under a selected path (a patch sub-path): only the exact `/id` is special.
    pub(crate) fn selected(
        &mut self,
        sel: &Selected,
        v: &'a Value,
        exact: bool,
    ) -> Result<Option<Value>> {
        let key = match &sel.key {
            KeySlot::Ready(k) => k,
            KeySlot::Unavailable { key_id, error } => {
                if self.op == (Op::Decrypt { lenient: true }) {
                    let path = self.path();
                    self.skipped.push(SkippedProperty::new(path, key_id, error));
                    return Ok(None);
                }
                return Err(Error::KeyUnavailable {
                    path: self.path(),
                    key_id: key_id.clone(),
                    source: error.clone(),
                });
            }
        };
        let (alphabet, is_id) = if exact {
            (sel.alphabet, sel.is_id)
        } else {
            (Alphabet::Standard, false)
        };
        if is_id && self.op == Op::Encrypt && !v.is_string() {
            return Err(Error::UnsupportedValue {
                path: self.path(),
                reason: "the encrypted id must be a string".into(),
            });
        }
        self.leaves(sel, key, alphabet, v).map(Some)
    }

    fn leaves(
        &mut self,
        sel: &Selected,
        key: &CellKey,
        alphabet: Alphabet,
        v: &'a Value,
    ) -> Result<Value> {
        match v {
            Value::Null => Ok(Value::Null),
            Value::Object(m) => {
                self.check_depth()?;
                let mut out = Map::with_capacity(m.len());
                for (k, x) in m {
                    self.stack.push(Seg::Key(k));
                    let r = self.leaves(sel, key, alphabet, x);
                    self.stack.pop();
                    match r {
                        Ok(v) => {
                            out.insert(k.clone(), v);
                        }
                        Err(e) => {
                            wipe(&mut Value::Object(out));
                            return Err(e);
                        }
                    }
                }
                Ok(Value::Object(out))
            }
            Value::Array(a) => {
                self.check_depth()?;
                let mut out = Vec::with_capacity(a.len());
                for (i, x) in a.iter().enumerate() {
                    self.stack.push(Seg::Index(i));
                    let r = self.leaves(sel, key, alphabet, x);
                    self.stack.pop();
                    match r {
                        Ok(v) => out.push(v),
                        Err(e) => {
                            wipe(&mut Value::Array(out));
                            return Err(e);
                        }
                    }
                }
                Ok(Value::Array(out))
            }
            leaf => self
                .leaf(sel, key, alphabet, leaf)
                .map_err(|e| e.at_path(&self.path())),
        }
    }

    fn leaf(
        &mut self,
        sel: &Selected,
        key: &CellKey,
        alphabet: Alphabet,
        v: &Value,
    ) -> Result<Value> {
        let limits = &self.engine.limits;
        limits.leaf(&mut self.leaves)?;
        if let Value::String(s) = v {
            limits.string(s.len())?;
        }
        match self.op {
            Op::Encrypt => {
                let pt = match (v, self.numbers) {
                    (Value::Number(n), Numbers::Long) => long_from_number(n)?,
                    (Value::Number(n), Numbers::Double) => double_from_number(n)?,
                    _ => Plaintext::from_json(v)?,
                };
                let mut s =
                    String::with_capacity(key.stored_len(pt.as_bytes().len()).div_ceil(3) * 4);
                key.encrypt_to_string(sel.mode, &pt, alphabet, &mut self.bufs.scratch, &mut s)?;
                Ok(Value::String(s))
            }
            Op::Decrypt { .. } => {
                let Value::String(stored) = v else {
                    return Err(Error::MalformedCiphertext {
                        path: String::new(),
                        key_id: key.key_id().to_owned(),
                        reason: "an encrypted value must be a JSON string",
                    });
                };
                let Buffers { scratch, plain, .. } = &mut self.bufs;
                let marker = key.decrypt(stored, alphabet, scratch, plain)?;
                plaintext_to_json(marker, plain).map_err(|reason| Error::MalformedCiphertext {
                    path: String::new(),
                    key_id: key.key_id().to_owned(),
                    reason,
                })
            }
        }
    }

    fn check_depth(&self) -> Result<()> {
        if self.stack.len() + 1 > self.engine.limits.max_depth {
            return Err(self.engine.limits.too_deep(self.path()));
        }
        Ok(())
    }

    /// The JSON Pointer of the value being visited.
    fn path(&self) -> String {
        let mut p = String::new();
        for seg in &self.stack {
            match seg {
                Seg::Key(k) => push_token(&mut p, k),
                Seg::Index(i) => push_token(&mut p, &i.to_string()),
            }
        }
        p
    }
}

/// Zeroizes every string in `v` (values built by a walk that failed may hold decrypted
/// plaintext) before it is freed.
pub(crate) fn wipe(v: &mut Value) {
    match v {
        Value::String(s) => s.zeroize(),
        Value::Array(a) => a.iter_mut().for_each(wipe),
        Value::Object(m) => m.values_mut().for_each(wipe),
        _ => {}
    }
}

/// Wipes the values a failed walk built (see [`wipe`]) and returns its error.
pub(crate) fn wipe_changes(changes: Vec<(usize, Value)>, e: Error) -> Error {
    for (_, mut v) in changes {
        wipe(&mut v);
    }
    e
}

/// Puts `new` in `slot` and wipes what was there (see [`wipe`]): the value replaced may be
/// plaintext (encrypting) or a copy of it (the clone of a nested object or array).
pub(crate) fn replace_wiping(slot: &mut Value, new: Value) {
    let mut old = std::mem::replace(slot, new);
    wipe(&mut old);
}

/// Replaces the values at the given positions (in iteration order) of `m`, wiping the
/// values replaced.
pub(crate) fn apply(m: &mut Map<String, Value>, changes: Vec<(usize, Value)>) {
    let mut changes = changes.into_iter().peekable();
    for (pos, (_, v)) in m.iter_mut().enumerate() {
        match changes.peek() {
            Some((p, _)) if *p == pos => {
                if let Some((_, nv)) = changes.next() {
                    replace_wiping(v, nv);
                }
            }
            Some(_) => {}
            None => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wipe_clears_every_string() {
        let mut v = json!({"a": ["secret", {"b": "plain"}], "n": 5, "c": "x"});
        wipe(&mut v);
        assert_eq!(v, json!({"a": ["", {"b": ""}], "n": 5, "c": ""}));
    }

    #[test]
    fn apply_replaces_in_order() {
        let mut m = json!({"a": 1, "b": 2, "c": 3, "d": 4})
            .as_object()
            .unwrap()
            .clone();
        apply(&mut m, vec![(1, json!("B")), (3, json!("D"))]);
        assert_eq!(
            Value::Object(m),
            json!({"a": 1, "b": "B", "c": 3, "d": "D"})
        );
    }
}
