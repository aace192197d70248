//! Patch operations and query parameters: values headed for one path of a document,
//! encrypted exactly as that path's stored leaves are.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Engine, ROOT};
use crate::error::{Error, Result};
use crate::path::is_array_token;

/// How a number query parameter is typed, since an equality match needs the exact stored
/// type: a Long 1 and a Double 1.0 have different ciphertexts.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NumberType {
    /// A 64-bit integer (the type of an integer literal such as `42`).
    Long,
    /// A double (the type of a literal with a fraction or exponent, such as `42.0`).
    Double,
}

/// A Cosmos DB partial-document update (patch) operation, serialized as Cosmos sends it,
/// e.g. `{"op": "set", "path": "/ssn", "value": "123-45-6789"}`.
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
    pub fn add(path: impl Into<String>, value: Value) -> Self {
        PatchOperation::Add {
            path: path.into(),
            value,
        }
    }

    /// `set` of `value` at `path`.
    pub fn set(path: impl Into<String>, value: Value) -> Self {
        PatchOperation::Set {
            path: path.into(),
            value,
        }
    }

    /// `replace` of `path` by `value`.
    pub fn replace(path: impl Into<String>, value: Value) -> Self {
        PatchOperation::Replace {
            path: path.into(),
            value,
        }
    }

    /// `remove` of `path`.
    pub fn remove(path: impl Into<String>) -> Self {
        PatchOperation::Remove { path: path.into() }
    }

    /// `incr` of `path` by `value`.
    pub fn incr(path: impl Into<String>, value: Value) -> Self {
        PatchOperation::Incr {
            path: path.into(),
            value,
        }
    }

    /// `move` from `from` to `path`.
    pub fn move_to(from: impl Into<String>, path: impl Into<String>) -> Self {
        PatchOperation::Move {
            from: from.into(),
            path: path.into(),
        }
    }

    /// The target path.
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
