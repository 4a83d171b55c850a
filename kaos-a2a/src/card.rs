//! Agent discovery and security objects: the agent card (`a2a.proto` sections 4.4 and 4.5).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::types::Metadata;

/// What an agent publishes about itself at [`crate::AGENT_CARD_PATH`]: who it is, where and
/// how to call it, what it can do and how to authenticate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentCard {
    /// The agent's name.
    pub name: String,
    /// What the agent does.
    pub description: String,
    /// Where and how it is served, in order of preference; at least one.
    pub supported_interfaces: Vec<AgentInterface>,
    /// Who provides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<AgentProvider>,
    /// The agent's own version.
    pub version: String,
    /// Its documentation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documentation_url: Option<String>,
    /// Optional protocol features it supports.
    pub capabilities: AgentCapabilities,
    /// Authentication schemes, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub security_schemes: BTreeMap<String, SecurityScheme>,
    /// Which schemes a client must satisfy (any one requirement of the list).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_requirements: Vec<SecurityRequirement>,
    /// Media types it accepts in every skill unless a skill says otherwise.
    pub default_input_modes: Vec<String>,
    /// Media types it produces in every skill unless a skill says otherwise.
    pub default_output_modes: Vec<String>,
    /// What it can do.
    pub skills: Vec<AgentSkill>,
    /// JWS signatures of the card.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<AgentCardSignature>,
    /// An icon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon_url: Option<String>,
}

impl AgentCard {
    /// The first interface with this protocol binding (see [`crate::BINDING_JSONRPC`]).
    #[must_use]
    pub fn interface(&self, binding: &str) -> Option<&AgentInterface> {
        self.supported_interfaces.iter().find(|interface| interface.protocol_binding == binding)
    }
}

/// One way to reach the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentInterface {
    /// The endpoint.
    pub url: String,
    /// `JSONRPC`, `GRPC`, `HTTP+JSON` or a custom binding's URI.
    pub protocol_binding: String,
    /// The tenant to name in requests, when the endpoint serves several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The A2A version served there (`1.0`).
    pub protocol_version: String,
}

/// Who provides the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentProvider {
    /// The provider's website.
    pub url: String,
    /// The provider's name.
    pub organization: String,
}

/// Optional protocol features.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentCapabilities {
    /// `SendStreamingMessage` and `SubscribeToTask` are served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streaming: Option<bool>,
    /// Push notifications are served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_notifications: Option<bool>,
    /// Protocol extensions supported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<AgentExtension>,
    /// An extended card is served to authenticated clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extended_agent_card: Option<bool>,
}

/// A protocol extension the agent supports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentExtension {
    /// The extension's URI.
    #[serde(default)]
    pub uri: String,
    /// How the agent uses it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Whether a client must support it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    /// Extension-specific parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Metadata>,
}

/// Something the agent can do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentSkill {
    /// Unique id of the skill within the agent.
    pub id: String,
    /// Its name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// Keywords.
    pub tags: Vec<String>,
    /// Example prompts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
    /// Media types it accepts, over the card's defaults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_modes: Vec<String>,
    /// Media types it produces, over the card's defaults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_modes: Vec<String>,
    /// Security requirements of this skill.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_requirements: Vec<SecurityRequirement>,
}

/// A JWS signature of the card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentCardSignature {
    /// The protected header, base64url.
    pub protected: String,
    /// The signature, base64url.
    pub signature: String,
    /// The unprotected header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<Metadata>,
}

/// A list of strings (the scopes of a [`SecurityRequirement`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StringList {
    /// The strings.
    #[serde(default)]
    pub list: Vec<String>,
}

/// Schemes that together authorize a request: scheme name → required scopes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityRequirement {
    /// The schemes, by the names of [`AgentCard::security_schemes`].
    #[serde(default)]
    pub schemes: BTreeMap<String, StringList>,
}

