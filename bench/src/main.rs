//! `switchboard-bench`: the load generator behind `make bench` (see `docs/benchmarks.md`).
//!
//! One process, one thread: a current-thread tokio runtime, one task per connection, and
//! one clock for every send and receive time, so a message's latency is exact. Run it
//! pinned to a core of its own (`taskset -c 1`), the server pinned to another. Workloads:
//!
//! - `fanout`: N subscribers in one room, S of them also senders, R messages/s in all:
//!   deliveries/s, loss, latency, the server's and the generator's CPU per delivery.
//! - `ramp`: fan-out at rising rates until p99 passes a bound, a delivery is lost, or the
//!   generator itself runs out of CPU; which one stopped it is reported.
//! - `idle`: C connections held: the server's resident memory per connection; then one
//!   message to all of them and the time until the last one has it.
//! - `connect`: connections opened (and joined) per second.

mod floor;
mod measure;
mod process;
mod target;
mod wire;

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use tokio::sync::Semaphore;

use measure::{find_marker, Expect, Marker, Tally, MARKER_LEN};
use target::Target;
use wire::Read;

#[derive(Parser, Debug)]
#[command(name = "switchboard-bench", about = "Load generator for Switchboard and its baselines.")]
struct Cli {
    /// The server's protocol.
    #[arg(long, value_enum)]
    target: Target,
    /// The server's address; several, separated by commas (the nodes of a cluster): readers
    /// are spread over them in turn.
    #[arg(long, default_value = "127.0.0.1:3000", value_delimiter = ',')]
    addr: Vec<SocketAddr>,
    /// Where senders connect, when not to `--addr` (a cluster: publish on one node, read on
    /// another).
    #[arg(long)]
    sender_addr: Option<SocketAddr>,
    /// The server's process id: its CPU time and memory are read from /proc. Several,
    /// separated by commas (a cluster's nodes, PostgreSQL, Redis): their sums.
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// Time messages by the wall clock, from this many nanoseconds since the Unix epoch, so
    /// that generators in several processes measure one broadcast together.
    #[arg(long)]
    wall_epoch_ns: Option<u64>,
    /// Print one JSON object per result on stdout (the table is made from these).
    #[arg(long)]
    json: bool,
    /// Loopback source addresses to spread connections over (127.0.0.1, .2, ...): each has
    /// its own range of ports. 0: one per 20,000 connections.
    #[arg(long, default_value_t = 0)]
    sources: u8,
    /// The first source address's last byte (127.0.0.N): generators running at once take
    /// addresses of their own.
    #[arg(long, default_value_t = 1)]
    first_source: u8,
    /// Connection handshakes in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Bytes of text per message (at least the 32-byte marker).
    #[arg(long, default_value_t = 64)]
    payload: usize,
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Subcommand, Debug, Clone)]
enum Workload {
    /// N subscribers, S senders among them, R messages per second in all.
    Fanout {
        #[arg(long, default_value_t = 100)]
        subscribers: usize,
        #[arg(long, default_value_t = 1)]
        senders: usize,
        /// Messages per second, all senders together; each reaches every subscriber.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Seconds measured.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// Seconds at the same rate before measuring.
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        /// Extra subscribers that join and then never read: the server must bound what it
        /// keeps for them while the others are served.
        #[arg(long, default_value_t = 0)]
        stalled: usize,
    },
    /// Fan-out at rising rates until p99 passes the bound, a delivery is lost, or the
    /// generator saturates.
    Ramp {
        #[arg(long, default_value_t = 100)]
        subscribers: usize,
        #[arg(long, default_value_t = 4)]
        senders: usize,
        /// Deliveries per second of the first step.
        #[arg(long, default_value_t = 5000.0)]
        start: f64,
        /// Each step's rate over the one before.
        #[arg(long, default_value_t = 1.25)]
        factor: f64,
        /// Seconds per step.
        #[arg(long, default_value_t = 3.0)]
        step: f64,
        #[arg(long, default_value_t = 100.0)]
        p99_ms: f64,
        #[arg(long, default_value_t = 40)]
        max_steps: u32,
    },
    /// C connections held: server memory per connection, then one broadcast to all.
    Idle {
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// Seconds to wait after the last connection before reading the server's memory.
        #[arg(long, default_value_t = 3.0)]
        settle: f64,
        /// Seconds the broadcast may take at most (0: no broadcast).
        #[arg(long, default_value_t = 30.0)]
        broadcast_timeout: f64,
        /// Send nothing: another generator process broadcasts (with the same
        /// `--wall-epoch-ns`); wait for it up to `--broadcast-timeout` seconds.
        #[arg(long)]
        listen_only: bool,
        /// Write the number of connections held to this file once they are open.
        #[arg(long)]
        ready_file: Option<std::path::PathBuf>,
    },
    /// Connections opened and joined per second.
    Connect {
        #[arg(long, default_value_t = 2000)]
        connections: usize,
    },
    /// No server: the least one delivery costs on this machine, one `send` of a frame to each
    /// of N loopback connections from a thread pinned to the server's core (`--target` and
    /// `--addr` are not used).
    SendFloor {
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// Bytes per frame (a chat message frame of the fan-out runs is about 180).
        #[arg(long, default_value_t = 180)]
        bytes: usize,
        #[arg(long, default_value_t = 200)]
        rounds: usize,
        /// Milliseconds between rounds (one round is one message's fan-out).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        gap_ms: u64,
        /// The reader sleeps in epoll until a socket has data, as the generator does, instead
        /// of polling without sleeping.
        #[arg(long)]
        sleeping_reader: bool,
        /// Write each round with one io_uring submission instead of a `send()` per connection
        /// (Linux).
        #[arg(long)]
        ring: bool,
        #[arg(long, default_value_t = 0)]
        sender_cpu: usize,
        #[arg(long, default_value_t = 1)]
        reader_cpu: usize,
    },
}

