//! Accepted TCP connections, with an output queue that the hub can write into directly.
//!
//! Until a connection is upgraded to a WebSocket, a [`Socket`] is a plain TCP stream for
//! hyper. Once the gateway [attaches](Socket::attach) it, every write goes through one
//! ordered queue of whole frames: the WebSocket library's own writes (replies, pongs, the
//! close frame) and, while the connection task is idle, events that a publisher writes
//! itself ([`Direct::offer`]). An event then costs its publisher one lock and one `send`,
//! with no task woken, no channel and no re-encoding. Whatever the socket does not take
//! at once waits in the queue, bounded, and the connection task writes it when the
//! socket is writable again.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::hub::Direct;

/// Chunks written with one `writev` at most.
const WRITEV_MAX: usize = 64;

/// The server's listener: TCP connections with `TCP_NODELAY`, as [`Socket`]s.
pub struct Listener {
    inner: TcpListener,
}

impl Listener {
    pub fn new(inner: TcpListener) -> Listener {
        Listener { inner }
    }
}

impl axum::serve::Listener for Listener {
    type Io = Socket;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Socket, SocketAddr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    // Every frame goes out as soon as it is ready: with Nagle's algorithm a
                    // small frame waits for the peer's (delayed) acknowledgement, up to 40 ms.
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(%error, "TCP_NODELAY");
                    }
                    return (Socket::new(stream), addr);
                }
                // The peer gave up before we took it: nothing to do.
                Err(error) if is_connection_error(&error) => {}
                // Out of file descriptors, most often: wait for some to close.
                Err(error) => {
                    tracing::error!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// What a request knows of its connection: the peer's address, and the socket itself for
/// an upgrade. Handlers get it as `ConnectInfo<Client>`.
#[derive(Clone, Debug)]
pub struct Client {
    pub addr: SocketAddr,
    pub socket: Socket,
}

impl Connected<IncomingStream<'_, Listener>> for Client {
    fn connect_info(stream: IncomingStream<'_, Listener>) -> Client {
        Client { addr: *stream.remote_addr(), socket: stream.io().clone() }
    }
}

/// One accepted connection. Clones share it.
#[derive(Clone)]
pub struct Socket(Arc<Shared>);

struct Shared {
    stream: TcpStream,
    out: Mutex<Out>,
}

#[derive(Default)]
struct Out {
    /// Attached by the gateway: writes are whole frames, queued in order.
    attached: bool,
    /// Publishers must leave events to the connection task (it is answering a request,
    /// replaying history, or has events of its own queued).
    hold: bool,
    /// Bytes waiting for the socket, in order; the first is partly written (`sent`).
    chunks: VecDeque<Bytes>,
    sent: usize,
    /// How many chunks may wait before a publisher is refused (the slow-consumer bound).
    limit: usize,
    /// The socket failed: nothing more is written.
    failed: bool,
    /// The connection task, waiting for something to drain.
    drainer: Option<Waker>,
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket").field("peer", &self.0.stream.peer_addr().ok()).finish_non_exhaustive()
    }
}

impl Socket {
    fn new(stream: TcpStream) -> Socket {
        Socket(Arc::new(Shared { stream, out: Mutex::new(Out::default()) }))
    }

    fn out(&self) -> MutexGuard<'_, Out> {
        self.0.out.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Turn on frame-wise writing, holding events back until [`Socket::release`]. At most
    /// `limit` chunks may wait for the socket.
    pub fn attach(&self, limit: usize) {
        let mut out = self.out();
        out.attached = true;
        out.hold = true;
        out.limit = limit.max(1);
    }

    /// Hold publishers' events back: they go to the connection task's queue.
    pub fn hold(&self) {
        self.out().hold = true;
    }

    /// Let publishers write again, if `queue_empty` says, under the same lock they take,
    /// that nothing they queued is left. False: the task has events to write first.
    pub fn release(&self, queue_empty: impl FnOnce() -> bool) -> bool {
        let mut out = self.out();
        if queue_empty() {
            out.hold = false;
            true
        } else {
            false
        }
    }

    /// Whether bytes wait for the socket.
    pub fn is_draining(&self) -> bool {
        !self.out().chunks.is_empty()
    }

    /// Write what waits once the socket takes it. Pending while nothing waits (woken when
    /// something does); ready once everything was written.
    pub fn poll_drain(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            {
                let mut out = self.out();
                if out.chunks.is_empty() {
                    out.drainer = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                if write_out(&self.0.stream, &mut out)? {
                    return Poll::Ready(Ok(()));
                }
            }
            ready!(self.0.stream.poll_write_ready(cx))?;
        }
    }

