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
//!
//! Under load, frames for one connection are also coalesced over a short window: an event
//! that comes less than the window after the socket's last write waits, and one flusher
//! writes every such socket once per window, all its waiting frames with one `writev`.
//! A connection that gets an event now and then has it written at once; one that gets
//! hundreds a second has them written a few at a time, with a few milliseconds' delay.
//!
//! Over HTTPS the same holds: after rustls' handshake, each connection's TLS state lives
//! beside its queue, under the same lock. Every frame is sealed into a record as it enters
//! the queue (or goes straight to the kernel), so the queue holds ciphertext in the order it
//! must be sent, and a publisher still writes a frame with one lock and one `send`.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{ready, Context, Poll, Waker};
use std::time::{Duration, Instant};

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use bytes::Bytes;
use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::hub::{Burst, Direct};

/// Chunks written with one `writev` at most.
const WRITEV_MAX: usize = 64;

/// The server's listener: TCP connections with `TCP_NODELAY`, as [`Socket`]s.
pub struct Listener {
    inner: TcpListener,
    flusher: Option<Arc<Flusher>>,
    /// With HTTPS: the handshakes under way send their connections here.
    tls: Option<Handshakes>,
    _stop: DropGuard,
}

struct Handshakes {
    acceptor: tokio_rustls::TlsAcceptor,
    done: mpsc::Sender<(Socket, SocketAddr)>,
    ready: mpsc::Receiver<(Socket, SocketAddr)>,
}

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl Listener {
    /// `window`: how long a busy connection's events may wait to be written together (zero:
    /// never). Starts the flusher, which stops with the listener.
    pub fn new(inner: TcpListener, window: Duration) -> Listener {
        let stop = CancellationToken::new();
        let flusher = (!window.is_zero()).then(|| {
            let flusher = Arc::new(Flusher { window, dirty: Mutex::new(Vec::new()), wake: Notify::new() });
            tokio::spawn(flush_loop(flusher.clone(), stop.clone()));
            flusher
        });
        Listener { inner, flusher, tls: None, _stop: stop.drop_guard() }
    }

    /// Speak TLS on every connection: each handshake runs in a task of its own, so a slow
    /// client holds up nobody else's.
    pub fn with_tls(mut self, config: Arc<rustls::ServerConfig>) -> Listener {
        let (done, ready) = mpsc::channel(256);
        self.tls = Some(Handshakes { acceptor: tokio_rustls::TlsAcceptor::from(config), done, ready });
        self
    }
}

/// Writes the sockets whose frames wait for their window to pass.
struct Flusher {
    window: Duration,
    dirty: Mutex<Vec<Socket>>,
    wake: Notify,
}

impl Flusher {
    fn add(&self, socket: Socket) {
        let mut dirty = self.dirty.lock().unwrap_or_else(PoisonError::into_inner);
        dirty.push(socket);
        if dirty.len() == 1 {
            self.wake.notify_one();
        }
    }
}

async fn flush_loop(flusher: Arc<Flusher>, stop: CancellationToken) {
    let mut sockets = Vec::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = flusher.wake.notified() => {}
        }
        // The first frame waiting came less than a window after its socket's last write.
        tokio::time::sleep(flusher.window).await;
        loop {
            std::mem::swap(&mut sockets, &mut *flusher.dirty.lock().unwrap_or_else(PoisonError::into_inner));
            if sockets.is_empty() {
                break;
            }
            let now = Instant::now();
            let mut dirty = sockets.drain(..).peekable();
            while let Some(socket) = dirty.next() {
                if let Some(next) = dirty.peek() {
                    super::hub::prefetch::<Shared>(&next.0);
                }
                socket.flush_waiting(now);
            }
            tokio::time::sleep(flusher.window).await;
        }
    }
}