/// What the senders do now; read by each at every tick.
#[derive(Clone, Copy, Default)]
struct Plan {
    phase: u8,
    sending: bool,
    /// Messages per second per sender.
    rate: f64,
    start_ns: u64,
    /// The most messages per sender in this phase.
    limit: u32,
}

/// Everything the connection tasks share (one thread, so cells, not locks).
struct Shared {
    target: Target,
    addrs: Vec<SocketAddr>,
    sender_addr: Option<SocketAddr>,
    wall_epoch_ns: Option<u64>,
    sources: u8,
    first_source: u8,
    senders: usize,
    pad: usize,
    run: u32,
    epoch: Instant,
    plan: Cell<Plan>,
    sent: RefCell<Vec<u32>>,
    tally: RefCell<Tally>,
    scratch: RefCell<Vec<u8>>,
    joined: Cell<usize>,
    failed: Cell<usize>,
    closed: Cell<usize>,
    first_error: RefCell<Option<String>>,
    close_codes: RefCell<Vec<u16>>,
    handshakes: Semaphore,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        match self.wall_epoch_ns {
            Some(epoch) => {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                (now.as_nanos() as u64).saturating_sub(epoch)
            }
            None => self.epoch.elapsed().as_nanos() as u64,
        }
    }

    /// The address connection `index` in `role` connects to.
    fn addr(&self, index: usize, role: Role) -> SocketAddr {
        match (role, self.sender_addr) {
            (Role::Sender(_), Some(addr)) => addr,
            _ => self.addrs[index % self.addrs.len()],
        }
    }

    fn source(&self, index: usize) -> Option<IpAddr> {
        let first = self.first_source.max(1) as usize;
        (self.sources > 1 || first > 1).then(|| {
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, (first + index % self.sources.max(1) as usize).min(254) as u8))
        })
    }

    fn note_error(&self, error: String) {
        self.first_error.borrow_mut().get_or_insert(error);
    }
}

/// A connection's part: a reader, a sender as well, or joined and then never reading.
#[derive(Clone, Copy, PartialEq)]
enum Role {
    Reader,
    Sender(u16),
    Stalled,
}

