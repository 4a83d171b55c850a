//! `POST /v1/sessions/{id}/documents`: files uploaded as `multipart/form-data`, ingested
//! (`kaos-ingest`) into the session's documents, each file whole or not at all.

use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::PathRejection;
use axum::extract::{Extension, Multipart, Path, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use kaos_ingest::{Document, IngestOptions};
use kaos_runner::Runner;
use kaos_session::NewItem;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, ApiState, ErrorBody, scoped};
use crate::ClientId;

/// The default most document chunks one session holds.
pub const DEFAULT_MAX_CHUNKS_PER_SESSION: u64 = 10_000;

/// How uploaded documents are ingested: the chunk size and per-file limits, and the most
/// chunks one session may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentLimits {
    /// Chunk size and per-file limits.
    pub ingest: IngestOptions,
    /// The most document chunks one session may hold; a file that would go over is refused.
    pub max_chunks_per_session: u64,
}

impl Default for DocumentLimits {
    fn default() -> Self {
        Self { ingest: IngestOptions::default(), max_chunks_per_session: DEFAULT_MAX_CHUNKS_PER_SESSION }
    }
}

/// What happened to each uploaded file.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DocumentsAdded {
    /// The session.
    pub session_id: String,
    /// One entry per file part, in upload order.
    pub documents: Vec<DocumentAdded>,
}

/// One uploaded file's result.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DocumentAdded {
    /// The file name of the part.
    pub name: String,
    /// `added`, `unchanged` (the session already holds a file with this content) or
    /// `failed` (nothing of it was stored).
    pub status: String,
    /// Chunks stored (`added`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<usize>,
    /// Estimated tokens stored (`added`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    /// `sha256:<hex>` of the file (when it could be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Why it failed, naming the file (`failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Uploads files into a session's documents (created on first use), for the research and
/// findings patterns. Each file's format is sniffed from its content; each goes in whole or
/// not at all; a file whose content the session already holds is left alone.
#[utoipa::path(
    post,
    path = "/sessions/{id}/documents",
    tag = "sessions",
    params(("id" = String, Path, description = "The session")),
    request_body(content_type = "multipart/form-data",
        description = "One or more parts with a file name (e.g. `file`); each is one document."),
    responses(
        (status = 200, description = "Every file added or unchanged", body = DocumentsAdded),
        (status = 400, description = "Not multipart, or no file part", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "At least one file failed (named, with its error); the others were stored",
            body = DocumentsAdded),
    )
)]
pub(super) async fn post_documents(
    State(state): State<ApiState>,
    Extension(client): Extension<ClientId>,
    path: Result<Path<String>, PathRejection>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = path?;
    let session = scoped(&client, &id)?;
    let mut multipart = multipart.map_err(|e| ApiError::invalid(e.body_text()))?;
    let mut files: Vec<(String, axum::body::Bytes)> = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        let Some(name) = field.file_name().map(str::to_owned) else { continue };
        let bytes = field.bytes().await.map_err(multipart_error)?;
        files.push((name, bytes));
    }
    if files.is_empty() {
        return Err(ApiError::invalid("no file part (a part with a file name) in the upload"));
    }
    let limits = &state.documents;
    let mut results = Vec::with_capacity(files.len());
    for (name, bytes) in files {
        let result = match kaos_ingest::ingest(&name, &format!("upload:{name}"), &bytes, &limits.ingest) {
            Err(error) => failed(name, None, error.to_string()),
            Ok(doc) => store(&state.runner, session.as_str(), &doc, limits.max_chunks_per_session).await,
        };
        results.push(result);
    }
    let status = if results.iter().any(|r| r.status == "failed") {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok((status, Json(DocumentsAdded { session_id: id, documents: results })).into_response())
}

fn multipart_error(error: axum::extract::multipart::MultipartError) -> ApiError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is too large")
    } else {
        ApiError::invalid(error.body_text())
    }
}

fn failed(name: String, sha256: Option<String>, error: String) -> DocumentAdded {
    DocumentAdded { name, status: "failed".into(), chunks: None, tokens: None, sha256, error: Some(error) }
}

/// Stores one ingested document unless the session holds its hash already or it would take
/// the session over its chunk limit ([`Runner::add_document`], atomic under the session's lock).
async fn store(runner: &Runner, session: &str, doc: &Document, max_chunks: u64) -> DocumentAdded {
    let sha = Some(doc.sha256.clone());
    let items = doc
        .chunks
        .iter()
        .map(|chunk| {
            chunk
                .metadata()
                .into_iter()
                .fold(NewItem::text(chunk.text.clone()), |item, (k, v)| item.with_metadata(k, v))
        })
        .collect();
    let (status, chunks, tokens, error) = match runner
        .add_document(session, &doc.sha256, items, max_chunks)
        .await
    {
        Ok(kaos_runner::DocumentAdded::Added { .. }) => {
            ("added", Some(doc.chunks.len()), Some(doc.tokens), None)
        }
        Ok(kaos_runner::DocumentAdded::OverLimit { held, limit }) => {
            let error = format!(
                "{}: {} chunk(s) would take the session over its limit of {limit} document chunks ({held} held)",
                doc.name,
                doc.chunks.len(),
            );
            ("failed", None, None, Some(error))
        }
        // Unchanged: the session holds this content already.
        Ok(_) => ("unchanged", None, None, None),
        Err(error) => ("failed", None, None, Some(format!("{}: {}", doc.name, error.report()))),
    };
    DocumentAdded { name: doc.name.clone(), status: status.into(), chunks, tokens, sha256: sha, error }
}
