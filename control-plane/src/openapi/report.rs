//! The import report: what was imported, and everything that was not imported as written.

use serde::Serialize;

/// What kind of thing a [`Note`] reports.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum NoteKind {
    /// An example breaks its own schema; generated data answers in its place.
    InvalidExample,
    /// No data conforming to a schema was found; the closest attempt answers.
    GenerationFailed,
    /// A construct the mock does not implement (callbacks, links, security, XML bodies, …).
    Unsupported,
    /// A request body accepted without validation.
    NotValidated,
    /// A path rewritten to fit the engine's patterns.
    PathChanged,
    /// A part of the document that could not be kept.
    Skipped,
}

/// One thing the import did not take as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Note {
    pub kind: NoteKind,
    /// A JSON Pointer into the document; `""` for the whole document.
    pub location: String,
    /// The operation concerned, as `GET /pets/{id}` (the document's path), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    pub message: String,
    /// Schema validation errors (`/instance/path: message`) for examples and generated data.
    /// Left out when there are none (`default` tells the document it is optional).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

impl Note {
    pub(crate) fn new(
        kind: NoteKind,
        location: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            location: location.into(),
            operation: None,
            message: message.into(),
            errors: Vec::new(),
        }
    }

    pub(crate) fn with_errors(mut self, errors: Vec<String>) -> Self {
        self.errors = errors;
        self
    }
}

/// How an import went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ImportReport {
    /// Operations found in the document.
    pub operations: usize,
    /// Endpoints produced: always one per operation.
    pub endpoints: usize,
    pub notes: Vec<Note>,
}

impl ImportReport {
    /// How many notes are of `kind`.
    pub fn count(&self, kind: NoteKind) -> usize {
        self.notes.iter().filter(|n| n.kind == kind).count()
    }
}
