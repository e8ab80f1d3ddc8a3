//! What the simulator pretends to measure and where its people walk: sensor kinds with their
//! names, units, ranges and thresholds, the processes that make their values, and a walker
//! wandering at a pedestrian pace around a centre. Pure and seeded, so it is tested alone.

use std::f64::consts::{PI, TAU};

use rand::Rng;

use crate::server::config::Center;

/// Metres per degree of latitude (and of longitude at the equator).
const METRES_PER_DEGREE: f64 = 111_320.0;
/// Walkers stay within this distance of the centre.
pub const WANDER_RADIUS_M: f64 = 1_500.0;
const DAY_MS: f64 = 86_400_000.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SensorKind {
    Temperature,
    Humidity,
    Co2,
    Power,
}

const KINDS: [SensorKind; 4] = [SensorKind::Temperature, SensorKind::Humidity, SensorKind::Co2, SensorKind::Power];

/// A sensor as the simulator creates it.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorSpec {
    pub kind: SensorKind,
    pub name: String,
    pub unit: &'static str,
    pub range_min: f64,
    pub range_max: f64,
    pub alert_low: Option<f64>,
    pub alert_high: Option<f64>,
}

/// The `index`-th simulated sensor: the four kinds in turn, numbered by site.
pub fn sensor_spec(index: usize) -> SensorSpec {
    let kind = KINDS[index % KINDS.len()];
    let site = index / KINDS.len() + 1;
    let (name, unit, range_min, range_max, alert_low, alert_high) = match kind {
        SensorKind::Temperature => {
            (format!("Greenhouse {site} temperature"), "°C", -20.0, 60.0, Some(12.0), Some(32.0))
        }
        SensorKind::Humidity => (format!("Greenhouse {site} humidity"), "%", 0.0, 100.0, Some(40.0), Some(85.0)),
        SensorKind::Co2 => (format!("Office {site} CO₂"), "ppm", 0.0, 10_000.0, None, Some(1_200.0)),
        SensorKind::Power => (format!("Workshop {site} power"), "W", 0.0, 20_000.0, None, Some(3_500.0)),
    };
    SensorSpec { kind, name, unit, range_min, range_max, alert_low, alert_high }
}

/// A standard normal sample (Box–Muller).
fn gaussian(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (TAU * u2).cos()
}

/// Whether an event with `per_second` rate happens within `dt` seconds.
fn happens(rng: &mut impl Rng, per_second: f64, dt: f64) -> bool {
    rng.random::<f64>() < 1.0 - (-per_second * dt).exp()
}

/// Electrical loads in the workshop: (watts, switch-on rate, switch-off rate per second).
const LOADS: [(f64, f64, f64); 3] =
    [(750.0, 1.0 / 90.0, 1.0 / 60.0), (2_000.0, 1.0 / 240.0, 1.0 / 120.0), (1_200.0, 1.0 / 120.0, 1.0 / 45.0)];

/// The process behind one sensor's values.
#[derive(Debug, Clone)]
pub struct SensorModel {
    kind: SensorKind,
    /// Local solar time's offset from UTC, from the centre's longitude, so days peak in the afternoon there.
    solar_offset_ms: f64,
    /// Each site is a little different.
    bias: f64,
    /// A slow random wander (mean-reverting).
    drift: f64,
    /// CO₂: the room's level without spikes.
    level: f64,
    /// CO₂: a meeting's extra, decaying.
    spike: f64,
    /// Power: which loads are on.
    loads: [bool; 3],
}

impl SensorModel {
    pub fn new(kind: SensorKind, longitude: f64, rng: &mut impl Rng) -> SensorModel {
        SensorModel {
            kind,
            solar_offset_ms: longitude / 15.0 * 3_600_000.0,
            bias: rng.random_range(-1.5..1.5),
            drift: 0.0,
            level: rng.random_range(500.0..700.0),
            spike: 0.0,
            loads: [false; 3],
        }
    }

