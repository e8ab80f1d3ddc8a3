//! What the generator counts: the marker each message carries, latencies, loss.
//!
//! Every published message carries a marker of fixed width, `#b` then hex fields: the
//! phase (a ramp's step), the sender, its sequence number and the send time in
//! nanoseconds on the generator's one clock. A delivery is found by looking for the
//! marker in the frame's bytes, whatever JSON or Socket.IO packet is around it, so
//! nothing is decoded. Sequence numbers per sender make loss and duplicates exact for
//! each subscriber.

/// The marker's length in bytes: `#b`, phase (2 hex), sender (4), sequence (8), time (16).
pub const MARKER_LEN: usize = 32;

/// What a marker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub phase: u8,
    pub sender: u16,
    pub seq: u32,
    pub sent_ns: u64,
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn put_hex(out: &mut Vec<u8>, value: u64, digits: usize) {
    for i in (0..digits).rev() {
        out.push(HEX[((value >> (i * 4)) & 0xF) as usize]);
    }
}

/// Append the marker, then `pad` filler bytes (the filler needs no escaping in JSON).
pub fn write_marker(out: &mut Vec<u8>, marker: Marker, pad: usize) {
    out.extend_from_slice(b"#b");
    put_hex(out, u64::from(marker.phase), 2);
    put_hex(out, u64::from(marker.sender), 4);
    put_hex(out, u64::from(marker.seq), 8);
    put_hex(out, marker.sent_ns, 16);
    out.extend(std::iter::repeat_n(b'.', pad));
}

fn parse_hex(bytes: &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for &b in bytes {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        value = (value << 4) | u64::from(digit);
    }
    Some(value)
}

/// The first marker in a frame, if it carries one.
pub fn find_marker(frame: &[u8]) -> Option<Marker> {
    for at in memchr::memchr_iter(b'#', frame) {
        let m = frame.get(at..at + MARKER_LEN)?;
        if m[1] != b'b' {
            continue;
        }
        let (Some(phase), Some(sender), Some(seq), Some(sent_ns)) =
            (parse_hex(&m[2..4]), parse_hex(&m[4..8]), parse_hex(&m[8..16]), parse_hex(&m[16..32]))
        else {
            continue;
        };
        return Some(Marker { phase: phase as u8, sender: sender as u16, seq: seq as u32, sent_ns });
    }
    None
}

/// Sub-buckets per power of two: values are kept to within 1/64 (1.6 %).
const SUB_BITS: u32 = 6;
const SUB: usize = 1 << SUB_BITS;
const BUCKETS: usize = (64 - SUB_BITS as usize) * SUB + 2 * SUB;

/// A log-linear histogram of nanoseconds: exact below 128, within 1.6 % above.
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: vec![0; BUCKETS], count: 0, max: 0 }
    }
}

fn bucket(value: u64) -> usize {
    if value < 2 * SUB as u64 {
        return value as usize;
    }
    let shift = 63 - value.leading_zeros() - SUB_BITS;
    (shift as usize) * SUB + (value >> shift) as usize
}

/// The middle of a bucket's range.
fn bucket_value(index: usize) -> u64 {
    if index < 2 * SUB {
        return index as u64;
    }
    let shift = (index / SUB - 1) as u32;
    let mantissa = (index - (shift as usize) * SUB) as u64;
    (mantissa << shift) + (1u64 << shift) / 2
}

impl Histogram {
    pub fn record(&mut self, value: u64) {
        self.counts[bucket(value)] += 1;
        self.count += 1;
        self.max = self.max.max(value);
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value below which a fraction `q` of the recorded ones lie (0 when empty).
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (index, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return bucket_value(index).min(self.max);
            }
        }
        self.max
    }

    pub fn clear(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.count = 0;
        self.max = 0;
    }
}

/// Deliveries counted across all subscribers during one phase.
#[derive(Default)]
pub struct Tally {
    pub phase: u8,
    pub received: u64,
    /// Deliveries of an earlier phase that arrived after it ended: not counted.
    pub late: u64,
    /// Deliveries a subscriber had already had, or that came after a later one.
    pub duplicates: u64,
    pub latency: Histogram,
}

impl Tally {
    /// Start a new phase.
    pub fn next_phase(&mut self, phase: u8) {
        self.phase = phase;
        self.received = 0;
        self.duplicates = 0;
        self.late = 0;
        self.latency.clear();
    }
}

/// One subscriber's view of the senders: the next sequence number expected from each.
pub struct Expect {
    next: Vec<u32>,
    phase: u8,
}

