//! Patch operations and query parameters: values headed for one path of a document,
//! encrypted exactly as that path's stored leaves are.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;

use super::{Engine, ROOT, scan};
use crate::error::{Error, Result};
use crate::path::{is_array_token, push_token};
use crate::value::{double_from_literal, long_from_literal, write_plaintext_json};

/// How a number query parameter is typed, since an equality match needs the exact stored
/// type: a Long 1 and a Double 1.0 have different ciphertexts.
///
/// Without one, a parameter is typed as a document's leaf is: from its literal for JSON
/// text ([`encrypt_query_parameter_str`](crate::PreparedPolicy::encrypt_query_parameter_str)),
/// from the parsed number for a `Value`. A type is for matching values another writer
/// typed differently (the JavaScript SDK stores every integral number, `1.0` too, as a
/// Long).
///
/// # Examples
///
/// ```
/// use always_encrypted::NumberType;
/// use serde_json::json;
/// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
/// # use always_encrypted::{ClientEncryptionPolicy, PrepareOptions, PreparedPolicy};
/// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
/// #   {"path": "/age", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
/// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#)?;
/// # let key = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
/// # let prepared = PreparedPolicy::new(&policy, PrepareOptions::new(), |_| Ok(key.clone()))?;
/// // `prepared` encrypts /age, Deterministic.
/// let mut doc = json!({"age": 42}); // an integer literal: stored as a Long
/// prepared.encrypt_document(&mut doc)?;
/// let p = |t| prepared.encrypt_query_parameter("/age", &json!(42), Some(t));
/// assert_eq!(p(NumberType::Long)?, doc["age"]);
/// assert_ne!(p(NumberType::Double)?, doc["age"]);
/// # Ok::<(), always_encrypted::Error>(())
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NumberType {
    /// A 64-bit integer (the type of an integer literal such as `42`). Any number whose
    /// value is an integer that fits int64 exactly is accepted (`42.0`, `4.2e1`, `-0`);
    /// anything else (`1.5`, `1e19`) is refused.
    Long,
    /// A double (the type of a literal with a fraction or exponent, such as `42.0`). An
    /// integer must have an exact double (`9007199254740993` is refused).
    Double,
}

/// A Cosmos DB partial-document update (patch) operation, serialized as Cosmos sends it,
/// e.g. `{"op": "set", "path": "/ssn", "value": "123-45-6789"}`.
///
/// # Examples
///
/// ```
/// use always_encrypted::PatchOperation;
/// use serde_json::json;
/// # use always_encrypted::keys::{DataEncryptionKey, ResolvedKey};
/// # use always_encrypted::{ClientEncryptionPolicy, PrepareOptions, PreparedPolicy};
/// # let policy = ClientEncryptionPolicy::from_json(r#"{"includedPaths": [
/// #   {"path": "/age", "clientEncryptionKeyId": "cek1", "encryptionType": "Deterministic",
/// #    "encryptionAlgorithm": "AEAD_AES_256_CBC_HMAC_SHA256"}]}"#)?;
/// # let key = ResolvedKey::new("cek1", DataEncryptionKey::generate()?);
/// # let prepared = PreparedPolicy::new(&policy, PrepareOptions::new(), |_| Ok(key.clone()))?;
/// let ops = [PatchOperation::set("/age", json!(43)), PatchOperation::incr("/visits", json!(1))];
/// let wire = json!({"op": "incr", "path": "/visits", "value": 1});
/// assert_eq!(serde_json::to_value(&ops[1]).ok(), Some(wire));
/// // `prepared` encrypts /age: its new value is encrypted, /visits passes through.
/// let encrypted = prepared.encrypt_patch(&ops)?;
/// assert!(matches!(&encrypted[0], PatchOperation::Set { value, .. } if value.is_string()));
/// assert_eq!(encrypted[1], ops[1]);
/// # Ok::<(), always_encrypted::Error>(())
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum PatchOperation {
    /// Adds a property or inserts an array element.
    Add {
        /// JSON Pointer of the target.
        path: String,
        /// The new value.
        value: Value,
    },
    /// Sets a property, creating it if needed.
    Set {
        /// JSON Pointer of the target.
        path: String,
        /// The new value.
        value: Value,
    },
    /// Replaces an existing property.
    Replace {
        /// JSON Pointer of the target.
        path: String,
        /// The new value.
        value: Value,
    },
    /// Removes a property.
    Remove {
        /// JSON Pointer of the target.
        path: String,
    },
    /// Increments a number.
    Incr {
        /// JSON Pointer of the target.
        path: String,
        /// The increment.
        value: Value,
    },
    /// Moves a value from one path to another.
    Move {
        /// JSON Pointer of the source.
        from: String,
        /// JSON Pointer of the target.
        path: String,
    },
}

