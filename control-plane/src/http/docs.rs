//! The admin API's OpenAPI document (`GET /api/v1/openapi.json`) and its docs page
//! (`GET /api/docs`, Swagger UI from embedded files: it works offline).
//!
//! The document is generated from the code by aide: every admin route is registered with
//! `api_route`, so a route cannot exist undocumented; request and response bodies get their
//! schemas from the same `schemars` derives as the definition format; this module teaches
//! aide edgemock's own extractors ([`Input`], [`PageQuery`], [`Caller`], [`Document`]) and
//! outputs ([`ApiError`], [`Created`]). The document is built once, at start-up, and served
//! as bytes.

use aide::generate::GenContext;
use aide::openapi::{
    self, Info, MediaType, OpenApi, Operation, Parameter, ParameterData, ParameterSchemaOrContent,
    ReferenceOr, RequestBody, Response as DocResponse, SchemaObject, SecurityScheme, StatusCode,
    Tag,
};
use aide::operation::{OperationInput, OperationOutput, set_body};
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use indexmap::IndexMap;
use schemars::{JsonSchema, json_schema};
use serde::Serialize;

use super::{Input, MAX_PAGE_SIZE, PageQuery};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};

/// Where the document and the page are served.
pub const DOCUMENT_PATH: &str = "/api/v1/openapi.json";
pub const PAGE_PATH: &str = "/api/docs";

/// The security scheme every admin route requires.
const BEARER: &str = "bearer";

/// Sets up aide's generator (per thread): call before building the documented routes, since
/// their schemas are generated as they are added.
pub fn configure() {
    aide::generate::on_error(|e| {
        // Expected: several extractors and the error type declare the same error statuses.
        if !matches!(e, aide::Error::InferredResponseConflict(_)) {
            tracing::warn!(error = %e, "OpenAPI generation");
        }
    });
    aide::generate::extract_schemas(true);
    aide::generate::infer_responses(true);
}

/// Builds the document from the documented routes and returns them as a plain router, with
/// the document's own route added.
pub fn finish<S: Clone + Send + Sync + 'static>(api: aide::axum::ApiRouter<S>) -> Router<S> {
    let mut doc = OpenApi {
        info: Info {
            title: "edgemock admin API".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description: Some(DESCRIPTION.to_owned()),
            ..Info::default()
        },
        ..OpenApi::default()
    };
    let router = api.finish_api_with(&mut doc, |t| {
        t.security_scheme(
            BEARER,
            SecurityScheme::Http {
                scheme: "bearer".to_owned(),
                bearer_format: Some("JWT or API key".to_owned()),
                description: Some(
                    "A JWT signed HS256 with JWT_SECRET (claims sub, role, workspaces, exp), \
                     or a workspace API key (emk_…)."
                        .to_owned(),
                ),
                extensions: IndexMap::default(),
            },
        )
    });
    doc.tags = TAGS
        .iter()
        .map(|(name, description)| Tag {
            name: (*name).to_owned(),
            description: Some((*description).to_owned()),
            ..Tag::default()
        })
        .collect();
    // Serialised once; `unwrap_or_default` can only meet a map with non-string keys, which
    // the document has none of.
    let bytes = Bytes::from(serde_json::to_vec(&doc).unwrap_or_default());
    router.route(
        DOCUMENT_PATH,
        get(move || {
            let bytes = bytes.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], bytes) }
        }),
    )
}

/// Swagger UI at [`PAGE_PATH`], reading [`DOCUMENT_PATH`]; its files are compiled in.
pub fn page() -> Router {
    swagger_ui_dist::generate_routes(swagger_ui_dist::ApiDefinition {
        uri_prefix: PAGE_PATH,
        api_definition: swagger_ui_dist::OpenApiSource::Uri(DOCUMENT_PATH),
        title: Some("edgemock admin API"),
    })
    // The page links its files relative to the request URI, query string included: drop
    // the query, so `/api/docs?x` still finds them (and no query text lands in the page).
    .layer(axum::middleware::map_request(|mut req: Request| async move {
        if req.uri().query().is_some() {
            let path = req.uri().path().to_owned();
            if let Ok(uri) = path.parse() {
                *req.uri_mut() = uri;
            }
        }
        req
    }))
}

const DESCRIPTION: &str = "Manage edgemock's workspaces, APIs and mocks. Every route needs \
`Authorization: Bearer <JWT or API key>`. Errors are `{\"error\": {\"code\", \"message\", \
\"field\"?}}` with a 4xx status; `field` names the offending input, by its path.";

