//! OpenAPI import and export: an OpenAPI 3.0 or 3.1 document (JSON or YAML) becomes one
//! endpoint definition per operation, and an API's endpoints become an OpenAPI 3.1 document.
//!
//! This module is pure: no IO, no HTTP, no database, no clock. The same document, options and
//! seed always give the same endpoints, byte for byte.
//!
//! # Entry points
//!
//! - [`import`]`(document, &options) -> Result<`[`Imported`]`, `[`ImportError`]`>`
//! - [`export`]`(api_name, api_slug, &endpoints) -> serde_json::Value` (OpenAPI 3.1)
//! - [`Document`] for callers that need to look inside a document (its operations, the JSON
//!   Schema of any schema object in it), and [`generate`] for conforming sample data.
//!
//! # What an import produces
//!
//! - **One endpoint per operation**, in the document's path order (sorted) and method order
//!   (`get put post delete options head patch trace`); [`Imported::operations`] lists the
//!   operations in the same order (`operationId`, summary, location).
//! - **Paths** keep the document's `{param}` form. Parameter names are reduced to
//!   `[A-Za-z0-9_]` (`{pet-id}` → `{pet_id}`); a segment that mixes text and parameters
//!   (`{base}...{head}`, `{id}.json`) becomes one parameter matching the whole segment; a
//!   last-segment parameter marked `x-multi-segment: true` (GitHub) becomes `{*name}` unless that
//!   would clash with a sibling route. Every change is a `path_changed` note.
//! - **Base paths**: the first server's path (`https://api.example.com/v1` → `/v1`, server
//!   variables at their defaults) is **stripped** by default, so a client moves to the mock by
//!   replacing its whole base URL with `…/mock/{apiSlug}` — Prism's convention.
//!   [`ImportOptions::keep_server_base_path`] keeps it as a prefix of every path instead.
//!   Either way [`Imported::base_path`] says what the path was.
//! - **Responses**: the primary response (what a plain request gets) is the lowest `2xx`,
//!   else `2XX`, else `default` (as 200), else the lowest documented status. Its body is the
//!   media type's first example (`examples` in document order, else `example`), else data
//!   generated from the schema (schema-level `example`/`examples` are preferred where they
//!   conform), deterministic for [`ImportOptions::seed`]. JSON is preferred among media types;
//!   text media types serve string examples or generated strings; others (XML without a
//!   string example, binary) answer an empty body and are noted.
//! - **Every other documented response and named example is kept** in `responses`, reachable
//!   with the `Prefer` request header (Prism's convention):
//!   - `Prefer: code=404` — the 404 response (its first example);
//!   - `Prefer: example=not_found` — the example of that name (in the primary status first);
//!   - `Prefer: code=404, example=not_found` — both;
//!   - range codes and `default` answer `code=4XX` / `code=default` and the status they were
//!     given: the range's lowest free status (`4XX` → 400), `default` the first free 5xx.
//!
//!   Response names are `"{code}"` or `"{code}:{example}"` (`"404:not_found"`).
//! - **Request bodies**: a required JSON body gets `validation` with the request schema as a
//!   self-contained JSON Schema (`$ref`s rewritten into `$defs`; 3.0's `nullable`, boolean
//!   `exclusiveMinimum`/`Maximum` and `example` converted; `readOnly` properties not required
//!   in requests, `writeOnly` ones absent from responses) answered with
//!   [`ImportOptions::validation_status`] when broken. Optional bodies and non-JSON bodies
//!   (multipart, forms, binary) are accepted unvalidated (`not_validated` notes): the engine
//!   refuses a bodiless request to any endpoint with `validation`.
//!
//! # The report
//!
//! [`ImportReport`] serializes as
//! `{"operations": 3, "endpoints": 3, "notes": [{"kind", "location", "operation"?, "message",
//! "errors"?}]}`. `location` is a JSON Pointer into the document (`/paths/~1pets/get/responses/200/content/application~1json/examples/bad`),
//! `""` for the whole document. Kinds ([`NoteKind`]):
//! - `invalid_example` — an example breaks its own schema; `errors` lists how; generated data
//!   answers in its place (under the same example name);
//! - `generation_failed` — no data conforming to the schema was found; the closest attempt
//!   answers and `errors` says what is wrong with it;
//! - `unsupported` — something in the document the mock does not implement: callbacks, links,
//!   webhooks, security (never enforced; cookie API keys named), query/header/cookie
//!   parameters (never checked; one note with counts), a response's other media types (one is
//!   served, no `Accept` negotiation), external `$ref`s, patterns the linear-time regex engine
//!   cannot run, XML or binary bodies, …;
//! - `not_validated` — a request body accepted without validation (optional, or not JSON);
//! - `path_changed` — a path rewritten to fit the engine's patterns;
//! - `skipped` — a part that could not be kept (a `1XX` response, an oversized example, the
//!   body documented for a 204, 205 or 304, an Example Object without a value), or an
//!   operation that never answers because an earlier one has the same method and path shape.
//!
//! # Errors
//!
//! [`ImportError::Unparseable`] (neither JSON nor YAML, not UTF-8) is a 400;
//! [`ImportError::Invalid`] (Swagger 2.0, not OpenAPI, an unsupported version, a malformed
//! structure) is a 422 whose `field` is a JSON Pointer into the document (`/openapi`,
//! `/paths/~1pets/get/responses`) — except `validation_status`, which names the option.
//!
//! Real documents are large: GitHub's is 13 MB (1,223 operations, imported in about 3 s by a
//! debug build), beyond the admin API's 4 MiB body limit, so an import route needs its own.
//!
//! Module map:
//! - `document` — parsing (JSON/YAML), the version check, pointers, `$ref`s, operations.
//! - `schema` — OpenAPI Schema Objects to self-contained JSON Schema 2020-12.
//! - `generate` — conforming sample data from JSON Schema, verified with `jsonschema`.
//! - `import` — operations to endpoint definitions: paths, responses, `Prefer` rules.
//! - `export` — endpoint definitions to an OpenAPI 3.1 document.
//! - `report` — the import report.

