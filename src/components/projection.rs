//! Web Mercator: where a longitude and latitude land on the map, and back.
//!
//! World coordinates run from 0 to `TILE * 2^zoom` in both directions; the view keeps
//! the world coordinate at the canvas centre and the zoom.

use std::f64::consts::PI;

pub const TILE: f64 = 256.0;
/// Mercator cannot show the poles; the map stops here, like every web map.
pub const MAX_LAT: f64 = 85.051_128_78;
pub const MIN_ZOOM: f64 = 0.0;
pub const MAX_ZOOM: f64 = 18.0;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct View {
    /// Longitude and latitude at the centre of the canvas.
    pub center: (f64, f64),
    pub zoom: f64,
    /// Canvas size in CSS pixels.
    pub width: f64,
    pub height: f64,
}

fn world_size(zoom: f64) -> f64 {
    TILE * 2f64.powf(zoom)
}

/// World pixel coordinates of a position at `zoom`.
pub fn project(lon: f64, lat: f64, zoom: f64) -> (f64, f64) {
    let size = world_size(zoom);
    let lat = lat.clamp(-MAX_LAT, MAX_LAT).to_radians();
    let x = (lon + 180.0) / 360.0 * size;
    let y = (1.0 - (lat.tan() + 1.0 / lat.cos()).ln() / PI) / 2.0 * size;
    (x, y)
}

/// The position at world pixel coordinates.
pub fn unproject(x: f64, y: f64, zoom: f64) -> (f64, f64) {
    let size = world_size(zoom);
    let lon = x / size * 360.0 - 180.0;
    let n = PI - 2.0 * PI * y / size;
    let lat = n.sinh().atan().to_degrees();
    (lon, lat)
}

impl View {
    /// Canvas coordinates of a position.
    pub fn to_screen(&self, lon: f64, lat: f64) -> (f64, f64) {
        let (cx, cy) = project(self.center.0, self.center.1, self.zoom);
        let (x, y) = project(lon, lat, self.zoom);
        (x - cx + self.width / 2.0, y - cy + self.height / 2.0)
    }

    /// The position under a canvas point.
    pub fn to_position(&self, sx: f64, sy: f64) -> (f64, f64) {
        let (cx, cy) = project(self.center.0, self.center.1, self.zoom);
        let (lon, lat) = unproject(cx + sx - self.width / 2.0, cy + sy - self.height / 2.0, self.zoom);
        (wrap_lon(lon), lat.clamp(-MAX_LAT, MAX_LAT))
    }

    /// Move the map by a drag of (dx, dy) canvas pixels.
    pub fn pan(&mut self, dx: f64, dy: f64) {
        self.center = self.to_position(self.width / 2.0 - dx, self.height / 2.0 - dy);
    }

    /// Centre and zoom so that every position (longitude, latitude) is on the canvas, at
    /// least `padding` pixels from its edges, zooming in no further than `max_zoom`.
    pub fn fit(&mut self, positions: &[(f64, f64)], padding: f64, max_zoom: f64) {
        let Some(first) = positions.first() else { return };
        let start = project(first.0, first.1, 0.0);
        let (mut x0, mut y0, mut x1, mut y1) = (start.0, start.1, start.0, start.1);
        for (lon, lat) in positions {
            let (x, y) = project(*lon, *lat, 0.0);
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
        }
        let room = ((self.width - 2.0 * padding).max(1.0), (self.height - 2.0 * padding).max(1.0));
        let scale = (room.0 / (x1 - x0).max(1e-9)).min(room.1 / (y1 - y0).max(1e-9));
        self.zoom = scale.log2().clamp(MIN_ZOOM, max_zoom.min(MAX_ZOOM));
        self.center = unproject((x0 + x1) / 2.0, (y0 + y1) / 2.0, 0.0);
    }

    /// Zoom by `delta` levels keeping the position under (sx, sy) where it is.
    pub fn zoom_at(&mut self, delta: f64, sx: f64, sy: f64) {
        let anchor = self.to_position(sx, sy);
        self.zoom = (self.zoom + delta).clamp(MIN_ZOOM, MAX_ZOOM);
        let (ax, ay) = self.to_screen(anchor.0, anchor.1);
        self.pan(sx - ax, sy - ay);
    }
}

/// A raster tile to draw: its address on the tile server and its square on the canvas.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TileSpot {
    pub z: u32,
    pub x: u32,
    pub y: u32,
    pub left: f64,
    pub top: f64,
    pub size: f64,
}

impl View {
    /// The tiles that cover the canvas, at the tile zoom nearest the view's zoom (scaled to fit
    /// between levels). Columns wrap around the antimeridian; rows stop at the map's edge.
    pub fn tiles(&self) -> Vec<TileSpot> {
        let z = self.zoom.round().clamp(MIN_ZOOM, MAX_ZOOM) as u32;
        let count = 1i64 << z;
        let size = TILE * 2f64.powf(self.zoom - f64::from(z));
        let (cx, cy) = project(self.center.0, self.center.1, self.zoom);
        let (left, top) = (cx - self.width / 2.0, cy - self.height / 2.0);
        let columns = (left / size).floor() as i64..=((left + self.width) / size).ceil() as i64 - 1;
        let rows =
            ((top / size).floor() as i64).max(0)..=(((top + self.height) / size).ceil() as i64 - 1).min(count - 1);
        let mut spots = Vec::new();
        for y in rows {
            for x in columns.clone() {
                spots.push(TileSpot {
                    z,
                    x: x.rem_euclid(count) as u32,
                    y: y as u32,
                    left: x as f64 * size - left,
                    top: y as f64 * size - top,
                    size,
                });
            }
        }
        spots
    }