impl Expect {
    pub fn new(senders: usize) -> Expect {
        Expect { next: vec![0; senders], phase: 0 }
    }

    /// Count a delivery arriving at `now_ns`. Each phase's sequence numbers start at 0.
    pub fn deliver(&mut self, marker: Marker, now_ns: u64, tally: &mut Tally) {
        if marker.phase != tally.phase {
            tally.late += 1;
            return;
        }
        if self.phase != tally.phase {
            self.phase = tally.phase;
            self.next.iter_mut().for_each(|n| *n = 0);
        }
        let Some(next) = self.next.get_mut(marker.sender as usize) else {
            return;
        };
        if marker.seq < *next {
            tally.duplicates += 1;
            return;
        }
        *next = marker.seq + 1;
        tally.received += 1;
        tally.latency.record(now_ns.saturating_sub(marker.sent_ns));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_found_in_any_envelope() {
        let marker = Marker { phase: 3, sender: 258, seq: 0xdead_beef, sent_ns: 123_456_789_012 };
        let mut text = Vec::new();
        write_marker(&mut text, marker, 10);
        assert_eq!(text.len(), MARKER_LEN + 10);
        let text = String::from_utf8(text).unwrap();
        for envelope in [
            format!(r#"{{"message": "{text}"}}"#),
            format!(r#"42["chat","{text}"]"#),
            format!(r##"{{"type":"message","topic":"chat:lobby","id":"#x-1","author":"#b (guest)","text":"{text}"}}"##),
        ] {
            assert_eq!(find_marker(envelope.as_bytes()), Some(marker), "{envelope}");
        }
        assert_eq!(find_marker(br#"{"type":"ack","id":"r-1"}"#), None);
        assert_eq!(find_marker(b"#b0001"), None, "a marker cut short is not one");
    }

    #[test]
    fn histogram_quantiles_are_within_two_percent() {
        let mut h = Histogram::default();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        for (q, want) in [(0.5, 50_000_000.0), (0.99, 99_000_000.0), (0.999, 99_900_000.0)] {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.02, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.max(), 100_000_000);
        assert_eq!(h.quantile(1.0), 100_000_000);
        let mut small = Histogram::default();
        small.record(5);
        assert_eq!((small.quantile(0.5), small.quantile(0.99)), (5, 5));
        assert_eq!(Histogram::default().quantile(0.99), 0);
        for v in [127u64, 128, 129, 1 << 20, u64::MAX / 3] {
            let mid = bucket_value(bucket(v));
            assert!((mid as f64 - v as f64).abs() / (v as f64) < 0.016, "{v} -> {mid}");
        }
    }

    #[test]
    fn loss_duplicates_and_late_deliveries_are_counted_per_subscriber() {
        let mut tally = Tally::default();
        tally.next_phase(1);
        let mut a = Expect::new(2);
        let mut b = Expect::new(2);
        let m = |sender, seq, sent_ns| Marker { phase: 1, sender, seq, sent_ns };
        // a gets everything from sender 0; b misses seq 1 and gets seq 0 twice.
        for seq in 0..3 {
            a.deliver(m(0, seq, 1_000), 1_000 + 100 * (u64::from(seq) + 1), &mut tally);
        }
        b.deliver(m(0, 0, 1_000), 1_500, &mut tally);
        b.deliver(m(0, 0, 1_000), 1_600, &mut tally);
        b.deliver(m(0, 2, 1_000), 1_700, &mut tally);
        b.deliver(m(1, 0, 1_000), 1_050, &mut tally);
        // From the previous phase: ignored.
        a.deliver(Marker { phase: 0, sender: 0, seq: 9, sent_ns: 0 }, 5_000, &mut tally);
        assert_eq!((tally.received, tally.duplicates, tally.late), (6, 1, 1));
        // 3 messages from sender 0 and 1 from sender 1, to 2 subscribers: 8 expected, 6 came.
        let expected = 4 * 2;
        assert_eq!(expected - tally.received, 2);
        assert_eq!(tally.latency.max(), 700);
        // The median (200 ns) to within its bucket of the histogram.
        assert!((200..=202).contains(&tally.latency.quantile(0.5)), "{}", tally.latency.quantile(0.5));
        // A new phase starts every subscriber's sequence over.
        tally.next_phase(2);
        a.deliver(Marker { phase: 2, sender: 0, seq: 0, sent_ns: 0 }, 10, &mut tally);
        assert_eq!((tally.received, tally.duplicates), (1, 0));
    }
}