const TAGS: &[(&str, &str)] = &[
    ("workspaces", "Tenants: every other resource belongs to one."),
    ("members", "Who (a JWT `sub`) has which role in a workspace."),
    ("api-keys", "Per-workspace keys for CI pipelines; shown once, stored hashed."),
    ("apis", "Mock APIs, their settings, publishing to the edge, OpenAPI import and export."),
    ("endpoints", "An API's REST mocks."),
    ("graphql", "An API's GraphQL operations."),
    ("websockets", "An API's WebSocket mocks."),
    ("webhooks", "Subscriptions to a workspace's events."),
    ("analytics", "Traffic of an API at the edge and in the native runtime; retention."),
];

/// An operation's id (what generated clients call the method) and summary, for the
/// `get_with(handler, doc("listWorkspaces", "List workspaces"))` route builders.
pub fn doc(
    id: impl Into<String>,
    summary: impl Into<String>,
) -> impl FnOnce(aide::transform::TransformOperation<'_>) -> aide::transform::TransformOperation<'_>
{
    let (id, summary) = (id.into(), summary.into());
    move |t| t.id(&id).summary(&summary)
}

// --- inputs ---

/// What reading a body can answer: unreadable (400), too large (413), invalid (422).
const BODY_ERRORS: &[u16] = &[400, 413, 422];

/// A required request body with a schema per media type.
fn request_body(
    description: Option<&str>,
    content: impl IntoIterator<Item = (&'static str, schemars::Schema)>,
) -> RequestBody {
    let media = |schema| MediaType {
        schema: Some(SchemaObject { json_schema: schema, example: None, external_docs: None }),
        ..MediaType::default()
    };
    RequestBody {
        description: description.map(str::to_owned),
        content: content
            .into_iter()
            .map(|(kind, schema)| (kind.to_owned(), media(schema)))
            .collect(),
        required: true,
        ..RequestBody::default()
    }
}

impl<T: JsonSchema> OperationInput for Input<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        let schema = ctx.schema.subschema_for::<T>();
        set_body(ctx, operation, request_body(None, [("application/json", schema)]));
    }

    fn inferred_early_responses(
        ctx: &mut GenContext,
        operation: &mut Operation,
    ) -> Vec<(Option<StatusCode>, DocResponse)> {
        error_responses(ctx, operation, BODY_ERRORS)
    }
}

impl OperationInput for PageQuery {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        let limit = json_schema!({
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_PAGE_SIZE,
            "description": "Items per page (default 50).",
        });
        let after = json_schema!({
            "type": "string",
            "maxLength": 200,
            "pattern": r"^[^\x00-\x1f\x7f-\x9f]*$",
            "description": "The `next_cursor` of the previous page.",
        });
        for (name, schema) in [("limit", limit), ("after", after)] {
            add_parameter(
                ctx,
                operation,
                Parameter::Query {
                    parameter_data: parameter(name, schema),
                    allow_reserved: false,
                    style: openapi::QueryStyle::Form,
                    allow_empty_value: None,
                },
            );
        }
    }

    fn inferred_early_responses(
        ctx: &mut GenContext,
        operation: &mut Operation,
    ) -> Vec<(Option<StatusCode>, DocResponse)> {
        error_responses(ctx, operation, &[400, 422])
    }
}

fn parameter(name: &str, schema: schemars::Schema) -> ParameterData {
    ParameterData {
        name: name.to_owned(),
        description: schema.get("description").and_then(|d| d.as_str()).map(str::to_owned),
        required: false,
        format: ParameterSchemaOrContent::Schema(SchemaObject {
            json_schema: schema,
            example: None,
            external_docs: None,
        }),
        extensions: IndexMap::default(),
        deprecated: None,
        example: None,
        examples: IndexMap::default(),
        explode: None,
    }
}

fn add_parameter(_ctx: &mut GenContext, operation: &mut Operation, parameter: Parameter) {
    operation.parameters.push(ReferenceOr::Item(parameter));
}

impl OperationInput for Caller {
    fn operation_input(_ctx: &mut GenContext, operation: &mut Operation) {
        let requirement = IndexMap::from_iter([(BEARER.to_owned(), Vec::new())]);
        if !operation.security.contains(&requirement) {
            operation.security.push(requirement);
        }
    }

