//! The send floor: what this machine's kernel charges for one delivery when nothing else is
//! done. One thread, pinned to the server's core, writes a frame to each of N loopback
//! connections with one blocking `send` apiece, as any server must, and a reader pinned to the
//! generator's core drains them. No WebSocket, no runtime, no queue: a server can get close to
//! these figures, not below them. They put the fan-out figures of the same run in proportion.
//!
//! With `Sender::Ring` a round is one io_uring submission of N sends instead of N `send()`
//! calls: what a server that batched its writes that way would pay (docs/benchmarks.md).
//!
//! Two readers: one that polls without sleeping, so that no wake-up is paid for it (the
//! least a `send` costs); and one that sleeps in `epoll_wait` until a socket has data, as the
//! generator and any client do. Over loopback the sleeper's wake-up runs on the sender's
//! core, so the second is the floor a server measured against the generator can reach.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::measure::Histogram;

/// How the reader waits for data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reader {
    /// Polls every socket in turn, never sleeping.
    Spinning,
    /// Sleeps in `epoll_wait` until a socket is readable.
    Sleeping,
}

/// How a round's frames are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    /// One blocking `send()` per connection.
    Send,
    /// One io_uring submission of every connection's send, waited for together.
    Ring,
}

pub struct Floor {
    pub connections: usize,
    pub bytes: usize,
    pub rounds: usize,
    /// Thread CPU time (as the scheduler counts it, the receiver's TCP work on loopback
    /// included) per `send`.
    pub cpu_us_per_send: f64,
    /// Wall time of one round of N sends.
    pub round_p50_ms: f64,
    pub round_p99_ms: f64,
}

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the call only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn thread_cpu() -> Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn spin(mut readers: Vec<TcpStream>, want: usize, deadline: Instant) -> usize {
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < want && Instant::now() < deadline {
        for stream in readers.iter_mut() {
            if let Ok(n) = stream.read(&mut buf) {
                got += n;
            }
        }
    }
    got
}

fn sleep_in_epoll(mut readers: Vec<TcpStream>, want: usize, deadline: Instant) -> std::io::Result<usize> {
    // SAFETY: epoll calls on a descriptor this function creates and closes, with sockets it
    // owns throughout, and an event buffer that outlives every call.
    unsafe {
        let epoll = libc::epoll_create1(libc::EPOLL_CLOEXEC);
        if epoll < 0 {
            return Err(std::io::Error::last_os_error());
        }
        for (i, stream) in readers.iter().enumerate() {
            let mut event = libc::epoll_event { events: (libc::EPOLLIN | libc::EPOLLET) as u32, u64: i as u64 };
            if libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, stream.as_raw_fd(), &mut event) < 0 {
                let error = std::io::Error::last_os_error();
                libc::close(epoll);
                return Err(error);
            }
        }
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0;
        while got < want {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            // Edge-triggered: each ready socket is read until it is empty.
            let timeout = left.as_millis().clamp(1, i32::MAX as u128) as i32;
            let ready = libc::epoll_wait(epoll, events.as_mut_ptr(), events.len() as i32, timeout);
            if ready < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            if ready < 0 {
                let error = std::io::Error::last_os_error();
                libc::close(epoll);
                return Err(error);
            }
            for event in &events[..ready as usize] {
                let stream = &mut readers[event.u64 as usize];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    got += n;
                }
            }
        }
        libc::close(epoll);
        Ok(got)
    }
}

/// Connections' sends per io_uring submission at most.
#[cfg(target_os = "linux")]
const RING_BATCH: usize = 4096;