impl PatchOperation {
    /// `add` of `value` at `path`.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::PatchOperation;
    /// use serde_json::json;
    ///
    /// let op = PatchOperation::add("/tags/-", json!("new"));
    /// let wire = json!({"op": "add", "path": "/tags/-", "value": "new"});
    /// assert_eq!(serde_json::to_value(&op).ok(), Some(wire));
    /// ```
    pub fn add(path: impl Into<String>, value: Value) -> Self {
        PatchOperation::Add {
            path: path.into(),
            value,
        }
    }

    /// `set` of `value` at `path`.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::PatchOperation;
    /// use serde_json::json;
    ///
    /// let op = PatchOperation::set("/ssn", json!("123-45-6789"));
    /// assert_eq!(op, PatchOperation::Set { path: "/ssn".into(), value: json!("123-45-6789") });
    /// ```
    pub fn set(path: impl Into<String>, value: Value) -> Self {
        PatchOperation::Set {
            path: path.into(),
            value,
        }
    }

    /// `replace` of `path` by `value`.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::PatchOperation;
    /// use serde_json::json;
    ///
    /// let op = PatchOperation::replace("/name", json!("Ada"));
    /// let wire = json!({"op": "replace", "path": "/name", "value": "Ada"});
    /// assert_eq!(serde_json::from_value::<PatchOperation>(wire).ok(), Some(op));
    /// ```
    pub fn replace(path: impl Into<String>, value: Value) -> Self {
        PatchOperation::Replace {
            path: path.into(),
            value,
        }
    }

    /// `remove` of `path`.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::PatchOperation;
    /// use serde_json::json;
    ///
    /// let op = PatchOperation::remove("/ssn");
    /// let wire = json!({"op": "remove", "path": "/ssn"});
    /// assert_eq!(serde_json::to_value(&op).ok(), Some(wire));
    /// ```
    pub fn remove(path: impl Into<String>) -> Self {
        PatchOperation::Remove { path: path.into() }
    }

    /// `incr` of `path` by `value`.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::PatchOperation;
    /// use serde_json::json;
    ///
    /// let op = PatchOperation::incr("/visits", json!(1));
    /// assert_eq!(op, PatchOperation::Incr { path: "/visits".into(), value: json!(1) });
    /// ```
    pub fn incr(path: impl Into<String>, value: Value) -> Self {
        PatchOperation::Incr {
            path: path.into(),
            value,
        }
    }

    /// `move` from `from` to `path`.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::PatchOperation;
    /// use serde_json::json;
    ///
    /// let op = PatchOperation::move_to("/draft", "/final");
    /// let wire = json!({"op": "move", "from": "/draft", "path": "/final"});
    /// assert_eq!(serde_json::to_value(&op).ok(), Some(wire));
    /// ```
    pub fn move_to(from: impl Into<String>, path: impl Into<String>) -> Self {
        PatchOperation::Move {
            from: from.into(),
            path: path.into(),
        }
    }

    /// The target path.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::PatchOperation;
    /// use serde_json::json;
    ///
    /// assert_eq!(PatchOperation::move_to("/draft", "/final").path(), "/final");
    /// assert_eq!(PatchOperation::remove("/ssn").path(), "/ssn");
    /// ```
    pub fn path(&self) -> &str {
        match self {
            PatchOperation::Add { path, .. }
            | PatchOperation::Set { path, .. }
            | PatchOperation::Replace { path, .. }
            | PatchOperation::Remove { path }
            | PatchOperation::Incr { path, .. }
            | PatchOperation::Move { path, .. } => path,
        }
    }
}

/// Where a path lands in the selection tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// Nothing encrypted at or under it.
    Plain,
    /// At a selected path (`exact`) or under one.
    Selected { sel: usize, exact: bool },
    /// An ancestor of selected paths: its value holds encrypted properties.
    Interior(usize),
}

