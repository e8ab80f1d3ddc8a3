//! Street maps offline: raster tiles served by the app from a local archive (`--tiles`), so
//! that a LAN without internet shows streets once an admin has placed a regional extract
//! on the server.
//!
//! Two formats, told apart by their first bytes: MBTiles (an SQLite database with a `tiles`
//! table, rows counted from the south as in TMS) and PMTiles v3 (one file of directories and
//! tiles, read with the `pmtiles` crate over a memory map). Tiles are served as stored, as
//! `GET /tiles/{z}/{x}/{y}` with the archive's image type.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use pmtiles::{AsyncPmTilesReader, MmapBackend, TileCoord};
use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

use crate::server::AppState;

/// The URL template the map page asks tiles from.
pub const TILE_PATH: &str = "/tiles/{z}/{x}/{y}";

/// The deepest zoom a tile archive can address (2^30 columns).
const MAX_ARCHIVE_ZOOM: u8 = 30;

#[derive(Debug, thiserror::Error)]
pub enum TilesError {
    #[error("cannot open the tile archive {path}: {message}")]
    Open { path: String, message: String },
    #[error("{path} is neither an MBTiles (SQLite) nor a PMTiles file")]
    UnknownFormat { path: String },
    #[error("{path} holds {kind} tiles; the map draws PNG, JPEG or WebP images")]
    NotRaster { path: String, kind: String },
    #[error("reading a tile failed: {0}")]
    Read(String),
}

/// What the map needs to know of the archive.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TileInfo {
    pub content_type: &'static str,
    pub attribution: Option<String>,
    pub min_zoom: u8,
    pub max_zoom: u8,
}

enum Source {
    MbTiles(SqlitePool),
    PmTiles(Box<AsyncPmTilesReader<MmapBackend>>),
}

/// An open tile archive.
pub struct Archive {
    source: Source,
    pub info: TileInfo,
}

fn open_error(path: &Path, error: impl std::fmt::Display) -> TilesError {
    TilesError::Open { path: path.display().to_string(), message: error.to_string() }
}

/// The image type of tiles by their format name (MBTiles' `format`) or their first bytes.
fn content_type(format: &str) -> Option<&'static str> {
    match format.to_ascii_lowercase().as_str() {
        "png" | "image/png" => Some("image/png"),
        "jpg" | "jpeg" | "image/jpeg" => Some("image/jpeg"),
        "webp" | "image/webp" => Some("image/webp"),
        _ => None,
    }
}

/// The attribution in a TileJSON-like metadata object, if any.
fn attribution_of(metadata: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(metadata).ok()?;
    value.get("attribution")?.as_str().map(str::trim).filter(|a| !a.is_empty()).map(str::to_owned)
}

impl Archive {
    /// Open `path`, by its format: the first bytes tell.
    pub async fn open(path: &Path) -> Result<Archive, TilesError> {
        let mut magic = [0u8; 16];
        {
            use std::io::Read;
            let mut file = std::fs::File::open(path).map_err(|e| open_error(path, e))?;
            file.read_exact(&mut magic).map_err(|e| open_error(path, e))?;
        }
        if magic.starts_with(b"PMTiles") {
            Self::open_pmtiles(path).await
        } else if magic.starts_with(b"SQLite format 3\0") {
            Self::open_mbtiles(path).await
        } else {
            Err(TilesError::UnknownFormat { path: path.display().to_string() })
        }
    }

    async fn open_pmtiles(path: &Path) -> Result<Archive, TilesError> {
        let reader = AsyncPmTilesReader::new_with_path(path).await.map_err(|e| open_error(path, e))?;
        let header = reader.get_header();
        let content_type = match header.tile_type {
            pmtiles::TileType::Png => "image/png",
            pmtiles::TileType::Jpeg => "image/jpeg",
            pmtiles::TileType::Webp => "image/webp",
            other => {
                return Err(TilesError::NotRaster { path: path.display().to_string(), kind: format!("{other:?}") })
            }
        };
        if header.tile_compression != pmtiles::Compression::None
            && header.tile_compression != pmtiles::Compression::Unknown
        {
            let kind = format!("{:?}-compressed", header.tile_compression);
            return Err(TilesError::NotRaster { path: path.display().to_string(), kind });
        }
        let (min_zoom, max_zoom) = (header.min_zoom, header.max_zoom.min(MAX_ARCHIVE_ZOOM));
        let attribution = reader.get_metadata().await.ok().as_deref().and_then(attribution_of);
        Ok(Archive {
            source: Source::PmTiles(Box::new(reader)),
            info: TileInfo { content_type, attribution, min_zoom, max_zoom },
        })
    }

