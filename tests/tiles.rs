//! Street tiles served by the app from a local archive (`--tiles`): MBTiles and PMTiles.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::{http, server_fn, TestServer};

/// The bytes the test stores as the tile at z/x/y: distinct for every tile.
fn tile_bytes(z: u8, x: u32, y: u32) -> Vec<u8> {
    format!("not really a PNG: {z}/{x}/{y}").into_bytes()
}

/// A PMTiles archive with every tile of zooms 0 to 2.
fn pmtiles_archive(dir: &Path) -> PathBuf {
    use pmtiles::{PmTilesWriter, TileCoord, TileType};
    let path = dir.join("test.pmtiles");
    let file = std::fs::File::create(&path).unwrap();
    let mut writer = PmTilesWriter::new(TileType::Png)
        .min_zoom(0)
        .max_zoom(2)
        .metadata(r#"{"attribution": "© PM Test"}"#)
        .create(file)
        .unwrap();
    for z in 0..=2u8 {
        for y in 0..1u32 << z {
            for x in 0..1u32 << z {
                writer.add_raw_tile(TileCoord::new(z, x, y).unwrap(), &tile_bytes(z, x, y)).unwrap();
            }
        }
    }
    writer.finalize().unwrap();
    path
}

/// An MBTiles archive with every tile of zooms 0 to 2 (rows counted from the south).
async fn mbtiles_archive(dir: &Path) -> PathBuf {
    use sqlx::Connection;
    let path = dir.join("test.mbtiles");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE metadata (name TEXT, value TEXT)").execute(&mut db).await.unwrap();
    sqlx::query("CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB)")
        .execute(&mut db)
        .await
        .unwrap();
    for (name, value) in [("format", "png"), ("attribution", "© MB Test"), ("minzoom", "0"), ("maxzoom", "2")] {
        sqlx::query("INSERT INTO metadata VALUES (?, ?)").bind(name).bind(value).execute(&mut db).await.unwrap();
    }
    for z in 0..=2u8 {
        for y in 0..1u32 << z {
            for x in 0..1u32 << z {
                let row = (1u32 << z) - 1 - y;
                sqlx::query("INSERT INTO tiles VALUES (?, ?, ?, ?)")
                    .bind(i64::from(z))
                    .bind(i64::from(x))
                    .bind(i64::from(row))
                    .bind(tile_bytes(z, x, y))
                    .execute(&mut db)
                    .await
                    .unwrap();
            }
        }
    }
    db.close().await.unwrap();
    path
}

async fn serves_its_archive(archive: PathBuf, attribution: &str) {
    let server = TestServer::start_with(move |c| c.tiles = Some(archive)).await;
    for (z, x, y) in [(0, 0, 0), (1, 1, 0), (2, 3, 1), (2, 0, 3)] {
        let response = http(server.addr, "GET", &format!("/tiles/{z}/{x}/{y}.png"), &[], "").await;
        assert_eq!(response.status, 200, "{z}/{x}/{y}");
        assert_eq!(response.header("content-type"), Some("image/png"));
        assert_eq!(response.body.as_bytes(), tile_bytes(z, x, y), "the tile at {z}/{x}/{y}, rows from the north");
    }
    for missing in ["/tiles/3/0/0", "/tiles/2/4/0", "/tiles/40/0/0"] {
        assert_eq!(http(server.addr, "GET", missing, &[], "").await.status, 404, "{missing}");
    }
    assert_eq!(http(server.addr, "GET", "/tiles/a/0/0", &[], "").await.status, 400);
    // The map page learns where tiles come from, how deep they go, and whose they are.
    let info = server_fn(server.addr, "map_room", "room=lobby", None).await;
    let info: Value = serde_json::from_str(&info.body).unwrap();
    assert_eq!(info["tiles"]["url"], "/tiles/{z}/{x}/{y}");
    assert_eq!(info["tiles"]["attribution"], attribution);
    assert_eq!(info["tiles"]["max_zoom"], 2);
}

#[tokio::test]
async fn a_pmtiles_archive_is_served_tile_by_tile() {
    let dir = tempfile::tempdir().unwrap();
    serves_its_archive(pmtiles_archive(dir.path()), "© PM Test").await;
}

#[tokio::test]
async fn an_mbtiles_archive_is_served_tile_by_tile() {
    let dir = tempfile::tempdir().unwrap();
    serves_its_archive(mbtiles_archive(dir.path()).await, "© MB Test").await;
}

#[tokio::test]
async fn a_file_that_is_no_archive_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "just some text, long enough").unwrap();
    let mut config = switchboard::server::config::Config::for_tests(format!("sqlite://{}/t.db", dir.path().display()));
    config.tiles = Some(path);
    let error = switchboard::server::Server::bind(config).await.err().expect("refused");
    assert!(error.to_string().contains("neither an MBTiles"), "{error}");
}
