//! The servers the generator speaks to, and how each one joins the room, publishes and
//! keeps a connection alive.
//!
//! - `switchboard-web`: Switchboard's `/ws` protocol as a guest: `subscribe` to
//!   `chat:lobby`, `publish` to it; deliveries are `message` frames (acks are ignored).
//! - `switchboard-seed` and `django`: the tutorial's `/ws/chat/`, `{"message": ...}` both ways.
//! - `socketio`: engine.io v4 over a WebSocket: the `0{...}` open packet, `40` to join
//!   the default namespace (the server puts every socket in its room), `42["chat",...]`
//!   both ways, and the server's ping `2` answered with `3`.

use std::io;
use std::net::{IpAddr, SocketAddr};

use clap::ValueEnum;

use super::measure::{write_marker, Marker};
use super::wire::{encode_frame, Conn, Read, OP_TEXT};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// Switchboard's `/ws` protocol (guest access).
    SwitchboardWeb,
    /// Switchboard's tutorial endpoint `/ws/chat/`.
    SwitchboardSeed,
    /// The tutorial's Django Channels app (`/ws/chat/`).
    Django,
    /// A Socket.IO 4 server (engine.io v4 over WebSocket).
    Socketio,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::SwitchboardWeb => "switchboard-web",
            Target::SwitchboardSeed => "switchboard-seed",
            Target::Django => "django",
            Target::Socketio => "socketio",
        }
    }

    fn path(self, index: usize) -> String {
        match self {
            // Each guest a name of its own, so that per-person limits count each apart.
            Target::SwitchboardWeb => format!("/ws?name=bench-{index}"),
            Target::SwitchboardSeed => format!("/ws/chat/?name=bench-{index}"),
            Target::Django => "/ws/chat/".to_owned(),
            Target::Socketio => "/socket.io/?EIO=4&transport=websocket".to_owned(),
        }
    }

    /// Connect and join the room; the connection is ready for deliveries when this returns.
    pub async fn join(self, server: SocketAddr, source: Option<IpAddr>, index: usize) -> io::Result<Conn> {
        let mut conn = Conn::open(server, source, &self.path(index)).await?;
        let scratch = std::cell::RefCell::new(vec![0u8; 4096]);
        // What must arrive before the connection counts as joined, and what to send first.
        let (first, ready): (Option<&[u8]>, &[u8]) = match self {
            Target::SwitchboardWeb => {
                (Some(br#"{"type":"subscribe","id":"join","topic":"chat:lobby"}"#), br#""type":"subscribed""#)
            }
            Target::Socketio => (None, b"40"),
            Target::SwitchboardSeed | Target::Django => return Ok(conn),
        };
        if let Some(frame) = first {
            conn.queue_text(frame);
            conn.flush().await?;
        }
        let mut opened = false;
        let mask = conn.mask();
        loop {
            let mut joined = false;
            let mut send_connect = false;
            let state = conn
                .read(
                    &scratch,
                    || 0,
                    |payload, _, out| match self {
                        Target::Socketio if payload.first() == Some(&b'0') && !opened => {
                            opened = true;
                            send_connect = true;
                        }
                        Target::Socketio => {
                            self.keep_alive(payload, out, mask);
                            joined |= payload.starts_with(ready);
                        }
                        _ => joined |= memchr::memmem::find(payload, ready).is_some(),
                    },
                )
                .await?;
            if send_connect {
                conn.queue_text(b"40");
            }
            if !conn.out.is_empty() {
                conn.flush().await?;
            }
            if joined {
                return Ok(conn);
            }
            if let Read::Closed(code) = state {
                return Err(io::Error::new(io::ErrorKind::ConnectionReset, format!("closed while joining ({code:?})")));
            }
        }
    }

    /// Queue one published message carrying `marker` (and `pad` filler bytes) on `conn`.
    /// `run` makes Switchboard's publish ids unique across runs against the same database.
    pub fn publish(self, conn: &mut Conn, text: &mut Vec<u8>, marker: Marker, pad: usize, run: u32) {
        let mask = conn.mask();
        self.publish_to(&mut conn.out, mask, text, marker, pad, run);
    }

    /// Append the frame of one published message to `out`; `text` is scratch space.
    fn publish_to(self, out: &mut Vec<u8>, mask: [u8; 4], text: &mut Vec<u8>, marker: Marker, pad: usize, run: u32) {
        text.clear();
        match self {
            Target::SwitchboardWeb => {
                text.extend_from_slice(b"{\"type\":\"publish\",\"id\":\"");
                text.extend_from_slice(
                    format!("{run:08x}-{:02x}-{:04x}-{:08x}", marker.phase, marker.sender, marker.seq).as_bytes(),
                );
                text.extend_from_slice(b"\",\"topic\":\"chat:lobby\",\"text\":\"");
                write_marker(text, marker, pad);
                text.extend_from_slice(b"\"}");
            }
            Target::SwitchboardSeed | Target::Django => {
                text.extend_from_slice(b"{\"message\":\"");
                write_marker(text, marker, pad);
                text.extend_from_slice(b"\"}");
            }
            Target::Socketio => {
                text.extend_from_slice(b"42[\"chat\",\"");
                write_marker(text, marker, pad);
                text.extend_from_slice(b"\"]");
            }
        }
        encode_frame(out, OP_TEXT, text, mask);
    }

    /// Answer the protocol's own keep-alive in a data frame (engine.io's ping `2`).
    pub fn keep_alive(self, payload: &[u8], out: &mut Vec<u8>, mask: [u8; 4]) {
        if self == Target::Socketio && payload == b"2" {
            encode_frame(out, OP_TEXT, b"3", mask);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::find_marker;
    use crate::wire::parse_frame;

    #[test]
    fn engine_io_pings_are_answered_and_nothing_else() {
        let mut out = Vec::new();
        Target::Socketio.keep_alive(b"2", &mut out, [0; 4]);
        let (frame, _) = parse_frame_unmasked(&out);
        assert_eq!(frame, b"3");
        let mut none = Vec::new();
        Target::Socketio.keep_alive(br#"42["chat","2"]"#, &mut none, [0; 4]);
        Target::Django.keep_alive(b"2", &mut none, [0; 4]);
        assert!(none.is_empty());
    }

    /// A client frame with a zero mask, read back by clearing its mask bit.
    fn parse_frame_unmasked(out: &[u8]) -> (Vec<u8>, usize) {
        let mut copy = out.to_vec();
        copy[1] &= 0x7F;
        copy.drain(2..6);
        let (frame, used) = parse_frame(&copy).unwrap().unwrap();
        (frame.payload.to_vec(), used)
    }

    #[test]
    fn publishes_carry_the_marker_in_each_targets_envelope() {
        let marker = Marker { phase: 1, sender: 2, seq: 3, sent_ns: 4 };
        for (target, starts) in [
            (Target::SwitchboardWeb, &br#"{"type":"publish","id":"0000002a-01-0002-00000003","#[..]),
            (Target::Django, br##"{"message":"#b"##),
            (Target::Socketio, br##"42["chat","#b"##),
        ] {
            let (mut text, mut out) = (Vec::new(), Vec::new());
            target.publish_to(&mut out, [0; 4], &mut text, marker, 5, 42);
            assert!(text.starts_with(starts), "{}", String::from_utf8_lossy(&text));
            assert_eq!(find_marker(&text), Some(marker));
            assert!(serde_json::from_slice::<serde_json::Value>(text.strip_prefix(b"42").unwrap_or(&text)).is_ok());
            let (payload, _) = parse_frame_unmasked(&out);
            assert_eq!(payload, text);
        }
    }
}