/// Writes one round with io_uring: every connection's send submitted at once, in batches of
/// at most [`RING_BATCH`], each waited for whole.
#[cfg(target_os = "linux")]
fn ring_round(ring: &mut io_uring::IoUring, writers: &[TcpStream], frame: &[u8]) -> std::io::Result<()> {
    use io_uring::{opcode, types};
    for batch in writers.chunks(RING_BATCH) {
        {
            let mut queue = ring.submission();
            for stream in batch {
                // Not waiting for room: a round's frame always fits after the gap.
                let send = opcode::Send::new(types::Fd(stream.as_raw_fd()), frame.as_ptr(), frame.len() as u32)
                    .flags(libc::MSG_DONTWAIT)
                    .build();
                // SAFETY: `frame` and the sockets outlive the submission: it is waited for
                // whole below, before this function returns.
                unsafe { queue.push(&send) }.map_err(|_| std::io::Error::other("the ring is full"))?;
            }
        }
        ring.submit_and_wait(batch.len())?;
        for done in ring.completion() {
            if done.result() != frame.len() as i32 {
                return Err(std::io::Error::other(format!("a ring send returned {}", done.result())));
            }
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn ring_round(_: &mut (), _: &[TcpStream], _: &[u8]) -> std::io::Result<()> {
    Err(std::io::Error::other("io_uring is Linux only"))
}

/// Rounds of one send to each connection, `gap` apart, written by `sender` and read by
/// `reader`.
#[allow(clippy::too_many_arguments)]
pub fn measure(
    connections: usize,
    bytes: usize,
    rounds: usize,
    gap: Duration,
    sender: Sender,
    reader: Reader,
    sender_cpu: usize,
    reader_cpu: usize,
) -> std::io::Result<Floor> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut readers = Vec::with_capacity(connections);
    let mut writers = Vec::with_capacity(connections);
    for _ in 0..connections {
        readers.push(TcpStream::connect(addr)?);
        let (stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        writers.push(stream);
    }
    for reader in &readers {
        reader.set_nonblocking(true)?;
    }
    let want = connections * bytes * rounds;
    // Time for every round and its gap, and a minute to spare.
    let deadline = Instant::now() + gap.saturating_mul(rounds as u32) + Duration::from_secs(60);
    let drain = std::thread::spawn(move || {
        pin(reader_cpu);
        match reader {
            Reader::Spinning => Ok(spin(readers, want, deadline)),
            Reader::Sleeping => sleep_in_epoll(readers, want, deadline),
        }
    });
    pin(sender_cpu);
    let frame = vec![b'x'; bytes];
    #[cfg(target_os = "linux")]
    let mut ring = io_uring::IoUring::builder()
        .setup_single_issuer()
        .build(connections.clamp(1, RING_BATCH).next_power_of_two() as u32)?;
    #[cfg(not(target_os = "linux"))]
    let mut ring = ();
    let mut walls = Histogram::default();
    let start = thread_cpu();
    for _ in 0..rounds {
        let t = Instant::now();
        match sender {
            Sender::Send => {
                for stream in writers.iter_mut() {
                    stream.write_all(&frame)?;
                }
            }
            Sender::Ring => ring_round(&mut ring, &writers, &frame)?,
        }
        walls.record(t.elapsed().as_nanos() as u64);
        // Let the reader empty the buffers: every round starts as a new message would.
        std::thread::sleep(gap);
    }
    let cpu = thread_cpu().saturating_sub(start);
    let got = drain.join().unwrap_or(Ok(0))?;
    if got < want {
        return Err(std::io::Error::other(format!("the reader got {got} of {want} bytes")));
    }
    Ok(Floor {
        connections,
        bytes,
        rounds,
        cpu_us_per_send: cpu.as_secs_f64() * 1e6 / (connections * rounds) as f64,
        round_p50_ms: walls.quantile(0.5) as f64 / 1e6,
        round_p99_ms: walls.quantile(0.99) as f64 / 1e6,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_sent_is_read_and_the_costs_are_counted() {
        for (sender, reader) in
            [(Sender::Send, Reader::Spinning), (Sender::Send, Reader::Sleeping), (Sender::Ring, Reader::Spinning)]
        {
            let floor = measure(8, 100, 3, Duration::from_millis(5), sender, reader, 0, 0).expect("a run on loopback");
            assert_eq!((floor.connections, floor.bytes, floor.rounds), (8, 100, 3));
            assert!(floor.cpu_us_per_send > 0.0 && floor.cpu_us_per_send < 10_000.0, "{}", floor.cpu_us_per_send);
            assert!(floor.round_p50_ms > 0.0 && floor.round_p99_ms >= floor.round_p50_ms);
        }
    }
}