impl axum::serve::Listener for Listener {
    type Io = Socket;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Socket, SocketAddr) {
        loop {
            let accepted = match &mut self.tls {
                None => self.inner.accept().await,
                Some(tls) => tokio::select! {
                    Some(ready) = tls.ready.recv() => return ready,
                    accepted = self.inner.accept() => accepted,
                },
            };
            match accepted {
                Ok((stream, addr)) => {
                    // Every frame goes out as soon as it is ready: with Nagle's algorithm a
                    // small frame waits for the peer's (delayed) acknowledgement, up to 40 ms.
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(%error, "TCP_NODELAY");
                    }
                    let Some(tls) = &self.tls else {
                        return (Socket::new(stream, self.flusher.clone(), None), addr);
                    };
                    let (acceptor, done, flusher) = (tls.acceptor.clone(), tls.done.clone(), self.flusher.clone());
                    tokio::spawn(async move {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                            Ok(Ok(secured)) => {
                                let (stream, session) = secured.into_inner();
                                let _ = done.send((Socket::new(stream, flusher, Some(Box::new(session))), addr)).await;
                            }
                            Ok(Err(error)) => tracing::debug!(%error, %addr, "TLS handshake failed"),
                            Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                        }
                    });
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
    flusher: Option<Arc<Flusher>>,
    /// Whether the connection speaks TLS (its state is in `out`).
    tls: bool,
    /// Itself, for the flusher's list and a publisher's burst: publishers reach a connection
    /// through its `Shared` (one pointer from the hub's `Peer`, no `Socket` boxed in between).
    me: Weak<Shared>,
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
    /// When a publisher's frame was last written to the socket.
    last_write: Option<Instant>,
    /// In the flusher's list.
    dirty: bool,
    /// In a publisher's [`Burst`]: it writes what waits when it finishes.
    in_burst: bool,
    /// Over HTTPS, the connection's TLS state: what enters `chunks` is sealed first.
    tls: Option<Box<rustls::ServerConnection>>,
    /// The TLS close_notify was queued.
    closing: bool,
}

impl Out {
    /// The bytes that carry `plain` on the wire: itself, or over HTTPS its sealed records.
    /// Every sealed record must be sent, in the order sealed.
    fn seal(&mut self, plain: &Bytes) -> io::Result<Bytes> {
        let Some(tls) = &mut self.tls else { return Ok(plain.clone()) };
        seal_slices(tls, &[IoSlice::new(plain)])
    }

    /// Queue what rustls has to send of its own (a handshake's end, an alert, a key update).
    fn queue_tls_output(&mut self) -> io::Result<()> {
        let Some(tls) = &mut self.tls else { return Ok(()) };
        if tls.wants_write() {
            let sealed = tls_output(tls, Vec::new())?;
            self.chunks.push_back(sealed);
        }
        Ok(())
    }

    /// Hand what waits to the connection task: it writes once the socket is writable.
    fn wake_drainer(&mut self) {
        if let Some(waker) = self.drainer.take() {
            waker.wake();
        }
    }
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket").field("peer", &self.stream.peer_addr().ok()).finish_non_exhaustive()
    }
}

/// Seal plaintext into TLS records.
fn seal_slices(tls: &mut rustls::ServerConnection, plain: &[IoSlice<'_>]) -> io::Result<Bytes> {
    let total: usize = plain.iter().map(|s| s.len()).sum();
    for slice in plain {
        io::Write::write_all(&mut tls.writer(), slice)?;
    }
    tls_output(tls, Vec::with_capacity(total + 64))
}

/// Everything rustls has to send, appended to `into`.
fn tls_output(tls: &mut rustls::ServerConnection, mut into: Vec<u8>) -> io::Result<Bytes> {
    while tls.wants_write() {
        tls.write_tls(&mut into)?;
    }
    Ok(Bytes::from(into))
}

/// Reads from the socket without waiting, for rustls.
struct Unblocked<'a>(&'a TcpStream);

