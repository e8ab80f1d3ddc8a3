//! The y-protocols messages (sync and awareness) as Yjs's y-websocket sends them, encoded and
//! decoded by hand: a few variable-length integers and byte strings. Shared by the server and
//! the page, and small enough that neither needs more than this to speak them.
//!
//! A message is `varuint(kind)` then its content: sync (0) is `varuint(step)` and a byte
//! string (step 1: a state vector; step 2 and update: an update); awareness (1) is a byte
//! string holding `varuint(n)` entries of `varuint(client) varuint(clock) string(json)`;
//! a query for awareness (3) has no content. Auth (2) is not spoken.

/// A y-protocols message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum YMessage {
    /// What I have (a state vector): send me what I lack.
    SyncStep1(Vec<u8>),
    /// What you lacked (an update), in answer to step 1.
    SyncStep2(Vec<u8>),
    /// An edit (an update).
    Update(Vec<u8>),
    /// Awareness entries (an awareness update).
    Awareness(Vec<u8>),
    /// Send me everyone's awareness.
    QueryAwareness,
}

/// One client's awareness: its state (JSON; `null` once it left) at its clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwarenessEntry {
    pub client: u64,
    pub clock: u64,
    pub state: String,
}

/// The longest awareness update read: a few carets, not a document.
pub const MAX_AWARENESS_BYTES: usize = 16 << 10;

fn write_uint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_uint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn uint(&mut self) -> Option<u64> {
        let mut n: u64 = 0;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.0.split_first()?;
            self.0 = rest;
            n |= u64::from(byte & 0x7f).checked_shl(shift)?;
            if byte < 0x80 {
                return Some(n);
            }
        }
        None
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.uint()?).ok()?;
        if len > self.0.len() {
            return None;
        }
        let (bytes, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(bytes)
    }
}

impl YMessage {
    /// Read a message; `None` if it is not a whole sync, awareness or awareness-query message.
    pub fn decode(bytes: &[u8]) -> Option<YMessage> {
        let mut reader = Reader(bytes);
        let message = match reader.uint()? {
            0 => {
                let step = reader.uint()?;
                let payload = reader.bytes()?.to_vec();
                match step {
                    0 => YMessage::SyncStep1(payload),
                    1 => YMessage::SyncStep2(payload),
                    2 => YMessage::Update(payload),
                    _ => return None,
                }
            }
            1 => YMessage::Awareness(reader.bytes()?.to_vec()),
            3 => YMessage::QueryAwareness,
            _ => return None,
        };
        reader.0.is_empty().then_some(message)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            YMessage::SyncStep1(payload) | YMessage::SyncStep2(payload) | YMessage::Update(payload) => {
                let step = match self {
                    YMessage::SyncStep1(_) => 0,
                    YMessage::SyncStep2(_) => 1,
                    _ => 2,
                };
                out.reserve(payload.len() + 8);
                write_uint(&mut out, 0);
                write_uint(&mut out, step);
                write_bytes(&mut out, payload);
            }
            YMessage::Awareness(update) => {
                write_uint(&mut out, 1);
                write_bytes(&mut out, update);
            }
            YMessage::QueryAwareness => write_uint(&mut out, 3),
        }
        out
    }
}

/// Read an awareness update's entries; `None` if it is not one, or too long.
pub fn decode_awareness(update: &[u8]) -> Option<Vec<AwarenessEntry>> {
    if update.len() > MAX_AWARENESS_BYTES {
        return None;
    }
    let mut reader = Reader(update);
    let count = reader.uint()?;
    let mut entries = Vec::new();
    for _ in 0..count {
        let client = reader.uint()?;
        let clock = reader.uint()?;
        let state = std::str::from_utf8(reader.bytes()?).ok()?.to_owned();
        entries.push(AwarenessEntry { client, clock, state });
    }
    reader.0.is_empty().then_some(entries)
}

pub fn encode_awareness(entries: &[AwarenessEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    write_uint(&mut out, entries.len() as u64);
    for entry in entries {
        write_uint(&mut out, entry.client);
        write_uint(&mut out, entry.clock);
        write_bytes(&mut out, entry.state.as_bytes());
    }
    out
}

/// An update that holds nothing: no structs, no deletions (what a sync step 2 from a client
/// that has nothing new carries).
pub fn is_empty_update(update: &[u8]) -> bool {
    update == [0, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_match_yjs_bytes() {
        // What y-protocols writes for an empty state vector's step 1, and a query.
        assert_eq!(YMessage::SyncStep1(vec![0]).encode(), [0, 0, 1, 0]);
        assert_eq!(YMessage::QueryAwareness.encode(), [3]);
        let long = vec![7u8; 300];
        for message in [
            YMessage::SyncStep1(vec![1, 2]),
            YMessage::SyncStep2(long.clone()),
            YMessage::Update(vec![0, 0]),
            YMessage::Awareness(long),
            YMessage::QueryAwareness,
        ] {
            assert_eq!(YMessage::decode(&message.encode()), Some(message));
        }
        // A length past the end, trailing bytes, an unknown kind or step, auth: refused.
        for bad in [&[0u8, 2, 5, 1][..], &[0, 0, 1, 0, 9], &[9], &[0, 3, 0], &[2, 0, 0], &[], &[0x80]] {
            assert_eq!(YMessage::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn awareness_entries_round_trip() {
        let entries = vec![
            AwarenessEntry { client: 3_000_000_000, clock: 7, state: r#"{"user":{"name":"ann"}}"#.into() },
            AwarenessEntry { client: 1, clock: 0, state: "null".into() },
        ];
        assert_eq!(decode_awareness(&encode_awareness(&entries)), Some(entries));
        assert_eq!(decode_awareness(&[1, 1]), None);
        assert_eq!(decode_awareness(&vec![0; MAX_AWARENESS_BYTES + 1]), None);
    }
}
