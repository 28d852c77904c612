//! One error type for the engine. Every variant names the definition field at fault, so the
//! control plane can answer 422 with that field and the edge can refuse a bad snapshot.

/// An error found in a definition. `field` is a dotted path into the submitted document
/// (for example `response.status` or `endpoints[2].path`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Error {
    pub field: String,
    pub message: String,
}

impl Error {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }

    /// The same error, seen from a containing document: `path` ⟶ `prefix.path`.
    pub fn within(self, prefix: &str) -> Self {
        Self { field: format!("{prefix}.{}", self.field), message: self.message }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