impl io::Read for Unblocked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Socket {
    fn new(stream: TcpStream, flusher: Option<Arc<Flusher>>, tls: Option<Box<rustls::ServerConnection>>) -> Socket {
        let mut out = Out { tls, ..Out::default() };
        if let Some(tls) = &mut out.tls {
            // No limit on what rustls holds: whatever it seals is taken out at once.
            tls.set_buffer_limit(None);
        }
        // The handshake's last words (a TLS 1.3 server's session tickets) go out first.
        if out.queue_tls_output().is_err() {
            out.failed = true;
        }
        let tls = out.tls.is_some();
        Socket(Arc::new_cyclic(|me| Shared { stream, out: Mutex::new(out), flusher, tls, me: me.clone() }))
    }

    /// What the hub's publishers write into (see [`Direct::offer`]).
    pub fn direct(&self) -> Arc<dyn Direct> {
        self.0.clone()
    }

    /// The flusher's turn: write what waited for the window.
    fn flush_waiting(&self, now: Instant) {
        let mut out = self.out();
        out.dirty = false;
        if out.chunks.is_empty() || out.failed {
            return;
        }
        out.last_write = Some(now);
        match write_out(&self.0.stream, &mut out, Via::Kernel) {
            Ok(true) => {}
            // The socket is full, or failed: the connection task takes over.
            Ok(false) | Err(_) => {
                out.wake_drainer();
            }
        }
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

    /// The connection task's turn to write events publishers queued for it: `frames` (whole
    /// WebSocket frames, built once for every recipient) go behind what waits, and are all
    /// written once the socket takes them. Its own WebSocket writes are flushed before, so
    /// nothing of theirs waits in between.
    pub async fn write_frames<'a>(&self, frames: impl IntoIterator<Item = &'a Bytes>) -> io::Result<()> {
        {
            let mut out = self.out();
            for frame in frames {
                if out.failed {
                    break;
                }
                match out.seal(frame) {
                    Ok(sealed) => out.chunks.push_back(sealed),
                    Err(_) => out.failed = true,
                }
            }
        }
        std::future::poll_fn(|cx| self.poll_room(cx).map_ok(drop)).await
    }

    /// Whether bytes wait for the socket.
    #[cfg(test)]
    fn is_draining(&self) -> bool {
        !self.out().chunks.is_empty()
    }

    /// Write what waits once the socket takes it. Pending while nothing waits (woken when
    /// something does); ready once everything was written, or with the socket's error.
    pub fn poll_drain(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        {
            let mut out = self.out();
            if out.chunks.is_empty() && !out.failed {
                out.drainer = Some(cx.waker().clone());
                return Poll::Pending;
            }
        }
        self.poll_room(cx).map_ok(drop)
    }

