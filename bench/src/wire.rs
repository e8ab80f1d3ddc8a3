//! The generator's WebSocket client: the RFC 6455 upgrade and frames, read in place.
//!
//! A general client (tokio-tungstenite) allocates a message per frame and keeps a
//! read buffer per connection. Here every connection reads into one scratch buffer
//! shared by the whole (single-threaded) generator, frames are parsed where they lie
//! and only a partial frame at the end of a read is kept by its connection. Pings are
//! answered; everything else is handed to the caller as a byte slice.

use std::cell::RefCell;
use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::net::{TcpSocket, TcpStream};

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Frames from a server larger than this are refused (the generator's payloads are small).
const MAX_FRAME: usize = 16 << 20;

/// One frame as it lies in the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub fin: bool,
    pub opcode: u8,
    pub payload: &'a [u8],
}

/// Parse the frame at the start of `buf`: the frame and the bytes it takes, or `None` when
/// the buffer holds only part of it.
pub fn parse_frame(buf: &[u8]) -> io::Result<Option<(Frame<'_>, usize)>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let fin = buf[0] & 0x80 != 0;
    let opcode = buf[0] & 0x0F;
    if buf[1] & 0x80 != 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "a server sent a masked frame"));
    }
    let (len, header) = match buf[1] & 0x7F {
        126 if buf.len() < 4 => return Ok(None),
        126 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() < 10 => return Ok(None),
        127 => {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&buf[2..10]);
            (usize::try_from(u64::from_be_bytes(bytes)).unwrap_or(usize::MAX), 10)
        }
        short => (short as usize, 2),
    };
    if len > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "a frame over 16 MiB"));
    }
    if buf.len() < header + len {
        return Ok(None);
    }
    Ok(Some((Frame { fin, opcode, payload: &buf[header..header + len] }, header + len)))
}

/// Append one client frame (final, masked with `mask`) to `out`.
pub fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= u16::MAX as usize {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
}

/// The upgrade request. The key is fixed: the generator does not check the server's
/// accept hash (it talks to servers on this machine), so it needs no randomness.
pub fn upgrade_request(host: &str, path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// Where the upgrade response's header ends, once it has all arrived; an error unless it is
/// `101 Switching Protocols`.
pub fn upgrade_response(buf: &[u8]) -> io::Result<Option<usize>> {
    let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
        if buf.len() > 16 * 1024 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "an upgrade response header over 16 KiB"));
        }
        return Ok(None);
    };
    let status_line = buf[..end].split(|&b| b == b'\r').next().unwrap_or_default();
    if status_line.split(|&b| b == b' ').nth(1) != Some(b"101") {
        let line = String::from_utf8_lossy(status_line).into_owned();
        return Err(io::Error::new(io::ErrorKind::ConnectionRefused, format!("upgrade refused: {line}")));
    }
    Ok(Some(end + 4))
}

/// What one read brought.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// Frames (possibly none, possibly part of one) arrived; the connection goes on.
    Open,
    /// The server closed, with the close code if it gave one.
    Closed(Option<u16>),
}

/// One client connection.
pub struct Conn {
    stream: TcpStream,
    /// The start of a frame whose end has not arrived yet.
    pending: Vec<u8>,
    /// Bytes to write at the next flush: pongs and the caller's frames.
    pub out: Vec<u8>,
    mask: [u8; 4],
    /// Set once the server's close frame has been read.
    closed: Option<Option<u16>>,
}

/// `IP_BIND_ADDRESS_NO_PORT` (Linux 4.2): a bind to port 0 leaves the port to `connect`.
fn no_port_at_bind(socket: &TcpSocket) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        const IP_BIND_ADDRESS_NO_PORT: libc::c_int = 24;
        let on: libc::c_int = 1;
        // SAFETY: a valid socket and a pointer to an int that outlives the call.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                IP_BIND_ADDRESS_NO_PORT,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = socket;
}

