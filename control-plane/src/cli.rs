//! Mocks as code: `edgemock apply`, `edgemock import` and `edgemock export` talk to a running
//! control plane over its admin API (`--url` / `EDGEMOCK_URL`, `--token` / `EDGEMOCK_TOKEN`).
//!
//! A mock file (JSON or YAML) describes one API:
//!
//! ```yaml
//! api: pets                 # the API's slug (required)
//! name: Pets                # optional
//! workspace: acme           # optional: else --workspace, else `default`
//! base_headers: {x-env: dev}
//! cors: {allow_origins: ["*"]}
//! endpoints:                # edgemock endpoint definitions, as the admin API takes them
//!   - {method: GET, path: /pets/:id, response: {body: {id: 1}}}
//! graphql: []               # GraphQL operations
//! websockets: []            # WebSocket mocks
//! ```
//!
//! `apply` makes the API match the file and prints what it changed: `+` created, `~`
//! updated, `-` deleted (only with `--prune`; otherwise extra items are listed with `!` and
//! kept), nothing for what is already equal, so a second run changes nothing. Endpoints are
//! matched by method, path, priority and `when`; GraphQL operations by type and name;
//! WebSocket mocks by path. `--dry-run` prints the plan without writing.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use std::collections::BTreeMap;

use edgemock_shared::EndpointDefinition;
use edgemock_shared::model::{Cors, Delay, GraphqlOperation, WebSocketEndpoint};

/// Where the control plane is, and the credential to use.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub token: String,
}

/// One API as a mock file describes it. (No `#[serde(flatten)]` for the settings: serde
/// cannot refuse unknown keys through a flattened struct, and a typo must not pass.)
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MockFile {
    pub api: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub base_headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_delay: Option<Delay>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
    #[serde(default)]
    pub endpoints: Vec<EndpointDefinition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub graphql: Vec<GraphqlOperation>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub websockets: Vec<WebSocketEndpoint>,
}

/// What `apply` did (or would do) to one API.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
    pub unchanged: usize,
    pub extra: usize,
}

struct Client {
    http: reqwest::Client,
    target: Target,
}

impl Client {
    fn new(target: &Target) -> anyhow::Result<Self> {
        if target.token.is_empty() {
            bail!("no credential: pass --token or set EDGEMOCK_TOKEN (a JWT or an API key)");
        }
        Ok(Self { http: reqwest::Client::new(), target: target.clone() })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let url = format!("{}/api/v1{path}", self.target.url.trim_end_matches('/'));
        // Over the control plane's per-client limit: wait as told and try again (a large
        // `apply` is hundreds of calls).
        let mut waits = 0;
        let response = loop {
            let mut request =
                self.http.request(method.clone(), &url).bearer_auth(&self.target.token);
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send().await.with_context(|| format!("{method} {url}"))?;
            if response.status() != reqwest::StatusCode::TOO_MANY_REQUESTS || waits == 5 {
                break response;
            }
            let seconds = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(5)
                .clamp(1, 60);
            eprintln!("rate limited: waiting {seconds} s");
            tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
            waits += 1;
        };
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    /// The call, which must answer `ok`; otherwise the control plane's error, explained.
    async fn expect(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        ok: u16,
    ) -> anyhow::Result<Value> {
        let (status, reply) = self.call(method.clone(), path, body).await?;
        if status != ok {
            let error = &reply["error"];
            let field =
                error["field"].as_str().map(|f| format!(" (field {f})")).unwrap_or_default();
            bail!(
                "{method} {path} answered {status}: {}{field}",
                error["message"].as_str().map_or_else(|| reply.to_string(), str::to_owned)
            );
        }
        Ok(reply)
    }

    /// Every item of a paginated list.
    async fn all(&self, path: &str) -> anyhow::Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = match &after {
                Some(cursor) => format!("{path}?limit=500&after={cursor}"),
                None => format!("{path}?limit=500"),
            };
            let reply = self.expect(reqwest::Method::GET, &page, None, 200).await?;
            items.extend(reply["items"].as_array().cloned().unwrap_or_default());
            match reply["next_cursor"].as_str() {
                Some(next) => after = Some(next.to_owned()),
                None => return Ok(items),
            }
        }
    }
}