    /// The value measured at `ts_ms`, `dt` seconds after the previous one.
    pub fn sample(&mut self, ts_ms: i64, dt: f64, rng: &mut impl Rng) -> f64 {
        let dt = dt.clamp(0.0, 3_600.0);
        // 0 at solar midnight, 0.5 at noon.
        let day = ((ts_ms as f64 + self.solar_offset_ms) / DAY_MS).rem_euclid(1.0);
        // 1 at 15:00, -1 at 03:00.
        let warmth = (TAU * (day - 9.0 / 24.0)).sin();
        self.drift += -self.drift * dt / 600.0 + 0.05 * dt.sqrt() * gaussian(rng);
        match self.kind {
            SensorKind::Temperature => 21.0 + self.bias + 7.5 * warmth + self.drift + 0.15 * gaussian(rng),
            SensorKind::Humidity => 64.0 - 3.0 * self.bias - 17.0 * warmth - 3.0 * self.drift + 0.8 * gaussian(rng),
            SensorKind::Co2 => {
                let office_hours = (8.0 / 24.0..18.0 / 24.0).contains(&day);
                let target = if office_hours { 780.0 } else { 440.0 };
                self.level += (target - self.level) * (dt / 300.0).min(1.0) + 6.0 * dt.sqrt() * gaussian(rng);
                self.level = self.level.max(380.0);
                if happens(rng, 1.0 / 900.0, dt) {
                    self.spike += rng.random_range(700.0..1_400.0);
                }
                self.spike *= (-dt / 120.0).exp();
                self.level + self.spike + 5.0 * gaussian(rng)
            }
            SensorKind::Power => {
                for (on, (_, switch_on, switch_off)) in self.loads.iter_mut().zip(LOADS) {
                    if happens(rng, if *on { switch_off } else { switch_on }, dt) {
                        *on = !*on;
                    }
                }
                let load: f64 =
                    self.loads.iter().zip(LOADS).filter(|(on, _)| **on).map(|(_, (watts, _, _))| watts).sum();
                (180.0 + load) * (1.0 + 0.02 * gaussian(rng))
            }
        }
    }

    /// Rounded as such a sensor would report it.
    pub fn round(&self, value: f64) -> f64 {
        let scale = match self.kind {
            SensorKind::Temperature => 100.0,
            SensorKind::Humidity | SensorKind::Power => 10.0,
            SensorKind::Co2 => 1.0,
        };
        (value * scale).round() / scale
    }
}

/// Someone walking around the centre: a smooth random heading at a pedestrian speed, turning
/// back towards the centre when far out.
#[derive(Debug, Clone)]
pub struct Walker {
    center: Center,
    /// Metres east and north of the centre.
    east: f64,
    north: f64,
    /// Radians clockwise from north.
    heading: f64,
    /// Metres per second.
    speed: f64,
}

impl Walker {
    /// A walker somewhere within a few hundred metres of `center`.
    pub fn new(center: Center, rng: &mut impl Rng) -> Walker {
        let distance = 400.0 * rng.random::<f64>().sqrt();
        let bearing = rng.random_range(0.0..TAU);
        Walker {
            center,
            east: distance * bearing.sin(),
            north: distance * bearing.cos(),
            heading: rng.random_range(0.0..TAU),
            speed: rng.random_range(1.1..1.6),
        }
    }

    /// Walk for `dt` seconds; the new position as (latitude, longitude).
    pub fn step(&mut self, dt: f64, rng: &mut impl Rng) -> (f64, f64) {
        let dt = dt.clamp(0.0, 10.0);
        self.heading += 0.3 * dt.sqrt() * gaussian(rng);
        let distance = self.east.hypot(self.north);
        if distance > 0.7 * WANDER_RADIUS_M {
            let home = (-self.east).atan2(-self.north);
            let turn = (home - self.heading + PI).rem_euclid(TAU) - PI;
            self.heading += turn.clamp(-0.5 * dt, 0.5 * dt);
        }
        self.speed = (self.speed + 0.05 * dt.sqrt() * gaussian(rng)).clamp(0.9, 1.8);
        self.east += self.speed * dt * self.heading.sin();
        self.north += self.speed * dt * self.heading.cos();
        self.position()
    }

