//! The snapshot: one API's whole definition as the control plane publishes it and the edge
//! reads it from Workers KV (key [`Snapshot::kv_key`], value JSON).
//!
//! `format_version` changes only when an old reader could misread a new document. Fields are
//! added with defaults within a format version; readers ignore fields they do not know.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{ApiRef, EndpointDefinition, GraphqlOperation, WebSocketEndpoint, WorkspaceRef};

/// The snapshot format this build writes and the newest one it reads.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Snapshot {
    pub format_version: u32,
    /// Increases by one with every committed change to the API. The edge never replaces a
    /// stored snapshot with one of a lower version, so publishers may race safely.
    pub version: u64,
    pub workspace: WorkspaceRef,
    pub api: ApiRef,
    pub endpoints: Vec<SnapshotEndpoint>,
    /// GraphQL operations, answered at `/mock-graphql/{apiSlug}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub graphql: Vec<GraphqlOperation>,
    /// WebSocket mocks, at `/ws/{apiSlug}{path}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub websockets: Vec<WebSocketEndpoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SnapshotEndpoint {
    pub id: String,
    #[serde(flatten)]
    pub definition: EndpointDefinition,
}

impl Snapshot {
    /// The Workers KV key under which an API's snapshot is stored.
    pub fn kv_key(api_slug: &str) -> String {
        format!("api:{api_slug}")
    }

    /// Parses a snapshot and refuses a format newer than this build understands.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let snapshot: Self = serde_json::from_slice(bytes)
            .map_err(|e| Error::new("snapshot", format!("is not a valid snapshot: {e}")))?;
        if snapshot.format_version > SNAPSHOT_FORMAT_VERSION || snapshot.format_version == 0 {
            return Err(Error::new(
                "format_version",
                format!(
                    "{} is not supported by this build (it reads 1 to {SNAPSHOT_FORMAT_VERSION})",
                    snapshot.format_version
                ),
            ));
        }
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        Snapshot {
            format_version: SNAPSHOT_FORMAT_VERSION,
            version: 3,
            workspace: WorkspaceRef { id: "w1".into(), slug: "acme".into(), ..Default::default() },
            api: ApiRef {
                id: "a1".into(),
                slug: "pets".into(),
                name: "Pets".into(),
                ..Default::default()
            },
            endpoints: vec![SnapshotEndpoint {
                id: "e1".into(),
                definition: serde_json::from_value(serde_json::json!({
                    "method": "GET", "path": "/pets/:id", "response": {"body": "x"}
                }))
                .unwrap(),
            }],
            graphql: vec![],
            websockets: vec![],
        }
    }

    #[test]
    fn round_trips() {
        let s = sample();
        let bytes = serde_json::to_vec(&s).unwrap();
        assert_eq!(Snapshot::from_json(&bytes).unwrap(), s);
    }

    #[test]
    fn tolerates_unknown_fields_but_not_future_formats() {
        let mut v = serde_json::to_value(sample()).unwrap();
        v["added_later"] = serde_json::json!(true);
        v["endpoints"][0]["also_new"] = serde_json::json!(1);
        assert!(Snapshot::from_json(v.to_string().as_bytes()).is_ok());
        v["format_version"] = serde_json::json!(SNAPSHOT_FORMAT_VERSION + 1);
        let err = Snapshot::from_json(v.to_string().as_bytes()).unwrap_err();
        assert_eq!(err.field, "format_version");
    }

    #[test]
    fn kv_key() {
        assert_eq!(Snapshot::kv_key("pets"), "api:pets");
    }
}