    fn inferred_early_responses(
        ctx: &mut GenContext,
        operation: &mut Operation,
    ) -> Vec<(Option<StatusCode>, DocResponse)> {
        // 404 too: a resource in a workspace the caller has no role in does not exist.
        error_responses(ctx, operation, &[401, 403, 404, 429])
    }
}

/// A raw document body (OpenAPI import): JSON or YAML, read as bytes; a body over the
/// route's limit is edgemock's JSON 413, not axum's plain text.
#[derive(Debug)]
pub struct Document(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Document {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(req, state).await.map(Document).map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge { limit: super::imports::MAX_DOCUMENT_BYTES }
            } else {
                ApiError::BadRequest { code: "unreadable_body", message: e.body_text() }
            }
        })
    }
}

impl OperationInput for Document {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        let content = [
            ("application/json", openapi_document_schema()),
            ("application/yaml", json_schema!({ "type": "string" })),
        ];
        set_body(ctx, operation, request_body(Some("An OpenAPI 3.0 or 3.1 document."), content));
    }

    fn inferred_early_responses(
        ctx: &mut GenContext,
        operation: &mut Operation,
    ) -> Vec<(Option<StatusCode>, DocResponse)> {
        error_responses(ctx, operation, BODY_ERRORS)
    }
}

/// The least an importable document has (`openapi::document` checks the rest and says what
/// it found in the import report).
fn openapi_document_schema() -> schemars::Schema {
    json_schema!({
        "type": "object",
        "required": ["openapi"],
        "properties": {
            "openapi": { "type": "string", "pattern": "^3\\.[01](\\.|$)" },
            "info": { "type": "object" },
            "paths": { "type": "object" },
            "components": { "type": "object" },
            "servers": { "type": "array" },
        },
    })
}

// --- outputs ---

/// A 201 with the created resource as JSON.
#[derive(Debug)]
pub struct Created<T>(pub T);

impl<T: Serialize> IntoResponse for Created<T> {
    fn into_response(self) -> Response {
        (axum::http::StatusCode::CREATED, Json(self.0)).into_response()
    }
}

impl<T: JsonSchema> OperationOutput for Created<T> {
    type Inner = T;

    fn operation_response(ctx: &mut GenContext, operation: &mut Operation) -> Option<DocResponse> {
        Json::<T>::operation_response(ctx, operation)
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        operation: &mut Operation,
    ) -> Vec<(Option<StatusCode>, DocResponse)> {
        Self::operation_response(ctx, operation)
            .map(|r| vec![(Some(StatusCode::Code(201)), r)])
            .unwrap_or_default()
    }
}

impl OperationOutput for ApiError {
    type Inner = ErrorBody;

    fn operation_response(ctx: &mut GenContext, operation: &mut Operation) -> Option<DocResponse> {
        Json::<ErrorBody>::operation_response(ctx, operation)
    }

    /// The errors every route can answer; extractors add theirs (see above).
    fn inferred_responses(
        ctx: &mut GenContext,
        operation: &mut Operation,
    ) -> Vec<(Option<StatusCode>, DocResponse)> {
        error_responses(ctx, operation, &[400, 404, 409, 422, 503])
    }
}

fn error_responses(
    ctx: &mut GenContext,
    operation: &mut Operation,
    statuses: &[u16],
) -> Vec<(Option<StatusCode>, DocResponse)> {
    let Some(response) = Json::<ErrorBody>::operation_response(ctx, operation) else {
        return Vec::new();
    };
    statuses
        .iter()
        .map(|&status| {
            let mut response = response.clone();
            response.description = ERROR_DESCRIPTIONS
                .iter()
                .find(|(s, _)| *s == status)
                .map_or("An error.", |(_, d)| d)
                .to_owned();
            (Some(StatusCode::Code(status)), response)
        })
        .collect()
}

const ERROR_DESCRIPTIONS: &[(u16, &str)] = &[
    (400, "The request could not be read (malformed JSON, a bad query string)."),
    (401, "No credential, or a wrong, expired or revoked one."),
    (403, "The caller's role in the workspace is too small."),
    (404, "Not found, or in a workspace the caller has no role in."),
    (409, "A conflict: a slug or subject already taken, or a concurrent change."),
    (413, "The body is too large."),
    (422, "A field is invalid; `field` names it."),
    (429, "Over GLOBAL_RATE_LIMIT_RPM for this client: see Retry-After and X-RateLimit-*."),
    (502, "The edge refused or failed."),
    (503, "The request did not finish within REQUEST_TIMEOUT_MS (nothing was stored)."),
];
