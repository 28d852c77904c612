//! Who is calling, and what they may do.
//!
//! Two credentials, both sent as `Authorization: Bearer …`:
//! - **JWTs** signed HS256 with `JWT_SECRET` (the algorithm is pinned; `exp` is required).
//!   Claims: `sub` (who), `role` (`owner`, `admin`, `editor` or `viewer`) and `workspaces`
//!   (slugs or ids the role applies to; `"*"` for all, which also allows creating
//!   workspaces). A subject also gets the role of its memberships (`/members`) in
//!   workspaces its token does not list.
//! - **API keys** (`emk_` + 64 hex characters), created per workspace with a role, shown
//!   once, stored as a SHA-256 hash and revocable. A key reaches its own workspace only.
//!
//! A caller without any role in a workspace gets 404 for it and everything in it, exactly
//! as if it did not exist: another tenant's data is not even confirmed to exist. A caller
//! with too small a role gets 403.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::db::{self, WorkspaceRow};
use crate::error::{ApiError, Result};
use crate::http::AppState;

/// What a caller may do in a workspace; each role includes the ones below it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read everything in the workspace.
    Viewer,
    /// And change APIs, endpoints, GraphQL operations, WebSocket mocks; import; publish.
    Editor,
    /// And manage API keys, members (up to admin) and webhooks, delete APIs, edit settings.
    Admin,
    /// And grant owner, and delete the workspace.
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Editor => "editor",
            Self::Admin => "admin",
            Self::Owner => "owner",
        }
    }

    pub fn parse(field: &str, text: &str) -> Result<Self> {
        match text {
            "viewer" => Ok(Self::Viewer),
            "editor" => Ok(Self::Editor),
            "admin" => Ok(Self::Admin),
            "owner" => Ok(Self::Owner),
            _ => Err(ApiError::invalid(field, "must be one of owner, admin, editor, viewer")),
        }
    }
}

/// The claims of an admin JWT.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    /// Workspace slugs or ids, or `"*"` for every workspace.
    #[serde(default)]
    pub workspaces: Vec<String>,
    /// Expiry, seconds since the Unix epoch (required).
    pub exp: u64,
}

/// Verifies and mints JWTs with `JWT_SECRET`.
#[derive(Clone)]
pub struct Tokens {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens(<secret>)")
    }
}

/// Shortest `JWT_SECRET` accepted: HS256 keys shorter than the hash add no strength.
pub const MIN_SECRET_BYTES: usize = 32;

impl Tokens {
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 30;
        Self {
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    /// A signed token for `claims` (the `edgemock token` command and the tests use it).
    pub fn mint(&self, claims: &Claims) -> anyhow::Result<String> {
        Ok(jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)?)
    }

    fn verify(&self, token: &str) -> Result<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| ApiError::Unauthorized(format!("the token is not valid: {e}")))
    }
}

/// The prefix of API keys: recognisable in logs and by secret scanners.
pub const API_KEY_PREFIX: &str = "emk_";

/// A new API key and its hash.
pub fn new_api_key() -> anyhow::Result<(String, String)> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let key = format!("{API_KEY_PREFIX}{}", hex::encode(bytes));
    let hash = hash_api_key(&key);
    Ok((key, hash))
}

pub fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The authenticated caller of an admin route.
#[derive(Debug, Clone)]
pub enum Caller {
    Token(Claims),
    ApiKey { id: String, workspace_id: String, role: Role },
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                ApiError::Unauthorized("send Authorization: Bearer <JWT or API key>".to_owned())
            })?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .ok_or_else(|| ApiError::Unauthorized("use the Bearer scheme".to_owned()))?;
        if token.starts_with(API_KEY_PREFIX) {
            // Looked up by hash: the database index does the comparison, and a timing
            // difference could only reveal a hash, never the key.
            let key =
                db::select_active_api_key(&state.db, &hash_api_key(token)).await?.ok_or_else(
                    || ApiError::Unauthorized("the API key is unknown or revoked".to_owned()),
                )?;
            // Recorded at most once a minute per key, and only written when due: on SQLite
            // every write takes the database's single write lock.
            let minute_ago =
                db::format_timestamp(time::OffsetDateTime::now_utc() - time::Duration::minutes(1));
            if key.last_used_at.as_deref().is_none_or(|at| at < minute_ago.as_str()) {
                db::touch_api_key(&state.db, &key.id).await?;
            }
            let role = Role::parse("role", &key.role)
                .map_err(|_| anyhow::anyhow!("API key {} has an unknown role", key.id))?;
            return Ok(Self::ApiKey { id: key.id, workspace_id: key.workspace_id, role });
        }
        state.tokens.verify(token).map(Self::Token)
    }
}

