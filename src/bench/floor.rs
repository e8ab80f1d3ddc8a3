//! The send floor: what this machine's kernel charges for one delivery when nothing else is
//! done. One thread, pinned to the server's core, writes a frame to each of N loopback
//! connections with one blocking `send` apiece, as any server must, and a reader pinned to the
//! generator's core drains them, polling without sleeping (so that no wake-up is paid for
//! it). No WebSocket, no runtime, no queue: a server can get close to these figures, not
//! below them. They put the fan-out figures of the same run in proportion.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::measure::Histogram;

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

pub fn measure(
    connections: usize,
    bytes: usize,
    rounds: usize,
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
    let reader = std::thread::spawn(move || {
        pin(reader_cpu);
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0;
        let deadline = Instant::now() + Duration::from_secs(120);
        while got < want && Instant::now() < deadline {
            for stream in readers.iter_mut() {
                if let Ok(n) = stream.read(&mut buf) {
                    got += n;
                }
            }
        }
        got
    });
    pin(sender_cpu);
    let frame = vec![b'x'; bytes];
    let mut walls = Histogram::default();
    let start = thread_cpu();
    for _ in 0..rounds {
        let t = Instant::now();
        for stream in writers.iter_mut() {
            stream.write_all(&frame)?;
        }
        walls.record(t.elapsed().as_nanos() as u64);
        // Let the reader empty the buffers: every round starts as a new message would.
        std::thread::sleep(Duration::from_millis(20));
    }
    let cpu = thread_cpu().saturating_sub(start);
    let got = reader.join().unwrap_or(0);
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
        let floor = measure(8, 100, 3, 0, 0).expect("a run on loopback");
        assert_eq!((floor.connections, floor.bytes, floor.rounds), (8, 100, 3));
        assert!(floor.cpu_us_per_send > 0.0 && floor.cpu_us_per_send < 10_000.0, "{}", floor.cpu_us_per_send);
        assert!(floor.round_p50_ms > 0.0 && floor.round_p99_ms >= floor.round_p50_ms);
    }
}