mod document;
mod export;
mod generate;
mod import;
mod report;
mod schema;

use serde::Serialize;

pub use document::{
    Document, Operation, Parameter, ParameterPlace, RequestBody, Response, SpecVersion,
};
pub use export::export;
pub use generate::{GenerateError, generate};
pub use report::{ImportReport, Note, NoteKind};
pub use schema::Direction;

use edgemock_shared::EndpointDefinition;

/// How to import a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOptions {
    /// Seeds every generated value: the same document and seed give the same endpoints.
    pub seed: u64,
    /// Keep the first server's base path (`/v1`) as a prefix of every endpoint path instead
    /// of stripping it.
    pub keep_server_base_path: bool,
    /// The status a request body that breaks its schema is answered with (400 to 599).
    pub validation_status: u16,
    /// Answer with the document's examples where they conform (the default); `false`
    /// generates every body from its schema.
    pub use_examples: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self { seed: 0, keep_server_base_path: false, validation_status: 400, use_examples: true }
    }
}

/// The result of an import: suggestions for the API, its endpoints and what happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Imported {
    /// `info.title`, or "Imported API".
    pub title: String,
    /// A slug derived from the title, valid for an API (may be taken already).
    pub slug: String,
    /// `info.description`.
    pub description: Option<String>,
    /// `info.version`.
    pub version: Option<String>,
    /// The document's `openapi` field.
    pub openapi: String,
    /// The first server's path (`/v1`), stripped from or kept in the endpoint paths according
    /// to [`ImportOptions::keep_server_base_path`]; `None` when there is none.
    pub base_path: Option<String>,
    /// One per operation, in the order of [`Imported::operations`]. Each compiles with the
    /// engine, and so do all of them together in one snapshot.
    pub endpoints: Vec<EndpointDefinition>,
    /// The operations the endpoints come from, index for index.
    pub operations: Vec<Operation>,
    pub report: ImportReport,
}

/// Why a document could not be imported at all. Everything short of this is imported and
/// described in the [`ImportReport`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// Not JSON or YAML (or not UTF-8): an HTTP 400.
    #[error("the document cannot be read: {message}")]
    Unparseable {
        message: String,
        /// 1-based position of the syntax error, when the parser knows it.
        line: Option<usize>,
        column: Option<usize>,
    },
    /// Read, but not a document this importer accepts: an HTTP 422 naming `field`, a JSON
    /// Pointer into the document (`""` for the whole document).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

impl ImportError {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), message: message.into() }
    }

    /// The JSON Pointer of the offending field, for a 422; `None` for unreadable input.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Unparseable { .. } => None,
            Self::Invalid { field, .. } => Some(field),
        }
    }
}

/// Imports an OpenAPI 3.0.x or 3.1.x document, JSON or YAML (detected).
///
/// Fails only when the document cannot be read or is not OpenAPI 3.0/3.1; everything else
/// (broken examples, unsupported constructs, paths the engine cannot express as written) is
/// imported as well as it can be and listed in [`Imported::report`].
pub fn import(document: &[u8], options: &ImportOptions) -> Result<Imported, ImportError> {
    Document::parse(document)?.import(options)
}

#[cfg(test)]
mod tests;