    pub fn position(&self) -> (f64, f64) {
        let latitude = self.center.latitude + self.north / METRES_PER_DEGREE;
        let longitude = self.center.longitude + self.east / (METRES_PER_DEGREE * latitude.to_radians().cos());
        (latitude, longitude)
    }
}

/// The distance in metres between two nearby points (equirectangular: exact enough for a few km).
pub fn distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    let mean_latitude = ((a.0 + b.0) / 2.0).to_radians();
    let north = (a.0 - b.0) * METRES_PER_DEGREE;
    let east = (a.1 - b.1) * METRES_PER_DEGREE * mean_latitude.cos();
    north.hypot(east)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn sensors_come_in_four_kinds_numbered_by_site() {
        let names: Vec<String> = (0..6).map(|i| sensor_spec(i).name).collect();
        assert_eq!(
            names,
            [
                "Greenhouse 1 temperature",
                "Greenhouse 1 humidity",
                "Office 1 CO₂",
                "Workshop 1 power",
                "Greenhouse 2 temperature",
                "Greenhouse 2 humidity"
            ]
        );
    }

    /// A day of readings every 10 s: within the declared range, and the thresholds are crossed
    /// now and then but not most of the time.
    #[test]
    fn a_simulated_day_stays_in_range_and_sometimes_alerts() {
        let mut rng = StdRng::seed_from_u64(7);
        for kind_index in 0..4 {
            let spec = sensor_spec(kind_index);
            let mut model = SensorModel::new(spec.kind, 4.9, &mut rng);
            let start = 1_764_000_000_000_i64;
            let values: Vec<f64> = (0..8_640)
                .map(|i| {
                    let value = model.sample(start + i * 10_000, 10.0, &mut rng);
                    model.round(value)
                })
                .collect();
            for value in &values {
                assert!(
                    value.is_finite() && (spec.range_min..=spec.range_max).contains(value),
                    "{}: {value}",
                    spec.name
                );
            }
            let alerting = values
                .iter()
                .filter(|v| {
                    spec.alert_low.is_some_and(|low| **v < low) || spec.alert_high.is_some_and(|high| **v > high)
                })
                .count() as f64
                / values.len() as f64;
            if matches!(spec.kind, SensorKind::Co2 | SensorKind::Power) {
                assert!(alerting > 0.0, "{} never crosses its threshold", spec.name);
            }
            assert!(alerting < 0.3, "{} alerts {:.0}% of the time", spec.name, alerting * 100.0);
            let spread =
                values.iter().cloned().fold(f64::MIN, f64::max) - values.iter().cloned().fold(f64::MAX, f64::min);
            assert!(spread > 5.0, "{} hardly moves: {spread}", spec.name);
        }
    }

    #[test]
    fn walkers_stroll_at_walking_pace_and_stay_near_the_centre() {
        let mut rng = StdRng::seed_from_u64(11);
        let center = Center { latitude: 52.3731, longitude: 4.8926 };
        for _ in 0..8 {
            let mut walker = Walker::new(center, &mut rng);
            let mut previous = walker.position();
            let mut farthest: f64 = 0.0;
            for _ in 0..(3 * 3_600) {
                let now = walker.step(1.0, &mut rng);
                let stride = distance_m(previous, now);
                assert!((0.8..=2.0).contains(&stride), "a stride of {stride} m in one second");
                farthest = farthest.max(distance_m(now, (center.latitude, center.longitude)));
                previous = now;
            }
            assert!(farthest < WANDER_RADIUS_M, "wandered {farthest} m away");
            assert!(farthest > 300.0, "only got {farthest} m away in three hours");
        }
    }
}
