//! The sensor chart's arithmetic, apart from any drawing: a series kept in time order, how
//! the points in a window reduce to one column per pixel (first, min, max, last, so that no
//! spike is lost however many points share a pixel), where the ticks go, the window's
//! figures, and when a reading crosses a threshold.

use crate::sensors::protocol::{HistoryPoint, Reading};

/// A point of a series: one reading (`min` = `max` = `value`, `count` 1) or a bucket of
/// several (`value` their average).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub ts: i64,
    pub value: f64,
    pub min: f64,
    pub max: f64,
    pub count: i64,
}

impl From<Reading> for Sample {
    fn from(r: Reading) -> Self {
        Sample { ts: r.ts, value: r.value, min: r.value, max: r.value, count: 1 }
    }
}

impl From<HistoryPoint> for Sample {
    fn from(p: HistoryPoint) -> Self {
        Sample { ts: p.ts, value: p.value, min: p.min, max: p.max, count: p.count.max(1) }
    }
}

/// A sensor's points in time order, at most `cap` of them (the oldest go first).
#[derive(Clone, Debug, Default)]
pub struct Series {
    points: Vec<Sample>,
    cap: usize,
}

impl Series {
    pub fn new(cap: usize) -> Self {
        Series { points: Vec::new(), cap: cap.max(1) }
    }

    pub fn points(&self) -> &[Sample] {
        &self.points
    }

    /// Add a live reading; one older than the newest goes in its place in time.
    pub fn push(&mut self, sample: Sample) {
        match self.points.last() {
            Some(last) if sample.ts < last.ts => {
                let at = self.points.partition_point(|p| p.ts <= sample.ts);
                self.points.insert(at, sample);
            }
            _ => self.points.push(sample),
        }
        if self.points.len() > self.cap {
            let extra = self.points.len() - self.cap;
            self.points.drain(..extra);
        }
    }

    /// Replace what is known with a loaded history, keeping the live readings that came
    /// after its end (they arrived while it loaded).
    pub fn load(&mut self, history: Vec<Sample>) {
        let after = history.last().map_or(i64::MIN, |p| p.ts);
        let newer: Vec<Sample> = self.points.iter().filter(|p| p.ts > after).copied().collect();
        self.points = history;
        for sample in newer {
            self.push(sample);
        }
        if self.points.len() > self.cap {
            let extra = self.points.len() - self.cap;
            self.points.drain(..extra);
        }
    }

    /// The points with `from <= ts < to`.
    pub fn window(&self, from: i64, to: i64) -> &[Sample] {
        let start = self.points.partition_point(|p| p.ts < from);
        let end = self.points.partition_point(|p| p.ts < to);
        &self.points[start..end.max(start)]
    }

    pub fn latest(&self) -> Option<Sample> {
        self.points.last().copied()
    }

    /// The point nearest in time to `ts` within the window.
    pub fn nearest(&self, ts: i64, from: i64, to: i64) -> Option<Sample> {
        let points = self.window(from, to);
        let at = points.partition_point(|p| p.ts < ts);
        let before = at.checked_sub(1).and_then(|i| points.get(i));
        match (before, points.get(at)) {
            (Some(a), Some(b)) => Some(if ts - a.ts <= b.ts - ts { *a } else { *b }),
            (a, b) => a.or(b).copied(),
        }
    }
}

/// The points of one pixel column.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Column {
    pub x: usize,
    pub first: f64,
    pub min: f64,
    pub max: f64,
    pub last: f64,
}

/// Reduce the points of `[from, to)` to at most `width` columns.
pub fn columns(points: &[Sample], from: i64, to: i64, width: usize) -> Vec<Column> {
    let span = (to - from).max(1) as f64;
    let mut out: Vec<Column> = Vec::new();
    for p in points {
        let x = (((p.ts - from) as f64 / span) * width as f64).floor();
        if x < 0.0 || x >= width as f64 {
            continue;
        }
        let x = x as usize;
        match out.last_mut() {
            Some(c) if c.x == x => {
                c.min = c.min.min(p.min);
                c.max = c.max.max(p.max);
                c.last = p.value;
            }
            _ => out.push(Column { x, first: p.value, min: p.min, max: p.max, last: p.value }),
        }
    }
    out
}

/// The window's figures: the latest value, and min, max and average over the window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    pub current: f64,
    pub min: f64,
    pub max: f64,
    pub average: f64,
    pub count: i64,
}

pub fn stats(points: &[Sample]) -> Option<Stats> {
    let last = points.last()?;
    let mut stats = Stats { current: last.value, min: f64::INFINITY, max: f64::NEG_INFINITY, average: 0.0, count: 0 };
    let mut sum = 0.0;
    for p in points {
        stats.min = stats.min.min(p.min);
        stats.max = stats.max.max(p.max);
        sum += p.value * p.count as f64;
        stats.count += p.count;
    }
    stats.average = sum / stats.count.max(1) as f64;
    Some(stats)
}

/// Round tick values between `lo` and `hi`, about `target` of them (steps of 1, 2 or 5 times
/// a power of ten).
pub fn ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo || target == 0 {
        return Vec::new();
    }
    let raw = (hi - lo) / target as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(10.0 * magnitude);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// Time ticks (ms) between `from` and `to`, about `target` of them, on round seconds,
