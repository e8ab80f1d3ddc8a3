//! Web Mercator: where a longitude and latitude land on the map, and back.
//!
//! World coordinates run from 0 to `TILE * 2^zoom` in both directions; the view keeps
//! the world coordinate at the canvas centre and the zoom.

use std::f64::consts::PI;

pub const TILE: f64 = 256.0;
/// Mercator cannot show the poles; the map stops here, like every web map.
pub const MAX_LAT: f64 = 85.051_128_78;
pub const MIN_ZOOM: f64 = 0.0;
/// Street level and closer: about 0.15 m per pixel at the equator, 0.09 m in Amsterdam.
pub const MAX_ZOOM: f64 = 20.0;
/// The Earth's circumference at the equator, in metres (WGS 84).
const EQUATOR_M: f64 = 40_075_016.686;

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
    /// Canvas coordinates of a position: of its copy nearest the centre, where the map shows
    /// the world more than once or the view straddles the antimeridian.
    pub fn to_screen(&self, lon: f64, lat: f64) -> (f64, f64) {
        let (cx, cy) = project(self.center.0, self.center.1, self.zoom);
        let (x, y) = project(lon, lat, self.zoom);
        let size = world_size(self.zoom);
        let dx = x - cx;
        let dx = dx - (dx / size).round() * size;
        (dx + self.width / 2.0, y - cy + self.height / 2.0)
    }

    /// The world pixel coordinates (at the view's zoom) of the canvas' top left corner, and
    /// the width of one copy of the world.
    pub fn origin(&self) -> (f64, f64, f64) {
        let (cx, cy) = project(self.center.0, self.center.1, self.zoom);
        (cx - self.width / 2.0, cy - self.height / 2.0, world_size(self.zoom))
    }

    /// Which copies of the world (0 is the one from -180° to 180°, 1 the next east) the
    /// canvas shows, with one more on each side for shapes that reach past ±180°.
    pub fn world_copies(&self) -> std::ops::RangeInclusive<i64> {
        let (left, _, size) = self.origin();
        ((left / size).floor() as i64 - 1)..=(((left + self.width) / size).floor() as i64 + 1)
    }

    /// Metres on the ground per canvas pixel at the centre.
    pub fn metres_per_pixel(&self) -> f64 {
        EQUATOR_M * self.center.1.clamp(-MAX_LAT, MAX_LAT).to_radians().cos() / world_size(self.zoom)
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
    /// between levels), or at `max_z` enlarged when the view is closer than tiles exist.
    /// Columns wrap around the antimeridian; rows stop at the map's edge.
    pub fn tiles(&self, max_z: u32) -> Vec<TileSpot> {
        let z = (self.zoom.round().clamp(MIN_ZOOM, MAX_ZOOM) as u32).min(max_z);
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

/// A scale bar at most `max_px` long: a round length (1, 2 or 5 times a power of ten metres),
/// its length in pixels, and its label (`50 m`, `2 km`).
pub fn scale_bar(metres_per_pixel: f64, max_px: f64) -> (f64, f64, String) {
    let most = (metres_per_pixel * max_px).max(1e-3);
    let power = 10f64.powf(most.log10().floor());
    let metres = [5.0, 2.0, 1.0].into_iter().map(|m| m * power).find(|m| *m <= most).unwrap_or(power);
    let label = if metres >= 1000.0 {
        format!("{} km", metres / 1000.0)
    } else if metres >= 1.0 {
        format!("{metres} m")
    } else {
        format!("{} cm", (metres * 100.0).round())
    };
    (metres, metres / metres_per_pixel, label)
}

/// Markers closer than this many pixels are drawn as one cluster.
pub const CLUSTER_PX: f64 = 22.0;

/// Group canvas points that overlap: each group is the indices of its points (in order) and
/// the group's centre (their mean). Greedy and in one pass, over a grid of cells the size of
/// the overlap distance, so a thousand markers cost a thousand steps.
pub fn clusters(points: &[(f64, f64)], distance: f64) -> Vec<(Vec<usize>, (f64, f64))> {
    use std::collections::HashMap;
    let cell = |(x, y): (f64, f64)| ((x / distance).floor() as i64, (y / distance).floor() as i64);
    // Per cell, the groups whose first point lies in it.
    let mut grid: HashMap<(i64, i64), Vec<usize>> = HashMap::new();
    let mut groups: Vec<(Vec<usize>, (f64, f64))> = Vec::new();
    for (i, &point) in points.iter().enumerate() {
        let (cx, cy) = cell(point);
        let near = (cx - 1..=cx + 1)
            .flat_map(|x| (cy - 1..=cy + 1).map(move |y| (x, y)))
            .filter_map(|key| grid.get(&key))
            .flatten()
            .copied()
            .find(|&g| {
                let first = points[groups[g].0[0]];
                (first.0 - point.0).hypot(first.1 - point.1) < distance
            });
        match near {
            Some(g) => groups[g].0.push(i),
            None => {
                grid.entry((cx, cy)).or_default().push(groups.len());
                groups.push((vec![i], point));
            }
        }
    }
    for (members, centre) in &mut groups {
        let n = members.len() as f64;
        let (sx, sy) = members.iter().fold((0.0, 0.0), |(sx, sy), &i| (sx + points[i].0, sy + points[i].1));
        *centre = (sx / n, sy / n);
    }
    groups
}

/// Where the `count` members of a cluster are drawn when zooming in cannot split it (they
/// stand closer than a pixel apart at the closest zoom): on a ring around its centre, each
/// at least [`CLUSTER_PX`] from the next, so that none covers another.
pub fn fanned_out(centre: (f64, f64), count: usize) -> Vec<(f64, f64)> {
    use std::f64::consts::{PI, TAU};
    // Neighbours on a ring of radius r are 2 r sin(π / n) apart; a little more than the
    // overlap distance keeps rounding from putting two back together.
    let apart = CLUSTER_PX * 1.1;
    let ring = if count < 2 { 0.0 } else { (apart / (2.0 * (PI / count as f64).sin())).max(CLUSTER_PX) };
    (0..count)
        .map(|k| {
            let angle = TAU * k as f64 / count as f64;
            (centre.0 + ring * angle.cos(), centre.1 + ring * angle.sin())
        })
        .collect()
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
        assert_eq!(whole.tiles(19), vec![TileSpot { z: 0, x: 0, y: 0, left: 0.0, top: 0.0, size: 256.0 }]);

        // Between levels: the nearest tile zoom, scaled.
        let between = View { zoom: 1.4, ..whole };
        let spots = between.tiles(19);
        assert!(spots.iter().all(|t| t.z == 1 && (t.size - 256.0 * 2f64.powf(0.4)).abs() < 1e-9));

        // Centred on the antimeridian: columns on both sides, wrapped into 0..2^z.
        let across = View { center: (180.0, 0.0), zoom: 2.0, width: 600.0, height: 200.0 };
        let columns: Vec<u32> = across.tiles(19).iter().filter(|t| t.y == 1).map(|t| t.x).collect();
        assert!(columns.contains(&3) && columns.contains(&0), "{columns:?}");
        assert!(across.tiles(19).iter().all(|t| t.x < 4 && t.y < 4));
        // Each spot is where the projection puts that tile's corner.
        for t in across.tiles(19) {
            let (lon, lat) = unproject(f64::from(t.x) * TILE, f64::from(t.y) * TILE, 2.0);
            let (sx, sy) = across.to_screen(lon, lat);
            let wraps = ((sx - t.left) / (TILE * 4.0)).round() * TILE * 4.0;
            assert!((sx - wraps - t.left).abs() < 1e-6 && (sy - t.top).abs() < 1e-6, "{t:?} {sx} {sy}");
        }
    }

    #[test]
    fn closer_than_the_tiles_go_the_deepest_tiles_are_enlarged() {
        let street = View { center: (4.89, 52.37), zoom: 19.0, width: 512.0, height: 512.0 };
        let spots = street.tiles(16);
        assert!(spots.iter().all(|t| t.z == 16 && (t.size - TILE * 8.0).abs() < 1e-9), "{spots:?}");
        assert!(spots.len() <= 4, "a few enlarged tiles cover the canvas");
    }

    #[test]
    fn markers_take_their_nearest_world_copy() {
        // Looking at the antimeridian from the east: a person at 179° W is right of centre,
        // one at 179° E left of it, not a world away.
        let view = View { center: (180.0, 0.0), zoom: 4.0, width: 800.0, height: 600.0 };
        let (east, _) = view.to_screen(-179.0, 0.0);
        let (west, _) = view.to_screen(179.0, 0.0);
        assert!(east > 400.0 && east < 450.0, "{east}");
        assert!(west < 400.0 && west > 350.0, "{west}");
        // Zoomed out beyond one world: the canvas shows several copies.
        let wide = View { center: (0.0, 0.0), zoom: 0.0, width: 1000.0, height: 256.0 };
        assert!(wide.world_copies().count() >= 5, "{:?}", wide.world_copies());
    }

    #[test]
    fn the_scale_bar_is_a_round_length() {
        let street = View { center: (4.89, 52.37), zoom: 18.0, width: 800.0, height: 600.0 };
        let mpp = street.metres_per_pixel();
        assert!((0.3..0.45).contains(&mpp), "Amsterdam at zoom 18: {mpp} m/px");
        let (metres, px, label) = scale_bar(mpp, 120.0);
        assert_eq!((metres, label.as_str()), (20.0, "20 m"));
        assert!(px <= 120.0 && px > 40.0);
        assert_eq!(scale_bar(100.0, 120.0).2, "10 km");
        assert_eq!(scale_bar(0.005, 120.0).2, "50 cm");
        let closest = View { zoom: MAX_ZOOM, ..street };
        assert!(closest.metres_per_pixel() < 0.3, "zoom reaches below 0.3 m per pixel");
    }

    #[test]
    fn people_twenty_metres_apart_are_two_markers_in_the_street_and_one_cluster_in_the_city() {
        let a: (f64, f64) = (4.8952, 52.3702);
        // 20 m east of a: a degree of longitude is 111,320 m times cos(latitude) there.
        let b = (a.0 + 20.0 / (111_320.0 * a.1.to_radians().cos()), a.1);
        for (zoom, groups) in [(18.0, 2), (12.0, 1)] {
            let view = View { center: a, zoom, width: 800.0, height: 600.0 };
            let points = [view.to_screen(a.0, a.1), view.to_screen(b.0, b.1)];
            let found = clusters(&points, CLUSTER_PX);
            assert_eq!(found.len(), groups, "at zoom {zoom}");
        }
        // Many overlapping points make one group; far ones stay apart; centres are means.
        let points: Vec<(f64, f64)> =
            (0..100).map(|i| (f64::from(i % 10), f64::from(i / 10))).chain([(500.0, 500.0)]).collect();
        let found = clusters(&points, CLUSTER_PX);
        assert_eq!(found.iter().map(|g| g.0.len()).collect::<Vec<_>>(), [100, 1]);
        assert!((found[0].1 .0 - 4.5).abs() < 1e-9 && (found[0].1 .1 - 4.5).abs() < 1e-9);
    }

    #[test]
    fn a_cluster_that_cannot_split_is_fanned_out_into_markers_that_do_not_overlap() {
        for count in [2, 3, 7, 40] {
            let spots = fanned_out((100.0, 200.0), count);
            assert_eq!(spots.len(), count);
            assert_eq!(clusters(&spots, CLUSTER_PX).len(), count, "{count} apart");
            let mean = spots.iter().fold((0.0, 0.0), |(x, y), p| (x + p.0 / count as f64, y + p.1 / count as f64));
            assert!((mean.0 - 100.0).abs() < 1e-6 && (mean.1 - 200.0).abs() < 1e-6, "around its place");
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
        // People 300 m apart in one town: framed at street scale.
        let walkers = [(4.8952, 52.3702), (4.8996, 52.3702), (4.8974, 52.3720)];
        view.fit(&walkers, 60.0, 18.0);
        assert!(view.metres_per_pixel() < 1.0, "street scale: {} m/px", view.metres_per_pixel());
    }
}
