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

    /// Zoom by `delta` levels keeping the position under (sx, sy) where it is.
    pub fn zoom_at(&mut self, delta: f64, sx: f64, sy: f64) {
        let anchor = self.to_position(sx, sy);
        self.zoom = (self.zoom + delta).clamp(MIN_ZOOM, MAX_ZOOM);
        let (ax, ay) = self.to_screen(anchor.0, anchor.1);
        self.pan(sx - ax, sy - ay);
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
}