/// minutes or hours (in UTC; hours of the local day are left to the label).
pub fn time_ticks(from: i64, to: i64, target: usize) -> Vec<i64> {
    const STEPS: [i64; 15] = [
        1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000, 1_800_000, 3_600_000,
        10_800_000, 21_600_000,
    ];
    if to <= from || target == 0 {
        return Vec::new();
    }
    let raw = (to - from) / target as i64;
    let step = STEPS.into_iter().find(|s| *s >= raw).unwrap_or(43_200_000);
    let first = from.div_euclid(step) + i64::from(from.rem_euclid(step) != 0);
    (first..).map(|i| i * step).take_while(|t| *t < to).collect()
}

/// The value range to show: the data's, widened to include the thresholds, with a margin,
/// and never empty.
pub fn value_range(data: Option<(f64, f64)>, thresholds: &[f64]) -> (f64, f64) {
    let (mut lo, mut hi) = data.unwrap_or((0.0, 1.0));
    for t in thresholds {
        lo = lo.min(*t);
        hi = hi.max(*t);
    }
    if hi - lo < 1e-9 {
        let pad = if lo.abs() > 1e-9 { lo.abs() * 0.05 } else { 1.0 };
        return (lo - pad, hi + pad);
    }
    let pad = (hi - lo) * 0.08;
    (lo - pad, hi + pad)
}

/// Which side of a sensor's thresholds a value is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Low,
    Normal,
    High,
}

pub fn level(value: f64, low: Option<f64>, high: Option<f64>) -> Level {
    if high.is_some_and(|h| value > h) {
        Level::High
    } else if low.is_some_and(|l| value < l) {
        Level::Low
    } else {
        Level::Normal
    }
}

/// An alert is raised when a reading goes past a threshold from the normal side (or is the
/// first reading seen and already past it), not again for every reading that stays past it.
pub fn crossed(previous: Option<f64>, value: f64, low: Option<f64>, high: Option<f64>) -> Option<Level> {
    let now = level(value, low, high);
    let before = previous.map(|p| level(p, low, high));
    (now != Level::Normal && before != Some(now)).then_some(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(ts: i64, value: f64) -> Sample {
        Reading { ts, value }.into()
    }

    #[test]
    fn series_stay_in_time_order_and_within_their_cap() {
        let mut s = Series::new(4);
        for (ts, v) in [(10, 1.0), (30, 3.0), (20, 2.0), (40, 4.0), (50, 5.0)] {
            s.push(reading(ts, v));
        }
        let times: Vec<i64> = s.points().iter().map(|p| p.ts).collect();
        assert_eq!(times, vec![20, 30, 40, 50]);
        assert_eq!(s.window(25, 45).len(), 2);
        assert_eq!(s.nearest(36, 0, 100).map(|p| p.ts), Some(40));
        assert_eq!(s.nearest(34, 0, 100).map(|p| p.ts), Some(30));
    }

    #[test]
    fn loading_history_keeps_readings_that_arrived_meanwhile() {
        let mut s = Series::new(100);
        s.push(reading(90, 9.0));
        s.push(reading(110, 11.0));
        s.load(vec![reading(50, 5.0), reading(100, 10.0)]);
        let times: Vec<i64> = s.points().iter().map(|p| p.ts).collect();
        assert_eq!(times, vec![50, 100, 110]);
    }

    #[test]
    fn columns_keep_every_spike() {
        // 1,000 points over 10 columns, one spike in the middle.
        let points: Vec<Sample> = (0..1000).map(|i| reading(i, if i == 503 { 99.0 } else { 1.0 })).collect();
        let cols = columns(&points, 0, 1000, 10);
        assert_eq!(cols.len(), 10);
        assert_eq!(cols[5].max, 99.0);
        assert!(cols.iter().enumerate().all(|(i, c)| c.x == i && c.min == 1.0));
        // Points outside the window are left out.
        assert!(columns(&points, 2000, 3000, 10).is_empty());
    }

    #[test]
    fn stats_weigh_buckets_by_their_count() {
        let bucket = Sample { ts: 0, value: 10.0, min: 5.0, max: 20.0, count: 3 };
        let stats = stats(&[bucket, reading(60_000, 2.0)]).expect("stats");
        assert_eq!((stats.current, stats.min, stats.max, stats.count), (2.0, 2.0, 20.0, 4));
        assert!((stats.average - 8.0).abs() < 1e-12);
        assert!(super::stats(&[]).is_none());
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(ticks(0.0, 10.0, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(ticks(13.0, 47.0, 4), vec![20.0, 30.0, 40.0]);
        assert!(ticks(1.0, 1.0, 5).is_empty());
        assert_eq!(time_ticks(1_000, 61_000, 6), vec![10_000, 20_000, 30_000, 40_000, 50_000, 60_000]);
        assert!(time_ticks(0, 86_400_000, 6).iter().all(|t| t % 3_600_000 == 0));
    }

    #[test]
    fn value_range_includes_thresholds_and_is_never_empty() {
        let (lo, hi) = value_range(Some((10.0, 20.0)), &[30.0]);
        assert!(lo < 10.0 && hi > 30.0);
        let (lo, hi) = value_range(Some((5.0, 5.0)), &[]);
        assert!(lo < 5.0 && hi > 5.0);
    }

    #[test]
    fn alerts_fire_on_crossing_not_while_staying_out() {
        let (low, high) = (Some(10.0), Some(30.0));
        assert_eq!(crossed(Some(20.0), 31.0, low, high), Some(Level::High));
        assert_eq!(crossed(Some(31.0), 32.0, low, high), None);
        assert_eq!(crossed(Some(31.0), 5.0, low, high), Some(Level::Low));
        assert_eq!(crossed(None, 35.0, low, high), Some(Level::High));
        assert_eq!(crossed(Some(35.0), 20.0, low, high), None);
        assert_eq!(crossed(Some(20.0), 31.0, None, None), None);
    }
}