impl Engine {
    /// Resolves the reference tokens of a concrete path (`/cards/0/number`): a token matches
    /// a named child, or, when it is an array index or `-`, the `[]` child.
    pub(crate) fn resolve(&self, path: &str, tokens: &[Cow<'_, str>]) -> Result<Target> {
        let mut cur = ROOT;
        for tok in tokens {
            let node = self.node(cur);
            if let Some(sel) = node.selected() {
                return Ok(Target::Selected { sel, exact: false });
            }
            let named = self.child(node, tok);
            let element = if is_array_token(tok) {
                node.elements()
            } else {
                None
            };
            cur = match (named, element) {
                (Some(_), Some(_)) => {
                    return Err(Error::UnsupportedOperation {
                        path: path.to_owned(),
                        reason: format!(
                            "ambiguous path: '{tok}' matches both a property and the elements \
                             of an array in the policy"
                        ),
                    });
                }
                (Some(n), None) | (None, Some(n)) => n,
                (None, None) => return Ok(Target::Plain),
            };
        }
        if cur == ROOT {
            return Err(Error::UnsupportedOperation {
                path: path.to_owned(),
                reason: "the path must name a property, not the whole document".into(),
            });
        }
        Ok(match self.node(cur).selected() {
            Some(sel) => Target::Selected { sel, exact: true },
            None => Target::Interior(cur),
        })
    }
}

/// A document that holds a value at a concrete path: the text before and after the value,
/// and the value's JSON Pointer in it (an array index token becomes index 0 there).
pub(crate) struct Wrapper {
    pub(crate) before: String,
    pub(crate) after: String,
    pub(crate) pointer: String,
}

impl Engine {
    /// The smallest document that puts a value at the path of `tokens` where the selection
    /// tree sees it: an object key for a named child, a one-element array for a token that
    /// reaches the `[]` child, object keys below a selected path (every leaf there is
    /// encrypted alike).
    pub(crate) fn wrapper(&self, tokens: &[Cow<'_, str>]) -> Wrapper {
        let mut w = Wrapper {
            before: String::new(),
            after: String::new(),
            pointer: String::new(),
        };
        let mut closers = Vec::with_capacity(tokens.len());
        let mut cur = Some(ROOT);
        for tok in tokens {
            let node = cur.map(|c| self.node(c)).filter(|n| n.selected().is_none());
            let named = node.and_then(|n| self.child(n, tok));
            let element = node
                .filter(|_| named.is_none() && is_array_token(tok))
                .and_then(|n| n.elements());
            if let Some(e) = element {
                w.before.push('[');
                closers.push(']');
                push_token(&mut w.pointer, "0");
                cur = Some(e);
            } else {
                w.before.push('{');
                w.before.push_str(&Value::from(&**tok).to_string());
                w.before.push(':');
                closers.push('}');
                push_token(&mut w.pointer, tok);
                cur = named;
            }
        }
        w.after = closers.iter().rev().collect();
        w
    }
}

/// The JSON text of one value, without the JSON whitespace around it; refuses anything
/// but exactly one JSON value. Errors name `path` and never quote the text.
pub(crate) fn one_json_value<'t>(json: &'t str, path: &str) -> Result<&'t str> {
    let text = json.trim_matches([' ', '\t', '\n', '\r']);
    let invalid = |what: &str, at: usize| {
        let (line, column) = scan::line_column(text, at);
        Error::InvalidDocument {
            path: path.to_owned(),
            reason: format!("not valid JSON: {what} at line {line} column {column}"),
        }
    };
    match scan::value(text.as_bytes(), 0, &mut Vec::new()) {
        Ok(end) if end == text.len() => Ok(text),
        Ok(end) => Err(invalid("trailing characters after the value", end)),
        Err(e) => Err(invalid(e.what, e.at)),
    }
}

/// `text` (one valid JSON value) with every number literal replaced by the literal of its
/// value typed as `ty` (`1.0` as a Long is written `1`; `42` as a Double, `42.0`), so that
/// the text walker types it as `ty`. A number that does not fit `ty` is refused, naming
/// its path under `path`.
pub(crate) fn retype_numbers(text: &str, ty: NumberType, path: &str) -> Result<Zeroizing<String>> {
    let b = text.as_bytes();
    let mut out = Zeroizing::new(String::with_capacity(text.len() + 8));
    let mut literal = Zeroizing::new(Vec::with_capacity(24));
    let mut copied = 0;
    let mut i = 0;
    let at = |i: usize| format!("{path}{}", scan::path_at(text, i));
    let internal = |i: usize| Error::InvalidDocument {
        path: at(i),
        reason: "invalid JSON".into(),
    };
    while let Some(&c) = b.get(i) {
        match c {
            b'"' => i = scan::string(b, i).map_err(|_| internal(i))?.0,
            b'-' | b'0'..=b'9' => {
                let end = scan::number(b, i).map_err(|_| internal(i))?;
                let lit = text.get(i..end).ok_or_else(|| internal(i))?;
                let pt = match ty {
                    NumberType::Long => long_from_literal(lit),
                    NumberType::Double => double_from_literal(lit),
                }
                .map_err(|e| e.at_path(&at(i)))?;
                literal.clear();
                write_plaintext_json(pt.marker(), pt.as_bytes(), &mut literal)
                    .map_err(|_| internal(i))?;
                out.push_str(text.get(copied..i).ok_or_else(|| internal(i))?);
                out.push_str(std::str::from_utf8(&literal).map_err(|_| internal(i))?);
                copied = end;
                i = end;
            }
            _ => i += 1,
        }
    }
    out.push_str(text.get(copied..).ok_or_else(|| internal(copied))?);
    Ok(out)
}

/// `e` with the path of the synthetic document (`synthetic`, see [`Wrapper`]) turned into
/// the caller's `real` path, and `real` where the error had no path.
pub(crate) fn rebase_error(mut e: Error, synthetic: &str, real: &str) -> Error {
    if synthetic != real
        && let Some(path) = e.document_path_mut()
        && let Some(rest) = path.strip_prefix(synthetic)
        && (rest.is_empty() || rest.starts_with('/'))
    {
        *path = format!("{real}{rest}");
    }
    e.at_path(real)
}