async fn connection(shared: Rc<Shared>, index: usize, role: Role) {
    let joining = async {
        let _permit = shared.handshakes.acquire().await;
        shared.target.join(shared.addr(index, role), shared.source(index), index).await
    };
    let mut conn = match joining.await {
        Ok(conn) => conn,
        Err(error) => {
            shared.failed.set(shared.failed.get() + 1);
            shared.note_error(format!("connection {index}: {error}"));
            return;
        }
    };
    shared.joined.set(shared.joined.get() + 1);
    if role == Role::Stalled {
        // Hold the socket, read nothing: the server's writes fill the kernel's buffers.
        std::future::pending::<()>().await;
    }
    let target = shared.target;
    let mask = conn.mask();
    let mut expect = Expect::new(shared.senders);
    let mut text = Vec::with_capacity(256);
    let mut ticker = match role {
        Role::Sender(_) => {
            let mut t = tokio::time::interval(Duration::from_millis(1));
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            Some(t)
        }
        _ => None,
    };
    loop {
        let read = {
            let reading = conn.read(
                &shared.scratch,
                || shared.now_ns(),
                |payload, now, out| {
                    target.keep_alive(payload, out, mask);
                    if let Some(marker) = find_marker(payload) {
                        expect.deliver(marker, now, &mut shared.tally.borrow_mut());
                    }
                },
            );
            match ticker.as_mut() {
                Some(ticker) => tokio::select! {
                    read = reading => Some(read),
                    _ = ticker.tick() => None,
                },
                None => Some(reading.await),
            }
        };
        match read {
            Some(Ok(Read::Open)) => {}
            Some(Ok(Read::Closed(code))) => {
                shared.closed.set(shared.closed.get() + 1);
                if let Some(code) = code {
                    shared.close_codes.borrow_mut().push(code);
                }
                return;
            }
            Some(Err(error)) => {
                shared.closed.set(shared.closed.get() + 1);
                shared.note_error(format!("connection {index}: {error}"));
                return;
            }
            None => {
                if let Role::Sender(sender) = role {
                    publish_due(&shared, &mut conn, &mut text, sender);
                }
            }
        }
        if !conn.out.is_empty() {
            if let Err(error) = conn.flush().await {
                shared.closed.set(shared.closed.get() + 1);
                shared.note_error(format!("connection {index}: {error}"));
                return;
            }
        }
    }
}

/// Queue the messages this sender owes by now.
fn publish_due(shared: &Shared, conn: &mut wire::Conn, text: &mut Vec<u8>, sender: u16) {
    let plan = shared.plan.get();
    if !plan.sending {
        return;
    }
    let now = shared.now_ns();
    let due = ((now.saturating_sub(plan.start_ns) as f64) * plan.rate / 1e9) as u64;
    let due = due.min(u64::from(plan.limit)) as u32;
    let mut sent = shared.sent.borrow_mut();
    let Some(count) = sent.get_mut(sender as usize) else { return };
    while *count < due {
        let marker = Marker { phase: plan.phase, sender, seq: *count, sent_ns: now };
        shared.target.publish(conn, text, marker, shared.pad, shared.run);
        *count += 1;
    }
}

/// One measured phase of fan-out.
#[derive(Debug, Clone, Default)]
struct PhaseResult {
    seconds: f64,
    sent: u64,
    expected: u64,
    received: u64,
    duplicates: u64,
    p50_ms: f64,
    p99_ms: f64,
    /// One delivery in a thousand waits longer: where a stall that hits one batch in a few
    /// hundred (a checkpoint, say) shows before it reaches the p99.
    p999_ms: f64,
    max_ms: f64,
    server_cpu: Option<Duration>,
    generator_cpu: Duration,
    /// From the phase's start to the last delivery (or the end of the wait for it).
    wall: Duration,
}

