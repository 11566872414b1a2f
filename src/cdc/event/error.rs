//! [`DecodeError`]: why a message could not be decoded, with a machine-readable kind and a reason
//! that names the JSON path of the offending field (`payload.after.amount: ...`).
//!
//! Decoding runs inside serde visitors, whose errors are opaque strings. The visitors therefore
//! record the structured failure in a [`Trail`] shared by reference and return a throw-away serde
//! error; each struct or array level adds its field name or index to the trail while the error
//! unwinds, so the path costs nothing on the success path.

use std::cell::RefCell;
use std::fmt;

/// What kind of input made decoding fail. Stable names via [`DecodeErrorKind::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The bytes are not JSON (bad syntax, truncated, not UTF-8) or the value is empty.
    InvalidJson,
    /// Valid JSON, but not a Debezium change event (a heartbeat, transaction metadata, a scalar).
    NotAChangeEvent,
    /// The Connect `schema` part is malformed (unknown type, missing `fields`, bad parameters).
    InvalidSchema,
    /// A JSON value's type does not match its Connect schema (a string where int32 is declared).
    TypeMismatch,
    /// The JSON type is right but the content is not (bad base64, bad UUID, unparseable time).
    InvalidValue,
    /// A number does not fit the declared type (an int8 of 300, a date past year 262142).
    OutOfRange,
    /// A field the envelope needs is absent (`op`).
    MissingField,
    /// `op` holds a code other than c, r, u, d, t, m.
    UnknownOp,
}

impl DecodeErrorKind {
    /// The kind as a stable snake_case name, for JSON output and the DLQ.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::NotAChangeEvent => "not_a_change_event",
            Self::InvalidSchema => "invalid_schema",
            Self::TypeMismatch => "type_mismatch",
            Self::InvalidValue => "invalid_value",
            Self::OutOfRange => "out_of_range",
            Self::MissingField => "missing_field",
            Self::UnknownOp => "unknown_op",
        }
    }
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message that could not be decoded. Displays as `<path>: <reason>` (just the reason when the
/// problem is the message as a whole), e.g. `payload.after.amount: Decimal value is not base64`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct DecodeError {
    kind: DecodeErrorKind,
    path: String,
    reason: String,
}

impl DecodeError {
    /// An error of `kind` at the JSON `path` (dot-separated, `[i]` for array elements; empty for
    /// the whole message).
    pub fn new(kind: DecodeErrorKind, path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            kind,
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// The machine-readable kind.
    pub fn kind(&self) -> DecodeErrorKind {
        self.kind
    }

    /// The JSON path of the offending field inside the Kafka message: `payload.after.amount` for
    /// a schema-enabled value, `after.amount` without schemas, `key.payload.id` for the key.
    /// Empty when the message as a whole is the problem.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The human reason, without the path.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    fn render(&self) -> String {
        if self.path.is_empty() {
            self.reason.clone()
        } else {
            format!("{}: {}", self.path, self.reason)
        }
    }

    /// The same error under a longer path: `key` + `id` → `key.id`.
    pub(crate) fn under(mut self, root: &str) -> Self {
        self.path = join_path(root, &self.path);
        self
    }
}

fn join_path(root: &str, rest: &str) -> String {
    match (root.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_owned(),
        (false, true) => root.to_owned(),
        (false, false) if rest.starts_with('[') => format!("{root}{rest}"),
        (false, false) => format!("{root}.{rest}"),
    }
}

/// One step of a JSON path.
#[derive(Debug)]
enum Segment {
    Field(String),
    Index(usize),
}

#[derive(Debug)]
struct Pending {
    kind: DecodeErrorKind,
    reason: String,
    /// Innermost segment first: pushed while the error unwinds.
    rev_path: Vec<Segment>,
}

/// Side channel for structured errors raised inside serde visitors (see the module doc).
/// One per decode attempt.
#[derive(Debug, Default)]
pub(crate) struct Trail {
    pending: RefCell<Option<Pending>>,
}

impl Trail {
    /// Records a failure (the first one wins) and returns the serde error that unwinds to the
    /// caller; its text is never shown.
    pub(crate) fn fail<E: serde::de::Error>(
        &self,
        kind: DecodeErrorKind,
        reason: impl Into<String>,
    ) -> E {
        let mut pending = self.pending.borrow_mut();
        if pending.is_none() {
            *pending = Some(Pending {
                kind,
                reason: reason.into(),
                rev_path: Vec::new(),
            });
        }
        E::custom("decode error (details in the trail)")
    }