    /// Drain what waits, then see whether `bufs` may be written now.
    fn poll_room(&self, cx: &mut Context<'_>) -> Poll<io::Result<MutexGuard<'_, Out>>> {
        loop {
            {
                let mut out = self.out();
                if out.failed {
                    return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
                }
                if out.chunks.is_empty() || write_out(&self.0.stream, &mut out)? {
                    return Poll::Ready(Ok(out));
                }
            }
            ready!(self.0.stream.poll_write_ready(cx))?;
        }
    }
}

/// Write the waiting chunks. `Ok(true)`: all written; `Ok(false)`: the socket is full.
fn write_out(stream: &TcpStream, out: &mut Out) -> io::Result<bool> {
    while !out.chunks.is_empty() {
        let mut slices = [IoSlice::new(&[]); WRITEV_MAX];
        let mut count = 0;
        for (i, chunk) in out.chunks.iter().take(WRITEV_MAX).enumerate() {
            slices[i] = IoSlice::new(if i == 0 { &chunk[out.sent..] } else { chunk });
            count += 1;
        }
        match stream.try_write_vectored(&slices[..count]) {
            Ok(written) => consume(out, written),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(error) => {
                out.failed = true;
                out.chunks.clear();
                return Err(error);
            }
        }
    }
    Ok(true)
}

/// Drop `written` bytes from the front of the queue.
fn consume(out: &mut Out, mut written: usize) {
    while written > 0 {
        let Some(first) = out.chunks.front() else { return };
        let left = first.len() - out.sent;
        if written < left {
            out.sent += written;
            return;
        }
        written -= left;
        out.sent = 0;
        out.chunks.pop_front();
    }
}

impl Direct for Socket {
    fn offer(&self, frame: &Bytes, hold: bool, queue: &mut dyn FnMut() -> bool) -> bool {
        let mut out = self.out();
        if out.failed {
            // The connection is going away; its task will see why.
            return true;
        }
        if out.hold || hold || !out.attached {
            out.hold = out.attached;
            return queue();
        }
        if out.chunks.len() >= out.limit {
            return false;
        }
        let was_empty = out.chunks.is_empty();
        if was_empty {
            match self.0.stream.try_write(frame) {
                Ok(written) if written == frame.len() => return true,
                Ok(written) => {
                    out.chunks.push_back(frame.clone());
                    out.sent = written;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => out.chunks.push_back(frame.clone()),
                Err(_) => {
                    out.failed = true;
                    return true;
                }
            }
            // The rest waits for the socket: the connection task writes it.
            if let Some(waker) = out.drainer.take() {
                waker.wake();
            }
        } else {
            out.chunks.push_back(frame.clone());
        }
        true
    }
}

impl AsyncRead for Socket {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.stream.poll_read_ready(cx))?;
            match self.0.stream.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        loop {
            let mut out = ready!(self.poll_room(cx))?;
            match self.0.stream.try_write_vectored(bufs) {
                // Before the upgrade, a short write is the caller's to finish, as on any stream.
                Ok(written) if written == total || !out.attached => return Poll::Ready(Ok(written)),
                // After it, frames are whole: what the socket did not take waits, so that no
                // publisher's frame can land inside this one.
                Ok(written) => {
                    let mut skip = written;
                    for buf in bufs {
                        if skip >= buf.len() {
                            skip -= buf.len();
                            continue;
                        }
                        out.chunks.push_back(Bytes::copy_from_slice(&buf[skip..]));
                        skip = 0;
                    }
                    return Poll::Ready(Ok(total));
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => {
                    out.failed = true;
                    return Poll::Ready(Err(error));
                }
            }
            drop(out);
            ready!(self.0.stream.poll_write_ready(cx))?;
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_room(cx).map_ok(drop)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        // Half-close: the peer reads the end of the stream; the socket closes with its last clone.
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.0.stream);
        // SAFETY: `fd` is this socket's open descriptor, kept alive by `self`.
        unsafe { libc::shutdown(fd, libc::SHUT_WR) };
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair() -> (Socket, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Socket::new(server), client)
    }

    fn never() -> impl FnMut() -> bool {
        || panic!("queued while nothing holds")
    }

    #[tokio::test]
    async fn offers_queue_until_released_and_then_write_in_order() {
        let (socket, mut client) = pair().await;
        let mut queued = Vec::new();
        // Not attached yet: everything goes to the task.
        assert!(socket.offer(&Bytes::from_static(b"a"), false, &mut || {
            queued.push('a');
            true
        }));
        socket.attach(8);
        assert!(socket.offer(&Bytes::from_static(b"b"), false, &mut || {
            queued.push('b');
            true
        }));
        assert_eq!(queued, ['a', 'b']);
        assert!(!socket.release(|| false), "the task still has events");
        assert!(socket.release(|| true));
        let mut writer = socket.clone();
        writer.write_all(b"1").await.unwrap();
        assert!(socket.offer(&Bytes::from_static(b"2"), false, &mut never()));
        // A revocation makes the peer hold again.
        assert!(socket.offer(&Bytes::from_static(b"x"), true, &mut || true));
        assert!(socket.offer(&Bytes::from_static(b"y"), false, &mut || true));
        writer.write_all(b"3").await.unwrap();
        writer.flush().await.unwrap();
        let mut got = [0u8; 3];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"123");
    }

    #[tokio::test]
    async fn a_peer_that_stops_reading_fills_the_bound_and_frames_stay_whole() {
        let (socket, mut client) = pair().await;
        socket.attach(4);
        assert!(socket.release(|| true));
        let frame = Bytes::from(vec![7u8; 64 * 1024]);
        let mut accepted = 0;
        while socket.offer(&frame, false, &mut never()) {
            accepted += 1;
            assert!(accepted < 10_000, "the bound never refused");
        }
        assert!(socket.is_draining());
        // The task's own write waits behind the queue, and goes out whole. (One task: a socket's
        // write readiness wakes one waiter, and in the server only the connection task waits.)
        let mut writer = socket.clone();
        let tail = tokio::spawn(async move {
            writer.write_all(b"END").await.unwrap();
            writer.flush().await.unwrap();
        });
        let mut got = Vec::new();
        let want = accepted * frame.len() + 3;
        let mut buf = vec![0u8; 1 << 16];
        while got.len() < want {
            let n = client.read(&mut buf).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        tail.await.unwrap();
        assert!(got[..accepted * frame.len()].iter().all(|&b| b == 7));
        assert_eq!(&got[accepted * frame.len()..], b"END");
    }
}