impl Caller {
    /// Who this is, for logs: the token's subject or the key's id.
    pub fn who(&self) -> String {
        match self {
            Self::Token(claims) => claims.sub.clone(),
            Self::ApiKey { id, .. } => format!("api-key:{id}"),
        }
    }

    /// A token for every workspace (`"*"`), which may create workspaces and list them all.
    pub fn is_global(&self) -> bool {
        matches!(self, Self::Token(c) if c.workspaces.iter().any(|w| w == "*"))
    }

    /// The caller's role in `workspace`, if any.
    pub async fn role_in(
        &self,
        state: &AppState,
        workspace: &WorkspaceRow,
    ) -> Result<Option<Role>> {
        match self {
            Self::ApiKey { workspace_id, role, .. } => {
                Ok((*workspace_id == workspace.id).then_some(*role))
            }
            Self::Token(claims) => {
                let listed = claims
                    .workspaces
                    .iter()
                    .any(|w| w == "*" || *w == workspace.slug || *w == workspace.id);
                let from_token = listed.then_some(claims.role);
                if from_token == Some(Role::Owner) {
                    // Nothing a membership says can add to it: no query on this hot path.
                    return Ok(from_token);
                }
                let member = db::select_member(&state.db, &workspace.id, &claims.sub).await?;
                let from_membership = member.and_then(|m| Role::parse("role", &m.role).ok());
                Ok(from_token.max(from_membership))
            }
        }
    }

    /// The caller's role in `workspace` if it is at least `needed`: 404 when the caller has
    /// no role there (as if the workspace did not exist), 403 when the role is too small.
    pub async fn require(
        &self,
        state: &AppState,
        workspace: &WorkspaceRow,
        needed: Role,
        not_found: impl FnOnce() -> ApiError,
    ) -> Result<Role> {
        match self.role_in(state, workspace).await? {
            None => Err(not_found()),
            Some(role) if role < needed => Err(ApiError::Forbidden(format!(
                "this needs the {} role in workspace '{}'; you have {}",
                needed.as_str(),
                workspace.slug,
                role.as_str()
            ))),
            Some(role) => Ok(role),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims { sub: "ada".into(), role: Role::Editor, workspaces: vec!["acme".into()], exp }
    }

    #[test]
    fn tokens_round_trip_and_are_pinned_to_hs256() {
        let tokens = Tokens::new(&"k".repeat(32));
        let exp = u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap() + 60;
        let token = tokens.mint(&claims(exp)).unwrap();
        assert_eq!(tokens.verify(&token).unwrap().role, Role::Editor);
        // Expired, wrong secret, unsigned (alg none) and HS512 are all refused.
        assert!(tokens.verify(&tokens.mint(&claims(1000)).unwrap()).is_err());
        assert!(Tokens::new(&"x".repeat(32)).verify(&token).is_err());
        let parts: Vec<&str> = token.split('.').collect();
        let none = format!("{}.{}.", "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0", parts[1]);
        assert!(tokens.verify(&none).is_err());
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims(exp),
            &EncodingKey::from_secret("k".repeat(32).as_bytes()),
        )
        .unwrap();
        assert!(tokens.verify(&hs512).is_err());
    }

    #[test]
    fn a_token_without_exp_is_refused() {
        let tokens = Tokens::new(&"k".repeat(32));
        let no_exp = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "ada", "role": "owner", "workspaces": ["*"]}),
            &EncodingKey::from_secret("k".repeat(32).as_bytes()),
        )
        .unwrap();
        assert!(tokens.verify(&no_exp).is_err());
    }

    #[test]
    fn api_keys_are_random_and_hashed() {
        let (a, hash_a) = new_api_key().unwrap();
        let (b, _) = new_api_key().unwrap();
        assert!(a.starts_with(API_KEY_PREFIX) && a.len() == 68 && a != b);
        assert_eq!(hash_api_key(&a), hash_a);
        assert_ne!(hash_a, a);
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Owner > Role::Admin && Role::Admin > Role::Editor);
        assert!(Role::Editor > Role::Viewer);
        assert!(Role::parse("role", "root").is_err());
    }
}