    /// Passes `result` through; on error, adds the field `name` to the path.
    #[inline(always)]
    pub(crate) fn field<T, E: fmt::Display>(
        &self,
        name: &str,
        result: Result<T, E>,
    ) -> Result<T, E> {
        result.inspect_err(|e| self.push(Segment::Field(name.to_owned()), e))
    }

    /// Passes `result` through; on error, adds the array index to the path.
    #[inline(always)]
    pub(crate) fn index<T, E: fmt::Display>(
        &self,
        index: usize,
        result: Result<T, E>,
    ) -> Result<T, E> {
        result.inspect_err(|e| self.push(Segment::Index(index), e))
    }

    #[cold]
    fn push(&self, segment: Segment, err: &dyn fmt::Display) {
        let mut pending = self.pending.borrow_mut();
        match pending.as_mut() {
            Some(p) => p.rev_path.push(segment),
            // A serde_json error (syntax, depth limit) rather than one of ours.
            None => {
                *pending = Some(Pending {
                    kind: DecodeErrorKind::InvalidJson,
                    reason: err.to_string(),
                    rev_path: vec![segment],
                })
            }
        }
    }

    /// The structured error for a failed decode, rooted at `root` (`payload`, `key.payload`, ...).
    pub(crate) fn into_error(self, root: &str, err: &serde_json::Error) -> DecodeError {
        match self.pending.into_inner() {
            Some(p) => {
                let mut path = String::new();
                for segment in p.rev_path.iter().rev() {
                    match segment {
                        Segment::Field(name) => {
                            if !path.is_empty() {
                                path.push('.');
                            }
                            path.push_str(name);
                        }
                        Segment::Index(i) => {
                            path.push('[');
                            path.push_str(&i.to_string());
                            path.push(']');
                        }
                    }
                }
                DecodeError::new(p.kind, join_path(root, &path), p.reason)
            }
            None => DecodeError::new(DecodeErrorKind::InvalidJson, root, err.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::Error as _;

    #[test]
    fn display_joins_path_and_reason() {
        let e = DecodeError::new(
            DecodeErrorKind::InvalidValue,
            "payload.after.amount",
            "Decimal value is not base64",
        );
        assert_eq!(
            e.to_string(),
            "payload.after.amount: Decimal value is not base64"
        );
        let whole = DecodeError::new(DecodeErrorKind::InvalidJson, "", "value is empty");
        assert_eq!(whole.to_string(), "value is empty");
        assert_eq!(whole.kind().as_str(), "invalid_json");
    }

    #[test]
    fn trail_builds_the_path_while_unwinding() {
        let trail = Trail::default();
        let inner: Result<(), serde_json::Error> = Err(trail.fail(
            DecodeErrorKind::TypeMismatch,
            "expected int32, found string",
        ));
        let r = trail.index(2, inner);
        let r = trail.field("tags", r);
        let r = trail.field("after", r);
        let err = r.unwrap_err();
        let e = trail.into_error("payload", &err);
        assert_eq!(e.path(), "payload.after.tags[2]");
        assert_eq!(e.kind(), DecodeErrorKind::TypeMismatch);
        assert_eq!(e.reason(), "expected int32, found string");
    }

    #[test]
    fn foreign_serde_errors_become_invalid_json_with_their_path() {
        let trail = Trail::default();
        let r: Result<(), serde_json::Error> = Err(serde_json::Error::custom("EOF while parsing"));
        let err = trail.field("after", r).unwrap_err();
        let e = trail.into_error("", &err);
        assert_eq!(e.kind(), DecodeErrorKind::InvalidJson);
        assert_eq!(e.path(), "after");
        assert!(e.reason().contains("EOF"), "{e}");
    }

    #[test]
    fn under_prefixes_paths() {
        let e = DecodeError::new(DecodeErrorKind::InvalidValue, "payload.id", "x").under("key");
        assert_eq!(e.path(), "key.payload.id");
        let e = DecodeError::new(DecodeErrorKind::InvalidValue, "", "x").under("key");
        assert_eq!(e.path(), "key");
    }
}