/// Reads mock files: `path` itself, or every `.json`, `.yaml` and `.yml` file in it, sorted.
pub fn read_mock_files(path: &Path) -> anyhow::Result<Vec<(PathBuf, MockFile)>> {
    let mut files = Vec::new();
    if path.is_dir() {
        for entry in
            std::fs::read_dir(path).with_context(|| format!("cannot read {}", path.display()))?
        {
            let file = entry?.path();
            let ext = file.extension().and_then(|e| e.to_str()).unwrap_or_default();
            if matches!(ext, "json" | "yaml" | "yml") {
                files.push(file);
            }
        }
        files.sort();
    } else {
        files.push(path.to_owned());
    }
    files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let parsed: MockFile = parse_document(&file, &text)?;
            Ok((file, parsed))
        })
        .collect()
}

/// Parses a mock file strictly: a key the format does not know is an error (a typo must
/// not silently drop endpoints), as in the admin API.
fn parse_document<T: DeserializeOwned>(file: &Path, text: &str) -> anyhow::Result<T> {
    let invalid = || format!("{} is not a valid mock file", file.display());
    let yaml = matches!(file.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"));
    let value: Value = if yaml {
        serde_yaml_ng::from_str(text).with_context(invalid)?
    } else {
        serde_json::from_str(text).with_context(invalid)?
    };
    let mut unknown = Vec::new();
    let parsed = serde_ignored::deserialize(value, |path| unknown.push(path.to_string()))
        .with_context(invalid)?;
    if let Some(field) = unknown.first() {
        bail!("{}: '{field}' is not a known field", invalid());
    }
    Ok(parsed)
}

/// A definition as the admin API shows it, without identity and times, normalized through
/// its type (defaults filled in) so that equal definitions compare equal.
fn normalized<T: Serialize + DeserializeOwned>(mut view: Value) -> anyhow::Result<Value> {
    if let Some(object) = view.as_object_mut() {
        for key in ["id", "api_id", "created_at", "updated_at"] {
            object.remove(key);
        }
    }
    let typed: T = serde_json::from_value(view)?;
    Ok(serde_json::to_value(typed)?)
}

fn endpoint_key(definition: &Value) -> String {
    format!(
        "{} {} priority={} when={}",
        definition["method"].as_str().unwrap_or_default().to_ascii_uppercase(),
        definition["path"].as_str().unwrap_or_default(),
        definition["priority"].as_i64().unwrap_or(0),
        definition.get("when").map(Value::to_string).unwrap_or_default()
    )
}

fn endpoint_label(definition: &Value) -> String {
    let method = definition["method"].as_str().unwrap_or_default().to_ascii_uppercase();
    let path = definition["path"].as_str().unwrap_or_default();
    match definition.get("when") {
        Some(when) => format!("{method} {path} when {when}"),
        None => format!("{method} {path}"),
    }
}

/// Brings one list of an API (endpoints, GraphQL operations or WebSocket mocks) in line.
#[allow(clippy::too_many_arguments)]
async fn sync_list<T: Serialize + DeserializeOwned>(
    client: &Client,
    base: &str,
    what: &str,
    desired: &[T],
    key: fn(&Value) -> String,
    label: fn(&Value) -> String,
    options: &ApplyOptions,
    out: &mut Vec<String>,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let existing = client.all(base).await?;
    let mut existing: Vec<(String, String, Value)> = existing
        .into_iter()
        .map(|view| {
            let id = view["id"].as_str().unwrap_or_default().to_owned();
            normalized::<T>(view).map(|v| (key(&v), id, v))
        })
        .collect::<anyhow::Result<_>>()?;
    for item in desired {
        let wanted = serde_json::to_value(item)?;
        let wanted_key = key(&wanted);
        match existing.iter().position(|(k, _, _)| *k == wanted_key) {
            Some(index) => {
                let (_, id, current) = existing.remove(index);
                if current == wanted {
                    tally.unchanged += 1;
                } else {
                    out.push(format!("  ~ {what} {}", label(&wanted)));
                    tally.updated += 1;
                    if !options.dry_run {
                        client
                            .expect(
                                reqwest::Method::PUT,
                                &format!("{base}/{id}"),
                                Some(&wanted),
                                200,
                            )
                            .await?;
                    }
                }
            }
            None => {
                out.push(format!("  + {what} {}", label(&wanted)));
                tally.created += 1;
                if !options.dry_run {
                    client.expect(reqwest::Method::POST, base, Some(&wanted), 201).await?;
                }
            }
        }
    }
    for (_, id, current) in existing {
        if options.prune {
            out.push(format!("  - {what} {}", label(&current)));
            tally.deleted += 1;
            if !options.dry_run {
                client.expect(reqwest::Method::DELETE, &format!("{base}/{id}"), None, 204).await?;
            }
        } else {
            out.push(format!(
                "  ! {what} {} is not in the file (kept; --prune deletes it)",
                label(&current)
            ));
            tally.extra += 1;
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    pub workspace: Option<String>,
    pub prune: bool,
    pub dry_run: bool,
}

/// Makes the API of `file` match it; returns the lines to print and the tally.
pub async fn apply(
    target: &Target,
    file: &MockFile,
    options: &ApplyOptions,
) -> anyhow::Result<(Vec<String>, Tally)> {
    let client = Client::new(target)?;
    let mut out = Vec::new();
    let mut tally = Tally::default();
    let api = &file.api;
    let (status, current) =
        client.call(reqwest::Method::GET, &format!("/apis/{api}"), None).await?;
    let settings = json!({
        "base_headers": file.base_headers,
        "default_delay": file.default_delay,
        "cors": file.cors,
    });
    match status {
        404 => {
            let workspace = file
                .workspace
                .clone()
                .or_else(|| options.workspace.clone())
                .unwrap_or_else(|| "default".into());
            out.push(format!("  + api {api} in workspace {workspace}"));
            tally.created += 1;
            if !options.dry_run {
                let mut body = json!({ "slug": api });
                if let (Some(fields), Some(extra)) = (body.as_object_mut(), settings.as_object()) {
                    fields.extend(extra.clone());
                }
                if let Some(name) = &file.name {
                    body["name"] = json!(name);
                }
                client
                    .expect(
                        reqwest::Method::POST,
                        &format!("/workspaces/{workspace}/apis"),
                        Some(&body),
                        201,
                    )
                    .await?;
            }
        }
        200 => {
            let current_settings = json!({
                "base_headers": current.get("base_headers").cloned().unwrap_or(json!({})),
                "default_delay": current.get("default_delay").cloned().unwrap_or(Value::Null),
                "cors": current.get("cors").cloned().unwrap_or(Value::Null),
            });
            let wanted_settings = json!({
                "base_headers": settings.get("base_headers").cloned().unwrap_or(json!({})),
                "default_delay": settings.get("default_delay").cloned().unwrap_or(Value::Null),
                "cors": settings.get("cors").cloned().unwrap_or(Value::Null),
            });
            let name_differs =
                file.name.as_ref().is_some_and(|n| current["name"].as_str() != Some(n));
            if current_settings != wanted_settings || name_differs {
                out.push(format!("  ~ api {api} (name or settings)"));
                tally.updated += 1;
                if !options.dry_run {
                    let mut body = wanted_settings;
                    if let Some(name) = &file.name {
                        body["name"] = json!(name);
                    }
                    client
                        .expect(reqwest::Method::PATCH, &format!("/apis/{api}"), Some(&body), 200)
                        .await?;
                }
            } else {
                tally.unchanged += 1;
            }
        }
        _ => bail!("GET /apis/{api} answered {status}: {current}"),
    }
    if options.dry_run && status == 404 {
        // Nothing exists yet to compare the lists with: all of them would be created.
        for e in &file.endpoints {
            out.push(format!("  + endpoint {}", endpoint_label(&serde_json::to_value(e)?)));
        }
        tally.created += file.endpoints.len() + file.graphql.len() + file.websockets.len();
        return Ok((out, tally));
    }
    sync_list(
        &client,
        &format!("/apis/{api}/endpoints"),
        "endpoint",
        &file.endpoints,
        endpoint_key,
        endpoint_label,
        options,
        &mut out,
        &mut tally,
    )
    .await?;
    let graphql_key = |v: &Value| {
        format!(
            "{} {}",
            v["type"].as_str().unwrap_or("query"),
            v["name"].as_str().unwrap_or_default()
        )
    };
    sync_list(
        &client,
        &format!("/apis/{api}/graphql-operations"),
        "graphql",
        &file.graphql,
        graphql_key,
        graphql_key,
        options,
        &mut out,
        &mut tally,
    )
    .await?;
    let ws_key = |v: &Value| v["path"].as_str().unwrap_or_default().to_owned();
    sync_list(
        &client,
        &format!("/apis/{api}/websockets"),
        "websocket",
        &file.websockets,
        ws_key,
        ws_key,
        options,
        &mut out,
        &mut tally,
    )
    .await?;
    Ok((out, tally))
}

/// Imports an OpenAPI document; returns the control plane's answer.
pub async fn import(
    target: &Target,
    document: Vec<u8>,
    workspace: &str,
    query: &str,
) -> anyhow::Result<Value> {
    let client = Client::new(target)?;
    let url = format!(
        "{}/api/v1/workspaces/{workspace}/apis/import{query}",
        target.url.trim_end_matches('/')
    );
    let response = client
        .http
        .post(&url)
        .bearer_auth(&target.token)
        .body(document)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status().as_u16();
    let reply: Value = response.json().await.unwrap_or(Value::Null);
    if status != 201 {
        let error = &reply["error"];
        bail!(
            "the import answered {status}: {}{}",
            error["message"].as_str().unwrap_or("?"),
            error["field"].as_str().map(|f| format!(" (field {f})")).unwrap_or_default()
        );
    }
    Ok(reply)
}

/// An API as a mock file (what `apply` reads), or as OpenAPI.
pub async fn export(target: &Target, api: &str, openapi: bool) -> anyhow::Result<Value> {
    let client = Client::new(target)?;
    if openapi {
        return client
            .expect(reqwest::Method::GET, &format!("/apis/{api}/openapi"), None, 200)
            .await;
    }
    let view = client.expect(reqwest::Method::GET, &format!("/apis/{api}"), None, 200).await?;
    let workspace = client
        .expect(
            reqwest::Method::GET,
            &format!("/workspaces/{}", view["workspace_id"].as_str().unwrap_or_default()),
            None,
            200,
        )
        .await?;
    let mut endpoints = Vec::new();
    for e in client.all(&format!("/apis/{api}/endpoints")).await? {
        endpoints.push(serde_json::from_value(normalized::<EndpointDefinition>(e)?)?);
    }
    let mut graphql = Vec::new();
    for g in client.all(&format!("/apis/{api}/graphql-operations")).await? {
        graphql.push(serde_json::from_value(normalized::<GraphqlOperation>(g)?)?);
    }
    let mut websockets = Vec::new();
    for w in client.all(&format!("/apis/{api}/websockets")).await? {
        websockets.push(serde_json::from_value(normalized::<WebSocketEndpoint>(w)?)?);
    }
    let file = MockFile {
        api: view["slug"].as_str().unwrap_or(api).to_owned(),
        name: view["name"].as_str().map(str::to_owned),
        workspace: workspace["slug"].as_str().map(str::to_owned),
        base_headers: serde_json::from_value(
            view.get("base_headers").cloned().unwrap_or(json!({})),
        )?,
        default_delay: serde_json::from_value(
            view.get("default_delay").cloned().unwrap_or(Value::Null),
        )?,
        cors: serde_json::from_value(view.get("cors").cloned().unwrap_or(Value::Null))?,
        endpoints,
        graphql,
        websockets,
    };
    Ok(serde_json::to_value(file)?)
}