    /// A two-finger gesture moved from `from` to `to` (canvas points): zoom by how much the
    /// fingers spread, keep the map under their midpoint, and follow the midpoint.
    pub fn pinch(&mut self, from: [(f64, f64); 2], to: [(f64, f64); 2]) {
        let spread = |p: [(f64, f64); 2]| (p[0].0 - p[1].0).hypot(p[0].1 - p[1].1).max(1.0);
        let middle = |p: [(f64, f64); 2]| ((p[0].0 + p[1].0) / 2.0, (p[0].1 + p[1].1) / 2.0);
        let (before, after) = (middle(from), middle(to));
        self.zoom_at((spread(to) / spread(from)).log2(), before.0, before.1);
        self.pan(after.0 - before.0, after.1 - before.1);
    }
}

fn wrap_lon(lon: f64) -> f64 {
    (lon + 180.0).rem_euclid(360.0) - 180.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: (f64, f64), b: (f64, f64)) -> bool {
        (a.0 - b.0).abs() < 1e-6 && (a.1 - b.1).abs() < 1e-6
    }

    #[test]
    fn projection_round_trips() {
        for (lon, lat) in [(0.0, 0.0), (2.35, 48.85), (-122.4, 37.8), (151.2, -33.9)] {
            let (x, y) = project(lon, lat, 5.0);
            assert!(close(unproject(x, y, 5.0), (lon, lat)));
        }
        assert_eq!(project(-180.0, 0.0, 0.0).0, 0.0);
        assert!((project(0.0, 0.0, 0.0).1 - 128.0).abs() < 1e-9);
    }

    #[test]
    fn zooming_keeps_the_point_under_the_cursor() {
        let mut view = View { center: (0.0, 0.0), zoom: 2.0, width: 800.0, height: 600.0 };
        let before = view.to_position(600.0, 150.0);
        view.zoom_at(1.5, 600.0, 150.0);
        assert!(close(view.to_position(600.0, 150.0), before));
        let centre = view.center;
        view.pan(0.0, 0.0);
        assert!(close(view.center, centre));
    }

    #[test]
    fn tiles_cover_the_canvas_and_wrap() {
        let whole = View { center: (0.0, 0.0), zoom: 0.0, width: 256.0, height: 256.0 };
        assert_eq!(whole.tiles(), vec![TileSpot { z: 0, x: 0, y: 0, left: 0.0, top: 0.0, size: 256.0 }]);

        // Between levels: the nearest tile zoom, scaled.
        let between = View { zoom: 1.4, ..whole };
        let spots = between.tiles();
        assert!(spots.iter().all(|t| t.z == 1 && (t.size - 256.0 * 2f64.powf(0.4)).abs() < 1e-9));

        // Centred on the antimeridian: columns on both sides, wrapped into 0..2^z.
        let across = View { center: (180.0, 0.0), zoom: 2.0, width: 600.0, height: 200.0 };
        let columns: Vec<u32> = across.tiles().iter().filter(|t| t.y == 1).map(|t| t.x).collect();
        assert!(columns.contains(&3) && columns.contains(&0), "{columns:?}");
        assert!(across.tiles().iter().all(|t| t.x < 4 && t.y < 4));
        // Each spot is where the projection puts that tile's corner.
        for t in across.tiles() {
            let (lon, lat) = unproject(f64::from(t.x) * TILE, f64::from(t.y) * TILE, 2.0);
            let (sx, sy) = across.to_screen(lon, lat);
            let wraps = ((sx - t.left) / (TILE * 4.0)).round() * TILE * 4.0;
            assert!((sx - wraps - t.left).abs() < 1e-6 && (sy - t.top).abs() < 1e-6, "{t:?} {sx} {sy}");
        }
    }

    #[test]
    fn pinching_zooms_around_the_fingers() {
        let mut view = View { center: (10.0, 20.0), zoom: 3.0, width: 800.0, height: 600.0 };
        let under = view.to_position(400.0, 300.0);
        // The fingers spread to twice the distance and the pair moves 50 px right.
        view.pinch([(350.0, 300.0), (450.0, 300.0)], [(350.0, 300.0), (550.0, 300.0)]);
        assert!((view.zoom - 4.0).abs() < 1e-9);
        assert!(close(view.to_position(450.0, 300.0), under));
    }

    #[test]
    fn fitting_shows_everyone() {
        let mut view = View { center: (0.0, 0.0), zoom: 0.0, width: 800.0, height: 600.0 };
        let people = [(4.89, 52.37), (4.90, 52.38), (4.88, 52.36)];
        view.fit(&people, 40.0, 18.0);
        assert!(view.zoom > 10.0, "zoomed in on a city: {}", view.zoom);
        for (lon, lat) in people {
            let (x, y) = view.to_screen(lon, lat);
            assert!((39.0..=761.0).contains(&x) && (39.0..=561.0).contains(&y), "{x} {y}");
        }
        // One person: as close as allowed.
        view.fit(&people[..1], 40.0, 15.0);
        assert_eq!(view.zoom, 15.0);
        assert!(close(view.to_position(400.0, 300.0), people[0]));
    }
}
