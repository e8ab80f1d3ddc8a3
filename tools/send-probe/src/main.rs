//! `switchboard-send-probe [ROUNDS] [CONNECTIONS] [GAP_MS]`: one thread pinned to CPU 0 writes
//! a 180-byte frame to each of N loopback connections per round, rounds GAP_MS (20) apart; a reader pinned
//! to CPU 1 drains them. Prints the sender thread's CPU per frame and the wall time of a
//! round for each way of sending, alternated so that the machine's drift touches all alike.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use io_uring::{opcode, types, IoUring};

const FRAME: usize = 180;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Way {
    /// One `send()` per socket; the reader polls every socket without sleeping.
    Send,
    /// One `send()` per socket; the reader sleeps in `epoll_wait` until a socket has data.
    SendToSleeper,
    /// One io_uring submission of N `send`s per round; the reader spins.
    Ring,
}

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the call only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn cpu(clock: libc::clockid_t) -> Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid timespec to write into.
    unsafe { libc::clock_gettime(clock, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// This thread's CPU time.
fn thread_cpu() -> Duration {
    cpu(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// The whole process's: with io_uring, work the kernel hands to its worker threads
/// (`iou-wrk`) counts here and not in the submitting thread's time.
fn process_cpu() -> Duration {
    cpu(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn spin_reader(mut readers: Vec<TcpStream>, want: usize) -> usize {
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
}

fn epoll_reader(mut readers: Vec<TcpStream>, want: usize) -> io::Result<usize> {
    // SAFETY: plain epoll calls on descriptors this function owns; the event buffer outlives them.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if epoll < 0 {
        return Err(io::Error::last_os_error());
    }
    for (i, stream) in readers.iter().enumerate() {
        let mut event = libc::epoll_event { events: (libc::EPOLLIN | libc::EPOLLET) as u32, u64: i as u64 };
        if unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, stream.as_raw_fd(), &mut event) } < 0 {
            let error = io::Error::last_os_error();
            unsafe { libc::close(epoll) };
            return Err(error);
        }
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < want {
        let ready = unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), events.len() as i32, 5_000) };
        if ready <= 0 {
            break;
        }
        for event in &events[..ready as usize] {
            let stream = &mut readers[event.u64 as usize];
            while let Ok(n @ 1..) = stream.read(&mut buf) {
                got += n;
            }
        }
    }
    unsafe { libc::close(epoll) };
    Ok(got)
}

struct Figures {
    /// The process's CPU but the reader's, per send.
    cpu_us_per_send: f64,
    /// The sending thread's alone.
    thread_us_per_send: f64,
    round_p50_ms: f64,
    round_p99_ms: f64,
}

fn measure(way: Way, connections: usize, rounds: usize, gap: Duration) -> io::Result<Figures> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut readers = Vec::with_capacity(connections);
    let mut writers = Vec::with_capacity(connections);
    for _ in 0..connections {
        let reader = TcpStream::connect(addr)?;
        reader.set_nonblocking(true)?;
        readers.push(reader);
        let (writer, _) = listener.accept()?;
        writer.set_nodelay(true)?;
        writers.push(writer);
    }
    let want = connections * FRAME * rounds;
    let reader = std::thread::spawn(move || {
        pin(1);
        let start = thread_cpu();
        let got = if way == Way::SendToSleeper { epoll_reader(readers, want) } else { Ok(spin_reader(readers, want)) };
        got.map(|got| (got, thread_cpu().saturating_sub(start)))
    });
    pin(0);
    let frame = [b'x'; FRAME];
    let mut ring: IoUring = IoUring::builder().setup_single_issuer().build(connections.next_power_of_two() as u32)?;
    let mut walls = Vec::with_capacity(rounds);
    let start = thread_cpu();
    let process_start = process_cpu();
    for _ in 0..rounds {
        let t = Instant::now();
        match way {
            Way::Send | Way::SendToSleeper => {
                for writer in writers.iter_mut() {
                    writer.write_all(&frame)?;
                }
            }
            Way::Ring => {
                {
                    let mut queue = ring.submission();
                    for (i, writer) in writers.iter().enumerate() {
                        let send = opcode::Send::new(types::Fd(writer.as_raw_fd()), frame.as_ptr(), FRAME as u32)
                            .flags(libc::MSG_DONTWAIT)
                            .build()
                            .user_data(i as u64);
                        // SAFETY: `frame` and the sockets outlive the submission: the round
                        // waits for every completion below.
                        unsafe { queue.push(&send) }.map_err(|_| io::Error::other("the ring is full"))?;
                    }
                }
                ring.submit_and_wait(connections)?;
                for done in ring.completion() {
                    if done.result() != FRAME as i32 {
                        return Err(io::Error::other(format!("a ring send returned {}", done.result())));
                    }
                }
            }
        }
        walls.push(t.elapsed());
        std::thread::sleep(gap);
    }
    let sender_cpu = thread_cpu().saturating_sub(start);
    let (got, reader_cpu) = reader.join().map_err(|_| io::Error::other("the reader panicked"))??;
    // Everything but the reader: the sender and any kernel worker acting for it.
    let cpu = process_cpu().saturating_sub(process_start).saturating_sub(reader_cpu);
    if got != want {
        return Err(io::Error::other(format!("the reader got {got} of {want} bytes")));
    }
    walls.sort();
    let per_send = |d: Duration| d.as_secs_f64() * 1e6 / (connections * rounds) as f64;
    Ok(Figures {
        cpu_us_per_send: per_send(cpu),
        thread_us_per_send: per_send(sender_cpu),
        round_p50_ms: walls[walls.len() / 2].as_secs_f64() * 1e3,
        round_p99_ms: walls[walls.len() * 99 / 100].as_secs_f64() * 1e3,
    })
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(150).max(1);
    let connections: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000).max(1);
    let gap = Duration::from_millis(args.next().and_then(|a| a.parse().ok()).unwrap_or(20));
    let ways = [Way::Send, Way::SendToSleeper, Way::Ring];
    let mut totals = [0.0; 3];
    for pass in 1..=3 {
        for (i, way) in ways.iter().enumerate() {
            let f = measure(*way, connections, rounds, gap)?;
            totals[i] += f.cpu_us_per_send;
            println!(
                "pass {pass} {way:?}: {:.2} µs CPU per send ({:.2} in the sending thread), round p50 {:.2} ms, p99 {:.2} ms",
                f.cpu_us_per_send, f.thread_us_per_send, f.round_p50_ms, f.round_p99_ms
            );
        }
    }
    for (i, way) in ways.iter().enumerate() {
        println!("{way:?}: {:.2} µs per send on average, {:.2}× Send", totals[i] / 3.0, totals[i] / totals[0]);
    }
    Ok(())
}