    /// Drain what waits, then see whether `bufs` may be written now.
    fn poll_room(&self, cx: &mut Context<'_>) -> Poll<io::Result<MutexGuard<'_, Out>>> {
        loop {
            {
                let mut out = self.out();
                if out.failed {
                    return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
                }
                if out.chunks.is_empty() || write_out(&self.0.stream, &mut out, Via::Tokio)? {
                    return Poll::Ready(Ok(out));
                }
            }
            ready!(self.0.stream.poll_write_ready(cx))?;
        }
    }
}

/// How [`write_out`] reaches the socket.
#[derive(Clone, Copy)]
enum Via {
    /// Through tokio, which clears the socket's write readiness on `WouldBlock`: the way of
    /// the connection task, which then waits for that readiness.
    Tokio,
    /// Straight to the kernel: the way of a publisher or the flusher, who on `WouldBlock`
    /// hand the rest to the connection task rather than wait.
    Kernel,
}

/// Write the waiting chunks. `Ok(true)`: all written; `Ok(false)`: the socket is full.
fn write_out(stream: &TcpStream, out: &mut Out, via: Via) -> io::Result<bool> {
    while !out.chunks.is_empty() {
        let mut slices = [IoSlice::new(&[]); WRITEV_MAX];
        let mut count = 0;
        for (i, chunk) in out.chunks.iter().take(WRITEV_MAX).enumerate() {
            slices[i] = IoSlice::new(if i == 0 { &chunk[out.sent..] } else { chunk });
            count += 1;
        }
        let result = match via {
            Via::Tokio => stream.try_write_vectored(&slices[..count]),
            Via::Kernel => SockRef::from(stream).send_vectored(&slices[..count]),
        };
        match result {
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

impl Shared {
    /// Frames that wait (for the coalescing window, or for a burst to finish) but are enough
    /// to share one write already go out now: the queue's bound is for peers that do not
    /// read, not for busy ones.
    fn write_if_enough(&self, out: &mut Out) {
        if out.chunks.len() >= WRITEV_MAX.min(out.limit / 2).max(1) {
            out.last_write = Some(Instant::now());
            if !matches!(write_out(&self.stream, out, Via::Kernel), Ok(true)) {
                out.wake_drainer();
            }
        }
    }
}

impl Direct for Shared {
    fn offer(&self, frame: &Bytes, hold: bool, queue: &mut dyn FnMut() -> bool, burst: Option<&mut Burst>) -> bool {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
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
        // From here on the frame is sent or queued, so it may be sealed (in order).
        let sealed;
        let frame = if out.tls.is_some() {
            match out.seal(frame) {
                Ok(bytes) => {
                    sealed = bytes;
                    &sealed
                }
                Err(_) => {
                    out.failed = true;
                    return true;
                }
            }
        } else {
            frame
        };
        if let Some(burst) = burst {
            // Written with the burst's other frames for this connection when it finishes.
            out.chunks.push_back(frame.clone());
            if !out.in_burst {
                if let Some(me) = self.me.upgrade() {
                    out.in_burst = true;
                    burst.touch(me);
                }
            }
            self.write_if_enough(&mut out);
            return true;
        }
        if !out.chunks.is_empty() {
            // Behind what waits already: whoever writes that writes this too.
            out.chunks.push_back(frame.clone());
            if out.dirty {
                self.write_if_enough(&mut out);
            }
            return true;
        }
        let now = Instant::now();
        if let Some(flusher) = &self.flusher {
            if out.last_write.is_some_and(|last| now.saturating_duration_since(last) < flusher.window) {
                // Written less than a window ago: wait, and go out with whatever follows.
                out.chunks.push_back(frame.clone());
                if !out.dirty {
                    if let Some(me) = self.me.upgrade() {
                        out.dirty = true;
                        flusher.add(Socket(me));
                    }
                }
                return true;
            }
        }
        out.last_write = Some(now);
        // Straight to the kernel: the socket is non-blocking, and tokio's readiness for it
        // need not be read here (one cache miss per delivery less). A `WouldBlock` leaves
        // that readiness stale at worst, and the connection task's next write through tokio
        // clears it.
        match SockRef::from(&self.stream).send(frame) {
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
        out.wake_drainer();
        true
    }

    fn flush_burst(&self) {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        out.in_burst = false;
        // Written now even when the flusher has this connection in its list: it then finds
        // nothing left to write.
        if out.chunks.is_empty() || out.failed {
            return;
        }
        out.last_write = Some(Instant::now());
        if !matches!(write_out(&self.stream, &mut out, Via::Kernel), Ok(true)) {
            // The socket is full, or failed: the connection task takes over.
            out.wake_drainer();
        }
    }

    fn prefetch(&self) {
        super::hub::prefetch::<Shared>(self);
    }
}

impl Socket {
    /// Read over TLS: open what rustls holds, else feed it what the socket has.
    fn poll_read_tls(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            {
                let mut out = self.out();
                let Some(tls) = out.tls.as_mut() else { return Poll::Ready(Err(io::ErrorKind::Other.into())) };
                match io::Read::read(&mut tls.reader(), buf.initialize_unfilled()) {
                    Ok(n) => {
                        // 0: the peer said close_notify, the end of the stream.
                        buf.advance(n);
                        return Poll::Ready(Ok(()));
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    // The peer closed the connection without close_notify: an end all the same.
                    Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Poll::Ready(Ok(())),
                    Err(error) => return Poll::Ready(Err(error)),
                }
                match tls.read_tls(&mut Unblocked(&self.0.stream)) {
                    Ok(0) => return Poll::Ready(Ok(())),
                    Ok(_) => {
                        let opened = tls.process_new_packets().map(drop);
                        // Whatever rustls answers (an alert on failure, a key update) goes out.
                        if out.queue_tls_output().is_ok()
                            && !out.chunks.is_empty()
                            && !matches!(write_out(&self.0.stream, &mut out, Via::Tokio), Ok(true))
                        {
                            out.wake_drainer();
                        }
                        if let Err(error) = opened {
                            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, error)));
                        }
                        continue;
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    Err(error) => return Poll::Ready(Err(error)),
                }
            }
            ready!(self.0.stream.poll_read_ready(cx))?;
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.0.tls {
            return self.poll_read_tls(cx, buf);
        }
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
        if self.0.tls {
            // Sealed as a whole: what the socket does not take now waits in the queue, and
            // the next write or flush finishes it first.
            let mut out = ready!(self.poll_room(cx))?;
            let sealed = match out.tls.as_mut().map(|tls| seal_slices(tls, bufs)) {
                Some(Ok(sealed)) => sealed,
                _ => {
                    out.failed = true;
                    return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
                }
            };
            out.chunks.push_back(sealed);
            if write_out(&self.0.stream, &mut out, Via::Tokio).is_err() {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            return Poll::Ready(Ok(total));
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
        if self.0.tls {
            let mut out = self.out();
            if !std::mem::replace(&mut out.closing, true) {
                if let Some(tls) = out.tls.as_mut() {
                    tls.send_close_notify();
                }
                let _ = out.queue_tls_output();
            }
        }
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
        (Socket::new(server, None, None), client)
    }

    /// A socket that writes at once, attached with a bound of `limit` and released.
    async fn released(limit: usize) -> (Socket, TcpStream) {
        let (socket, client) = pair().await;
        socket.attach(limit);
        assert!(socket.release(|| true));
        (socket, client)
    }

    /// A socket from a listener that coalesces over `window`, attached (bound 8) and released.
    async fn coalescing(window: Duration) -> (Listener, Socket, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let mut server = Listener::new(listener, window);
        let (socket, _) = axum::serve::Listener::accept(&mut server).await;
        socket.attach(8);
        assert!(socket.release(|| true));
        (server, socket, client)
    }

    fn never() -> impl FnMut() -> bool {
        || panic!("queued while nothing holds")
    }

    #[tokio::test]
    async fn offers_queue_until_released_and_then_write_in_order() {
        let (socket, mut client) = pair().await;
        let mut queued = Vec::new();
        // Not attached yet ("a"), then attached but holding until released ("b"): both go
        // to the task.
        for frame in [b"a", b"b"] {
            let mut queue = || {
                queued.push(frame[0]);
                true
            };
            assert!(socket.0.offer(&Bytes::from_static(frame), false, &mut queue, None));
            socket.attach(8);
        }
        assert_eq!(queued, b"ab");
        assert!(!socket.release(|| false), "the task still has events");
        assert!(socket.release(|| true));
        let mut writer = socket.clone();
        writer.write_all(b"1").await.unwrap();
        assert!(socket.0.offer(&Bytes::from_static(b"2"), false, &mut never(), None));
        // A revocation makes the peer hold again.
        assert!(socket.0.offer(&Bytes::from_static(b"x"), true, &mut || true, None));
        assert!(socket.0.offer(&Bytes::from_static(b"y"), false, &mut || true, None));
        writer.write_all(b"3").await.unwrap();
        writer.flush().await.unwrap();
        let mut got = [0u8; 3];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"123");
    }

    #[tokio::test]
    async fn the_task_writes_queued_frames_behind_what_waits_and_its_own_writes() {
        let (socket, mut client) = pair().await;
        socket.attach(8);
        let mut writer = socket.clone();
        writer.write_all(b"1").await.unwrap();
        writer.flush().await.unwrap();
        let frames = [Bytes::from_static(b"2"), Bytes::from_static(b"34")];
        socket.write_frames(&frames).await.unwrap();
        assert!(!socket.is_draining(), "everything written when it returns");
        writer.write_all(b"5").await.unwrap();
        writer.flush().await.unwrap();
        let mut got = [0u8; 5];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"12345");
        // A socket that failed takes nothing more and says so.
        drop(client);
        let big = Bytes::from(vec![b'x'; 1 << 20]);
        let mut failed = false;
        for _ in 0..64 {
            if socket.write_frames([&big]).await.is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "writes to a closed peer fail");
        assert!(socket.write_frames([&big]).await.is_err());
        assert!(!socket.is_draining());
    }

    #[tokio::test]
    async fn frames_close_behind_a_write_wait_for_the_window_and_go_out_together() {
        let (_server, socket, mut client) = coalescing(Duration::from_millis(300)).await;
        let started = Instant::now();
        for frame in [&b"a"[..], b"b", b"c"] {
            assert!(socket.0.offer(&Bytes::copy_from_slice(frame), false, &mut never(), None));
        }
        let mut got = [0u8; 1];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"a", "the first is written at once");
        assert!(socket.is_draining(), "the others wait for the window");
        let mut rest = [0u8; 2];
        client.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"bc");
        assert!(started.elapsed() >= Duration::from_millis(250), "written after the window");
        // Quiet for longer than the window: the next one is written at once again.
        tokio::time::sleep(Duration::from_millis(350)).await;
        let sent = Instant::now();
        assert!(socket.0.offer(&Bytes::from_static(b"d"), false, &mut never(), None));
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"d");
        assert!(sent.elapsed() < Duration::from_millis(250));
    }

    #[tokio::test]
    async fn a_burst_writes_its_frames_together_when_it_finishes_not_after_the_window() {
        let (_server, socket, mut client) = coalescing(Duration::from_millis(300)).await;
        assert!(socket.0.offer(&Bytes::from_static(b"a"), false, &mut never(), None));
        let mut got = [0u8; 1];
        client.read_exact(&mut got).await.unwrap();
        // Written a moment ago, so one frame alone would now wait for the window.
        let started = Instant::now();
        let mut burst = Burst::default();
        for frame in [&b"b"[..], b"c"] {
            assert!(socket.0.offer(&Bytes::copy_from_slice(frame), false, &mut never(), Some(&mut burst)));
        }
        assert!(socket.is_draining(), "nothing goes out before the burst finishes");
        burst.finish();
        let mut rest = [0u8; 2];
        client.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"bc");
        assert!(started.elapsed() < Duration::from_millis(250), "not held for the window");
        assert!(!socket.is_draining());
        // A burst dropped without finishing still writes what it left waiting.
        {
            let mut burst = Burst::default();
            assert!(socket.0.offer(&Bytes::from_static(b"d"), false, &mut never(), Some(&mut burst)));
        }
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"d");
    }

    #[tokio::test]
    async fn a_burst_longer_than_the_bound_is_written_in_groups_not_refused() {
        let (socket, mut client) = released(4).await;
        let mut burst = Burst::default();
        for _ in 0..8 {
            assert!(socket.0.offer(&Bytes::from_static(b"x"), false, &mut never(), Some(&mut burst)));
        }
        burst.finish();
        let mut got = [0u8; 8];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"xxxxxxxx");
    }

    #[tokio::test]
    async fn a_busy_peer_that_reads_is_not_taken_for_a_slow_one() {
        let (_server, socket, mut client) = coalescing(Duration::from_secs(60)).await;
        // Far more than the bound within one window: they are written in groups, not refused.
        for _ in 0..100 {
            assert!(socket.0.offer(&Bytes::from_static(b"x"), false, &mut never(), None));
        }
        let mut got = vec![0u8; 97];
        client.read_exact(&mut got).await.unwrap();
        assert!(got.iter().all(|&b| b == b'x'));
    }

    #[tokio::test]
    async fn a_peer_that_stops_reading_fills_the_bound_and_frames_stay_whole() {
        let (socket, mut client) = released(4).await;
        let frame = Bytes::from(vec![7u8; 64 * 1024]);
        let mut accepted = 0;
        while socket.0.offer(&frame, false, &mut never(), None) {
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