    async fn open_mbtiles(path: &Path) -> Result<Archive, TilesError> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(|e| open_error(path, e))?
            .read_only(true)
            .immutable(true);
        let pool =
            SqlitePoolOptions::new().max_connections(4).connect_with(options).await.map_err(|e| open_error(path, e))?;
        let metadata: Vec<(String, String)> = sqlx::query_as("SELECT name, value FROM metadata")
            .fetch_all(&pool)
            .await
            .map_err(|e| open_error(path, e))?;
        let get = |name: &str| metadata.iter().find(|(n, _)| n == name).map(|(_, v)| v.trim().to_owned());
        let format = get("format").unwrap_or_else(|| "png".to_owned());
        let Some(content_type) = content_type(&format) else {
            return Err(TilesError::NotRaster { path: path.display().to_string(), kind: format });
        };
        let zooms: (Option<i64>, Option<i64>) = sqlx::query_as("SELECT MIN(zoom_level), MAX(zoom_level) FROM tiles")
            .fetch_one(&pool)
            .await
            .map_err(|e| open_error(path, e))?;
        let zoom = |name: &str, found: Option<i64>, default: u8| {
            get(name)
                .and_then(|v| v.parse::<u8>().ok())
                .or(found.and_then(|z| u8::try_from(z).ok()))
                .unwrap_or(default)
                .min(MAX_ARCHIVE_ZOOM)
        };
        let attribution =
            get("attribution").filter(|a| !a.is_empty()).or_else(|| get("json").and_then(|j| attribution_of(&j)));
        Ok(Archive {
            info: TileInfo {
                content_type,
                attribution,
                min_zoom: zoom("minzoom", zooms.0, 0),
                max_zoom: zoom("maxzoom", zooms.1, 0),
            },
            source: Source::MbTiles(pool),
        })
    }

    /// The tile at `z/x/y` (rows from the north, as the map asks), if the archive has it.
    pub async fn tile(&self, z: u8, x: u32, y: u32) -> Result<Option<Bytes>, TilesError> {
        if z > MAX_ARCHIVE_ZOOM || u64::from(x) >= 1 << z || u64::from(y) >= 1 << z {
            return Ok(None);
        }
        match &self.source {
            Source::MbTiles(pool) => {
                let row = (1u64 << z) - 1 - u64::from(y);
                let data: Option<Vec<u8>> = sqlx::query_scalar(
                    "SELECT tile_data FROM tiles WHERE zoom_level = ? AND tile_column = ? AND tile_row = ?",
                )
                .bind(i64::from(z))
                .bind(i64::from(x))
                .bind(row as i64)
                .fetch_optional(pool)
                .await
                .map_err(|e| TilesError::Read(e.to_string()))?;
                Ok(data.map(Bytes::from))
            }
            Source::PmTiles(reader) => {
                let coord = TileCoord::new(z, x, y).map_err(|e| TilesError::Read(e.to_string()))?;
                reader.get_tile(coord).await.map_err(|e| TilesError::Read(e.to_string()))
            }
        }
    }
}

/// `GET /tiles/{z}/{x}/{y}` (an extension such as `.png` after `y` is allowed).
pub async fn serve_tile(
    State(state): State<AppState>,
    UrlPath((z, x, y)): UrlPath<(String, String, String)>,
) -> Response {
    let Some(archive) = state.try_get::<Archive>() else {
        return (StatusCode::NOT_FOUND, "this server has no tile archive (--tiles)").into_response();
    };
    let y = y.split_once('.').map_or(y.as_str(), |(y, _)| y);
    let (Ok(z), Ok(x), Ok(y)) = (z.parse::<u8>(), x.parse::<u32>(), y.parse::<u32>()) else {
        return (StatusCode::BAD_REQUEST, "a tile is /tiles/{z}/{x}/{y} with whole numbers").into_response();
    };
    match archive.tile(z, x, y).await {
        Ok(Some(data)) => (
            [
                (header::CONTENT_TYPE, archive.info.content_type),
                // The archive changes only when the operator replaces it (and restarts).
                (header::CACHE_CONTROL, "public, max-age=86400"),
            ],
            data,
        )
            .into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, "no such tile in the archive").into_response(),
        Err(error) => {
            tracing::warn!(%error, "tile read failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "the tile could not be read").into_response()
        }
    }
}

/// Open the configured archive, if any.
pub async fn open_configured(path: Option<&Path>) -> Result<Option<Arc<Archive>>, TilesError> {
    match path {
        Some(path) => {
            let archive = Archive::open(path).await?;
            tracing::info!(
                path = %path.display(),
                zooms = format!("{}-{}", archive.info.min_zoom, archive.info.max_zoom),
                "serving map tiles"
            );
            Ok(Some(Arc::new(archive)))
        }
        None => Ok(None),
    }
}