impl Conn {
    /// Connect from `source` (a loopback address of its own lets one machine open more
    /// connections than one address has ports) and upgrade on `path`.
    pub async fn open(server: SocketAddr, source: Option<IpAddr>, path: &str) -> io::Result<Conn> {
        let socket = TcpSocket::new_v4()?;
        if let Some(ip) = source {
            // The port is chosen at connect, per destination, rather than at bind, unique
            // among every socket bound to the address: with tens of thousands bound, the
            // bind's search for a free port is slow, and the range runs out.
            no_port_at_bind(&socket);
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let stream = socket.connect(server).await?;
        stream.set_nodelay(true)?;
        let seed = (server.port() as u32) ^ (stream.local_addr()?.port() as u32).rotate_left(16) ^ 0x5bd1_e995;
        let mut conn = Conn { stream, pending: Vec::new(), out: Vec::new(), mask: seed.to_le_bytes(), closed: None };
        conn.out = upgrade_request(&server.to_string(), path);
        conn.flush().await?;
        loop {
            conn.stream.readable().await?;
            let mut chunk = [0u8; 2048];
            match conn.stream.try_read(&mut chunk) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed during the upgrade")),
                Ok(n) => {
                    conn.pending.extend_from_slice(&chunk[..n]);
                    if let Some(end) = upgrade_response(&conn.pending)? {
                        conn.pending.drain(..end);
                        return Ok(conn);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Queue a text frame for the next flush.
    pub fn queue_text(&mut self, payload: &[u8]) {
        encode_frame(&mut self.out, OP_TEXT, payload, self.mask);
    }

    /// The connection's mask, for callers that encode frames themselves.
    pub fn mask(&self) -> [u8; 4] {
        self.mask
    }

    /// Write everything queued.
    pub async fn flush(&mut self) -> io::Result<()> {
        let mut written = 0;
        while written < self.out.len() {
            match self.stream.try_write(&self.out[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.stream.writable().await?,
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        Ok(())
    }

    /// Wait for bytes, then hand every complete data frame's payload to `on_data`, with the
    /// time `clock` gave once for the whole read. Pings are answered (queued in `out`).
    /// Cancel-safe: nothing is consumed before the socket is readable.
    pub async fn read<C, F>(&mut self, scratch: &RefCell<Vec<u8>>, clock: C, mut on_data: F) -> io::Result<Read>
    where
        C: Fn() -> u64,
        F: FnMut(&[u8], u64, &mut Vec<u8>),
    {
        if let Some(code) = self.closed {
            return Ok(Read::Closed(code));
        }
        // Bytes that came with the upgrade response are parsed before waiting for more.
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            let now = clock();
            let used = self.parse(&pending, now, &mut on_data)?;
            self.pending = pending;
            self.pending.drain(..used);
            if let Some(code) = self.closed {
                return Ok(Read::Closed(code));
            }
            // What was handed over may need an answer before the server sends more.
            if used > 0 {
                return Ok(Read::Open);
            }
        }
        loop {
            self.stream.readable().await?;
            let mut scratch = scratch.borrow_mut();
            match self.stream.try_read(&mut scratch) {
                Ok(0) => return Ok(Read::Closed(None)),
                Ok(n) => {
                    let now = clock();
                    if self.pending.is_empty() {
                        let used = self.parse(&scratch[..n], now, &mut on_data)?;
                        self.pending.extend_from_slice(&scratch[used..n]);
                    } else {
                        self.pending.extend_from_slice(&scratch[..n]);
                        let pending = std::mem::take(&mut self.pending);
                        let used = self.parse(&pending, now, &mut on_data)?;
                        self.pending = pending;
                        self.pending.drain(..used);
                    }
                    return Ok(match self.closed {
                        Some(code) => Read::Closed(code),
                        None => Read::Open,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Parse the complete frames at the start of `buf`; the bytes they take.
    fn parse<F>(&mut self, buf: &[u8], now: u64, on_data: &mut F) -> io::Result<usize>
    where
        F: FnMut(&[u8], u64, &mut Vec<u8>),
    {
        let mut at = 0;
        while let Some((frame, used)) = parse_frame(&buf[at..])? {
            at += used;
            match frame.opcode {
                OP_TEXT | OP_BINARY | OP_CONTINUATION => on_data(frame.payload, now, &mut self.out),
                OP_PING => encode_frame(&mut self.out, OP_PONG, frame.payload, self.mask),
                OP_CLOSE => {
                    let code =
                        (frame.payload.len() >= 2).then(|| u16::from_be_bytes([frame.payload[0], frame.payload[1]]));
                    self.closed = Some(code);
                    return Ok(at);
                }
                _ => {}
            }
        }
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse_in_place_and_wait_for_their_end() {
        let mut buf = vec![0x81, 5];
        buf.extend_from_slice(b"hello");
        buf.extend_from_slice(&[0x89, 0]);
        let (frame, used) = parse_frame(&buf).unwrap().unwrap();
        assert_eq!((frame.fin, frame.opcode, frame.payload, used), (true, OP_TEXT, &b"hello"[..], 7));
        let (ping, _) = parse_frame(&buf[used..]).unwrap().unwrap();
        assert_eq!(ping.opcode, OP_PING);
        assert!(parse_frame(&buf[..6]).unwrap().is_none(), "a frame cut short waits for the rest");
        let mut long = vec![0x81, 126, 0x01, 0x00];
        long.extend(std::iter::repeat_n(b'x', 256));
        assert_eq!(parse_frame(&long).unwrap().unwrap().0.payload.len(), 256);
        assert!(parse_frame(&long[..3]).unwrap().is_none());
        assert!(parse_frame(&[0x81, 0x85, 1, 2, 3, 4, 0]).is_err(), "servers do not mask");
    }

    #[test]
    fn client_frames_are_masked_and_round_trip() {
        let mut out = Vec::new();
        let payload = vec![b'a'; 300];
        encode_frame(&mut out, OP_TEXT, &payload, [1, 2, 3, 4]);
        assert_eq!(&out[..4], &[0x81, 0x80 | 126, 0x01, 0x2C]);
        let mask = [out[4], out[5], out[6], out[7]];
        let unmasked: Vec<u8> = out[8..].iter().enumerate().map(|(i, b)| b ^ mask[i & 3]).collect();
        assert_eq!(unmasked, payload);
    }

    #[test]
    fn the_upgrade_needs_101_and_its_whole_header() {
        assert_eq!(upgrade_response(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n").unwrap(), None);
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x01x";
        assert_eq!(upgrade_response(ok).unwrap(), Some(ok.len() - 3));
        assert!(upgrade_response(b"HTTP/1.1 401 Unauthorized\r\n\r\n").is_err());
    }
}