impl PhaseResult {
    fn offered_per_s(&self) -> f64 {
        self.expected as f64 / self.seconds
    }
    fn delivered_per_s(&self) -> f64 {
        self.received as f64 / self.seconds
    }
    fn loss(&self) -> f64 {
        if self.expected == 0 {
            return 0.0;
        }
        self.expected.saturating_sub(self.received) as f64 / self.expected as f64
    }
    /// None when nothing was delivered: then there is no cost per delivery to speak of.
    fn server_us_per_delivery(&self) -> Option<f64> {
        let received = (self.received > 0).then_some(self.received as f64)?;
        self.server_cpu.map(|cpu| cpu.as_secs_f64() * 1e6 / received)
    }
    fn server_cores(&self) -> Option<f64> {
        self.server_cpu.map(|cpu| cpu.as_secs_f64() / self.wall.as_secs_f64())
    }
    fn generator_us_per_delivery(&self) -> f64 {
        self.generator_cpu.as_secs_f64() * 1e6 / self.received.max(1) as f64
    }
    fn generator_cores(&self) -> f64 {
        self.generator_cpu.as_secs_f64() / self.wall.as_secs_f64()
    }
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "offered_per_s": self.offered_per_s(),
            "delivered_per_s": self.delivered_per_s(),
            "sent": self.sent,
            "expected": self.expected,
            "received": self.received,
            "duplicates": self.duplicates,
            "loss": self.loss(),
            "p50_ms": (self.received > 0).then_some(self.p50_ms),
            "p99_ms": (self.received > 0).then_some(self.p99_ms),
            "p999_ms": (self.received > 0).then_some(self.p999_ms),
            "max_ms": (self.received > 0).then_some(self.max_ms),
            "server_us_per_delivery": self.server_us_per_delivery(),
            "server_cores": self.server_cores(),
            "generator_us_per_delivery": self.generator_us_per_delivery(),
            "generator_cores": self.generator_cores(),
        })
    }
    fn line(&self) -> String {
        let opt = |v: Option<f64>, digits: usize| v.map_or("-".to_owned(), |v| format!("{v:.digits$}"));
        format!(
            "offered {:.0}/s delivered {:.0}/s loss {:.3}% p50 {:.2} ms p99 {:.2} ms p99.9 {:.2} ms max {:.2} ms | server {} µs/delivery ({} cores) | generator {:.2} µs/delivery ({:.2} cores)",
            self.offered_per_s(),
            self.delivered_per_s(),
            self.loss() * 100.0,
            self.p50_ms,
            self.p99_ms,
            self.p999_ms,
            self.max_ms,
            opt(self.server_us_per_delivery(), 2),
            opt(self.server_cores(), 2),
            self.generator_us_per_delivery(),
            self.generator_cores(),
        )
    }
}

struct Bench {
    shared: Rc<Shared>,
    server_pids: Vec<u32>,
    json: bool,
    concurrency: usize,
}

impl Bench {
    fn server_cpu(&self) -> Option<Duration> {
        self.sum(process::cpu_time)
    }

    fn server_rss(&self) -> Option<u64> {
        self.sum(process::rss_bytes)
    }

    /// `read` summed over the server's processes; `None` without any, or if one is gone.
    fn sum<T: std::iter::Sum>(&self, read: impl Fn(u32) -> std::io::Result<T>) -> Option<T> {
        if self.server_pids.is_empty() {
            return None;
        }
        self.server_pids.iter().map(|&pid| read(pid).ok()).sum()
    }