/// An authentication scheme (a `oneof` on the wire).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SecurityScheme {
    /// An API key in a header, query parameter or cookie.
    ApiKeySecurityScheme(ApiKeySecurityScheme),
    /// HTTP authentication (`Bearer`, `Basic`, …).
    HttpAuthSecurityScheme(HttpAuthSecurityScheme),
    /// OAuth 2.0.
    #[serde(rename = "oauth2SecurityScheme")]
    OAuth2SecurityScheme(OAuth2SecurityScheme),
    /// OpenID Connect.
    OpenIdConnectSecurityScheme(OpenIdConnectSecurityScheme),
    /// Mutual TLS.
    #[serde(rename = "mtlsSecurityScheme")]
    MtlsSecurityScheme(MutualTlsSecurityScheme),
}

impl SecurityScheme {
    /// HTTP bearer authentication, as `kaos serve --http` asks for.
    #[must_use]
    pub fn bearer(description: impl Into<String>) -> Self {
        Self::HttpAuthSecurityScheme(HttpAuthSecurityScheme {
            description: description.into(),
            scheme: "Bearer".to_owned(),
            bearer_format: String::new(),
        })
    }
}

/// An API key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeySecurityScheme {
    /// A description.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// `header`, `query` or `cookie`.
    pub location: String,
    /// The header, parameter or cookie name.
    pub name: String,
}

/// HTTP authentication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpAuthSecurityScheme {
    /// A description.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The scheme (`Bearer`, `Basic`, …).
    pub scheme: String,
    /// A hint of the bearer token's format (`JWT`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bearer_format: String,
}

/// OAuth 2.0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OAuth2SecurityScheme {
    /// A description.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The flow.
    pub flows: OAuthFlows,
    /// The authorization server's metadata (RFC 8414).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub oauth2_metadata_url: String,
}

/// OpenID Connect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenIdConnectSecurityScheme {
    /// A description.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The discovery document.
    pub open_id_connect_url: String,
}

/// Mutual TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MutualTlsSecurityScheme {
    /// A description.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// An OAuth 2.0 flow (a `oneof` on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OAuthFlows {
    /// Authorization code.
    AuthorizationCode(AuthorizationCodeOAuthFlow),
    /// Client credentials.
    ClientCredentials(ClientCredentialsOAuthFlow),
    /// Implicit (deprecated by the protocol).
    Implicit(ImplicitOAuthFlow),
    /// Password (deprecated by the protocol).
    Password(PasswordOAuthFlow),
    /// Device code (RFC 8628).
    DeviceCode(DeviceCodeOAuthFlow),
}

/// The authorization code flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationCodeOAuthFlow {
    /// The authorization endpoint.
    pub authorization_url: String,
    /// The token endpoint.
    pub token_url: String,
    /// The refresh endpoint.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub refresh_url: String,
    /// Scope name → description.
    #[serde(default)]
    pub scopes: BTreeMap<String, String>,
    /// Whether PKCE is required.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pkce_required: bool,
}

/// The client credentials flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientCredentialsOAuthFlow {
    /// The token endpoint.
    pub token_url: String,
    /// The refresh endpoint.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub refresh_url: String,
    /// Scope name → description.
    #[serde(default)]
    pub scopes: BTreeMap<String, String>,
}

/// The implicit flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImplicitOAuthFlow {
    /// The authorization endpoint.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub authorization_url: String,
    /// The refresh endpoint.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub refresh_url: String,
    /// Scope name → description.
    #[serde(default)]
    pub scopes: BTreeMap<String, String>,
}

/// The password flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PasswordOAuthFlow {
    /// The token endpoint.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token_url: String,
    /// The refresh endpoint.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub refresh_url: String,
    /// Scope name → description.
    #[serde(default)]
    pub scopes: BTreeMap<String, String>,
}

/// The device code flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceCodeOAuthFlow {
    /// The device authorization endpoint.
    pub device_authorization_url: String,
    /// The token endpoint.
    pub token_url: String,
    /// The refresh endpoint.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub refresh_url: String,
    /// Scope name → description.
    #[serde(default)]
    pub scopes: BTreeMap<String, String>,
}