    /// Open `count` connections (numbered from `first`) and wait until each has joined or failed.
    async fn open(&self, first: usize, count: usize, role: impl Fn(usize) -> Role) -> Duration {
        let started = Instant::now();
        let before = self.shared.joined.get() + self.shared.failed.get();
        for index in first..first + count {
            tokio::task::spawn_local(connection(self.shared.clone(), index, role(index)));
            // Let handshakes start as they are spawned, so the count in flight stays bounded.
            if index % self.concurrency == 0 {
                tokio::task::yield_now().await;
            }
        }
        while self.shared.joined.get() + self.shared.failed.get() < before + count {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        started.elapsed()
    }

    /// Run one phase: send for `seconds`, then wait (up to `drain`) for the deliveries.
    async fn phase(&self, phase: u8, rate: f64, seconds: f64, drain: Duration, subscribers: u64) -> PhaseResult {
        let shared = &self.shared;
        shared.tally.borrow_mut().next_phase(phase);
        shared.sent.borrow_mut().iter_mut().for_each(|s| *s = 0);
        let cpu0 = self.server_cpu();
        let own0 = process::own_cpu_time();
        let t0 = Instant::now();
        shared.plan.set(Plan {
            phase,
            sending: true,
            rate: rate / shared.senders as f64,
            start_ns: shared.now_ns(),
            limit: u32::MAX,
        });
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
        let mut plan = shared.plan.get();
        plan.sending = false;
        shared.plan.set(plan);
        let sent: u64 = shared.sent.borrow().iter().map(|&s| u64::from(s)).sum();
        let expected = sent * subscribers;
        let deadline = Instant::now() + drain;
        while shared.tally.borrow().received < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let wall = t0.elapsed();
        let generator_cpu = process::own_cpu_time().saturating_sub(own0);
        let server_cpu = cpu0.zip(self.server_cpu()).map(|(a, b)| b.saturating_sub(a));
        let tally = shared.tally.borrow();
        let ms = |ns: u64| ns as f64 / 1e6;
        PhaseResult {
            seconds,
            sent,
            expected,
            received: tally.received,
            duplicates: tally.duplicates,
            p50_ms: ms(tally.latency.quantile(0.50)),
            p99_ms: ms(tally.latency.quantile(0.99)),
            p999_ms: ms(tally.latency.quantile(0.999)),
            max_ms: ms(tally.latency.max()),
            server_cpu,
            generator_cpu,
            wall,
        }
    }

    fn report(&self, name: &str, text: String, mut json: serde_json::Value) {
        let shared = &self.shared;
        if let Some(object) = json.as_object_mut() {
            object.insert("workload".into(), name.into());
            object.insert("target".into(), shared.target.name().into());
            object.insert("connections_failed".into(), shared.failed.get().into());
            object.insert("connections_closed".into(), shared.closed.get().into());
            object.insert("first_error".into(), shared.first_error.borrow().clone().into());
        }
        if self.json {
            println!("{json}");
        } else {
            println!("{} {name}: {text}", shared.target.name());
            if shared.failed.get() + shared.closed.get() > 0 {
                let codes = shared.close_codes.borrow();
                println!(
                    "  connections failed {}, closed by the server {} (codes {:?}); first error: {}",
                    shared.failed.get(),
                    shared.closed.get(),
                    &codes[..codes.len().min(5)],
                    shared.first_error.borrow().as_deref().unwrap_or("-"),
                );
            }
        }
    }

    fn need_joined(&self, wanted: usize) -> Result<(), String> {
        let joined = self.shared.joined.get();
        if joined < wanted {
            let error = self.shared.first_error.borrow().clone().unwrap_or_default();
            return Err(format!("only {joined} of {wanted} connections joined: {error}"));
        }
        Ok(())
    }

    async fn fanout(
        &self,
        n: usize,
        senders: usize,
        rate: f64,
        seconds: f64,
        warmup: f64,
        stalled: usize,
    ) -> Result<(), String> {
        self.open(0, n, |i| if i < senders { Role::Sender(i as u16) } else { Role::Reader }).await;
        self.need_joined(n)?;
        let rss0 = self.server_rss();
        if stalled > 0 {
            self.open(n, stalled, |_| Role::Stalled).await;
        }
        // The tutorial's endpoints have no join reply: give the server a moment to subscribe.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let drain = Duration::from_secs(2);
        if warmup > 0.0 {
            self.phase(1, rate, warmup, drain, n as u64).await;
        }
        let result = self.phase(2, rate, seconds, drain, n as u64).await;
        let rss1 = self.server_rss();
        let mut json = result.json();
        let mut text = result.line();
        if let Some(object) = json.as_object_mut() {
            object.insert("subscribers".into(), n.into());
            object.insert("senders".into(), senders.into());
            object.insert("rate".into(), rate.into());
            object.insert("stalled".into(), stalled.into());
            if let (Some(a), Some(b)) = (rss0, rss1) {
                let growth = b as f64 - a as f64;
                object.insert("server_rss_growth_bytes".into(), growth.into());
                if stalled > 0 {
                    text += &format!(" | server memory {:+.1} MiB with {stalled} stalled", growth / 1048576.0);
                }
            }
        }
        self.report("fanout", format!("N={n} S={senders} R={rate}/s: {text}"), json);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn ramp(
        &self,
        n: usize,
        senders: usize,
        start: f64,
        factor: f64,
        step: f64,
        p99_ms: f64,
        max_steps: u32,
    ) -> Result<(), String> {
        self.open(0, n, |i| if i < senders { Role::Sender(i as u16) } else { Role::Reader }).await;
        self.need_joined(n)?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let drain = Duration::from_secs_f64((p99_ms / 1000.0 * 2.0).max(1.0));
        let mut best: Option<PhaseResult> = None;
        let mut stop = ("max_steps", None::<PhaseResult>);
        let mut deliveries = start;
        for step_index in 0..max_steps {
            let phase = (step_index % 250 + 1) as u8;
            let result = self.phase(phase, deliveries / n as f64, step, drain, n as u64).await;
            if !self.json {
                println!("  step {:>2}: {}", step_index + 1, result.line());
            }
            let reason = if result.loss() > 0.0 {
                Some("loss")
            } else if result.p99_ms > p99_ms {
                Some("p99")
            } else if result.generator_cores() >= 0.95 {
                Some("generator_saturated")
            } else {
                None
            };
            if let Some(reason) = reason {
                // A saturated generator's step still counts if it met the bounds.
                if reason == "generator_saturated" {
                    best = Some(result.clone());
                }
                stop = (reason, Some(result));
                break;
            }
            best = Some(result);
            deliveries *= factor;
        }
        let mut json = serde_json::json!({
            "subscribers": n,
            "senders": senders,
            "stopped_by": stop.0,
            "p99_bound_ms": p99_ms,
            "max_sustained": best.as_ref().map(PhaseResult::json),
            "stopping_step": stop.1.as_ref().map(PhaseResult::json),
        });
        if let Some(object) = json.as_object_mut() {
            object.insert("max_delivered_per_s".into(), best.as_ref().map_or(0.0, |b| b.delivered_per_s()).into());
        }
        let text = format!(
            "N={n}: max sustained {} ; stopped by {} at {}",
            best.as_ref().map_or("nothing".to_owned(), PhaseResult::line),
            stop.0,
            stop.1.as_ref().map_or("-".to_owned(), |r| format!("offered {:.0}/s", r.offered_per_s())),
        );
        self.report("ramp", text, json);
        Ok(())
    }

    async fn idle(
        &self,
        connections: usize,
        settle: f64,
        broadcast_timeout: f64,
        listen_only: bool,
        ready_file: Option<std::path::PathBuf>,
    ) -> Result<(), String> {
        let rss0 = self.server_rss();
        let role = |i| if i == 0 && !listen_only { Role::Sender(0) } else { Role::Reader };
        let took = self.open(0, connections, role).await;
        let joined = self.shared.joined.get();
        if let Some(file) = ready_file {
            std::fs::write(&file, joined.to_string()).map_err(|e| format!("{}: {e}", file.display()))?;
        }
        tokio::time::sleep(Duration::from_secs_f64(settle)).await;
        let rss1 = self.server_rss();
        let per_connection = rss0.zip(rss1).map(|(a, b)| (b as f64 - a as f64) / joined.max(1) as f64);
        let mut json = serde_json::json!({
            "connections": connections,
            "joined": joined,
            "connect_seconds": took.as_secs_f64(),
            "server_rss_before": rss0,
            "server_rss_after": rss1,
            "server_bytes_per_connection": per_connection,
        });
        let mut text = format!(
            "{joined} of {connections} connections held; server memory {} KiB per connection",
            per_connection.map_or("-".to_owned(), |b| format!("{:.1}", b / 1024.0))
        );
        if broadcast_timeout > 0.0 && joined > 0 {
            let shared = &self.shared;
            shared.tally.borrow_mut().next_phase(1);
            shared.sent.borrow_mut().iter_mut().for_each(|s| *s = 0);
            shared.plan.set(Plan { phase: 1, sending: !listen_only, rate: 1e9, start_ns: shared.now_ns(), limit: 1 });
            let deadline = Instant::now() + Duration::from_secs_f64(broadcast_timeout);
            while shared.tally.borrow().received < joined as u64 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let tally = shared.tally.borrow();
            let reached = tally.received as f64 / joined as f64;
            let all = tally.received >= joined as u64;
            let seconds = all.then(|| tally.latency.max() as f64 / 1e9);
            if let Some(object) = json.as_object_mut() {
                object.insert("broadcast_reached".into(), reached.into());
                object.insert("broadcast_seconds".into(), seconds.into());
                object.insert("broadcast_p50_ms".into(), (tally.latency.quantile(0.5) as f64 / 1e6).into());
            }
            text += &match seconds {
                Some(s) => format!("; one broadcast reached all in {s:.3} s"),
                None => format!("; one broadcast reached {:.1}% within {broadcast_timeout} s", reached * 100.0),
            };
        }
        self.report("idle", text, json);
        Ok(())
    }

    async fn connect(&self, connections: usize) -> Result<(), String> {
        let cpu0 = self.server_cpu();
        let took = self.open(0, connections, |_| Role::Reader).await;
        let cpu = cpu0.zip(self.server_cpu()).map(|(a, b)| b.saturating_sub(a));
        let joined = self.shared.joined.get();
        let rate = joined as f64 / took.as_secs_f64();
        let per = cpu.map(|c| c.as_secs_f64() * 1e6 / joined.max(1) as f64);
        let json = serde_json::json!({
            "connections": connections,
            "joined": joined,
            "seconds": took.as_secs_f64(),
            "connects_per_s": rate,
            "server_us_per_connect": per,
        });
        let text = format!(
            "{joined} connections in {:.2} s: {rate:.0}/s, server {} µs CPU per connection",
            took.as_secs_f64(),
            per.map_or("-".to_owned(), |p| format!("{p:.0}"))
        );
        self.report("connect", text, json);
        Ok(())
    }
}

/// The send floor, reported like the other workloads. `ways`: how rounds are written and
/// read; `cpus`: the sender's and the reader's.
fn send_floor(
    connections: usize,
    bytes: usize,
    rounds: usize,
    gap: Duration,
    ways: (floor::Sender, floor::Reader),
    cpus: (usize, usize),
    json: bool,
) -> Result<(), String> {
    let (sender, reader) = ways;
    let f = floor::measure(connections, bytes.max(1), rounds.max(1), gap, sender, reader, cpus.0, cpus.1)
        .map_err(|e| format!("send floor: {e}"))?;
    let sleeping = reader == floor::Reader::Sleeping;
    let ring = sender == floor::Sender::Ring;
    if json {
        let line = serde_json::json!({
            "workload": "send-floor", "target": "floor", "connections": f.connections, "bytes": f.bytes,
            "rounds": f.rounds, "gap_ms": gap.as_millis() as u64, "sleeping_reader": sleeping, "ring": ring,
            "cpu_us_per_send": f.cpu_us_per_send, "round_p50_ms": f.round_p50_ms, "round_p99_ms": f.round_p99_ms,
        });
        println!("{line}");
    } else {
        println!(
            "send floor: {} connections, {}-byte frames, rounds {} ms apart, written with {}, reader {}: {:.2} µs CPU per send; a round of {} sends takes p50 {:.2} ms, p99 {:.2} ms",
            f.connections,
            f.bytes,
            gap.as_millis(),
            if ring { "one io_uring submission" } else { "a send() each" },
            if sleeping { "asleep in epoll" } else { "spinning" },
            f.cpu_us_per_send,
            f.connections,
            f.round_p50_ms,
            f.round_p99_ms
        );
    }
    Ok(())
}

async fn run(cli: Cli) -> Result<(), String> {
    let limit = process::raise_file_limit();
    if let Workload::SendFloor { connections, bytes, rounds, gap_ms, sleeping_reader, ring, sender_cpu, reader_cpu } =
        cli.workload
    {
        if 2 * connections as u64 + 32 > limit {
            return Err(format!("{connections} connections need more open files than the limit of {limit}"));
        }
        let reader = if sleeping_reader { floor::Reader::Sleeping } else { floor::Reader::Spinning };
        let sender = if ring { floor::Sender::Ring } else { floor::Sender::Send };
        let gap = Duration::from_millis(gap_ms);
        return send_floor(connections, bytes, rounds, gap, (sender, reader), (sender_cpu, reader_cpu), cli.json);
    }
    let (connections, senders) = match &cli.workload {
        Workload::Fanout { subscribers, senders, stalled, .. } => (subscribers + stalled, *senders),
        Workload::Ramp { subscribers, senders, .. } => (*subscribers, *senders),
        Workload::Idle { connections, .. } => (*connections, 1),
        Workload::Connect { connections } => (*connections, 0),
        Workload::SendFloor { .. } => (0, 0),
    };
    if connections as u64 + 32 > limit {
        return Err(format!("{connections} connections need more open files than the limit of {limit}"));
    }
    if senders > u16::MAX as usize {
        return Err("at most 65,535 senders".into());
    }
    let sources = match cli.sources {
        0 => (connections / 20_000 + 1).min(250) as u8,
        n => n,
    };
    let run = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()
        as u32)
        ^ std::process::id();
    let shared = Rc::new(Shared {
        target: cli.target,
        addrs: cli.addr.clone(),
        sender_addr: cli.sender_addr,
        wall_epoch_ns: cli.wall_epoch_ns,
        sources,
        first_source: cli.first_source,
        senders: senders.max(1),
        pad: cli.payload.saturating_sub(MARKER_LEN),
        run,
        epoch: Instant::now(),
        plan: Cell::new(Plan::default()),
        sent: RefCell::new(vec![0; senders.max(1)]),
        tally: RefCell::new(Tally::default()),
        scratch: RefCell::new(vec![0u8; 64 * 1024]),
        joined: Cell::new(0),
        failed: Cell::new(0),
        closed: Cell::new(0),
        first_error: RefCell::new(None),
        close_codes: RefCell::new(Vec::new()),
        handshakes: Semaphore::new(cli.concurrency.max(1)),
    });
    let bench = Bench { shared, server_pids: cli.server_pid, json: cli.json, concurrency: cli.concurrency.max(1) };
    match cli.workload {
        Workload::Fanout { subscribers, senders, rate, duration, warmup, stalled } => {
            bench.fanout(subscribers, senders.max(1), rate, duration, warmup, stalled).await
        }
        Workload::Ramp { subscribers, senders, start, factor, step, p99_ms, max_steps } => {
            bench.ramp(subscribers, senders.max(1), start, factor.max(1.01), step, p99_ms, max_steps).await
        }
        Workload::Idle { connections, settle, broadcast_timeout, listen_only, ready_file } => {
            bench.idle(connections, settle, broadcast_timeout, listen_only, ready_file).await
        }
        Workload::Connect { connections } => bench.connect(connections).await,
        Workload::SendFloor { .. } => Ok(()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("switchboard-bench: {error}");
            return ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    match local.block_on(&runtime, run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("switchboard-bench: {error}");
            ExitCode::FAILURE
        }
    }
}
