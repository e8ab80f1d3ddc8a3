//! `switchboard-bench-polls`: many voters on one live poll (`make bench-polls`,
//! `docs/benchmarks.md`). V voters connect (guests, spread over the nodes given), follow the
//! poll, and vote within S seconds, evenly spread; each keeps the tally with the highest
//! version. Measured: the time from the last vote's acknowledgement until every voter has the
//! final tally (every vote counted), the servers' CPU per vote (the engines' too, with
//! `--server-pid`), and the store's share: the same votes made straight into a store of the
//! same engine (`--store-url`), its CPU per vote against the whole server's.

// Shared with `switchboard-bench`, which uses the parts this program does not.
#[allow(dead_code)]
#[path = "../process.rs"]
mod process;
#[allow(dead_code)]
#[path = "../wire.rs"]
mod wire;

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

#[derive(Parser, Debug)]
#[command(name = "switchboard-bench-polls", about = "Voters on one live poll.")]
struct Args {
    /// The nodes' addresses; voters are spread over them in turn, the poll made on the first.
    #[arg(long, default_value = "127.0.0.1:3000", value_delimiter = ',')]
    addr: Vec<SocketAddr>,
    #[arg(long, default_value_t = 10_000)]
    voters: usize,
    /// Seconds over which the votes are spread.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Processes whose CPU is the server's: the nodes, and PostgreSQL's and Redis's.
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// The store to make the same votes in directly, for the store's share (a SQLite file, or
    /// a PostgreSQL database of the bench's own); none: not measured.
    #[arg(long)]
    store_url: Option<String>,
    /// Loopback source addresses to spread connections over (127.0.0.N, N from 1).
    #[arg(long, default_value_t = 1)]
    sources: u8,
    #[arg(long)]
    json: bool,
}

/// One voter, as the run sees it.
#[derive(Default)]
struct Voter {
    /// The highest tally version seen, and its votes.
    version: Cell<u64>,
    counted: Cell<u64>,
    /// When the first tally counting every vote arrived.
    final_at: Cell<Option<Instant>>,
    live: Cell<bool>,
    sent_at: Cell<Option<Instant>>,
    acked_at: Cell<Option<Instant>>,
}

fn cpu(pids: &[u32]) -> Duration {
    pids.iter().filter_map(|&pid| process::cpu_time(pid).ok()).sum()
}

/// Read every text frame `conn` has, handing each to `on_frame`, until `done` says stop.
async fn read_until(
    conn: &mut wire::Conn,
    scratch: &RefCell<Vec<u8>>,
    mut on_frame: impl FnMut(&Value),
    done: impl Fn() -> bool,
) -> std::io::Result<()> {
    while !done() {
        let read = conn
            .read(
                scratch,
                || 0,
                |payload, _, _| {
                    if let Ok(frame) = serde_json::from_slice::<Value>(payload) {
                        on_frame(&frame);
                    }
                },
            )
            .await?;
        conn.flush().await?;
        if let wire::Read::Closed(code) = read {
            return Err(std::io::Error::other(format!("closed by the server ({code:?})")));
        }
    }
    Ok(())
}

/// Make the poll on the first node; its id.
async fn make_poll(addr: SocketAddr, options: usize) -> std::io::Result<i64> {
    let mut conn = wire::Conn::open(addr, None, "/ws?name=bench-maker").await?;
    conn.queue_text(json!({"type": "subscribe", "id": "s", "topic": "chat:lobby"}).to_string().as_bytes());
    let options: Vec<String> = (0..options).map(|i| format!("option {i}")).collect();
    let create = json!({"type": "create_poll", "id": format!("bench-{}", std::process::id()), "topic": "chat:lobby",
        "question": "Which one?", "options": options, "anonymous": true, "show_results": "always"});
    conn.queue_text(create.to_string().as_bytes());
    conn.flush().await?;
    let poll = Cell::new(None);
    let scratch = RefCell::new(vec![0u8; 64 << 10]);
    read_until(
        &mut conn,
        &scratch,
        |frame| {
            if frame["type"] == "message" && frame["poll"].is_i64() {
                poll.set(frame["poll"].as_i64());
            }
            if frame["type"] == "error" {
                eprintln!("making the poll: {frame}");
            }
        },
        || poll.get().is_some(),
    )
    .await?;
    poll.get().ok_or_else(|| std::io::Error::other("no poll"))
}

/// The same votes straight into the store: CPU per vote (this process's and the engines').
async fn store_only(url: &str, voters: usize, engines: &[u32]) -> Result<Duration, String> {
    use switchboard::polls::protocol::{PollSpec, ShowResults};
    use switchboard::polls::store::Voter as StoreVoter;
    let store = switchboard::store::Store::open(url).await.map_err(|e| e.to_string())?;
    let lobby = store.room("lobby").await.map_err(|e| e.to_string())?.ok_or("no lobby")?;
    let spec = PollSpec {
        question: "Which one?".into(),
        options: (0..4).map(|i| format!("option {i}")).collect(),
        max_choices: 1,
        anonymous: true,
        show_results: ShowResults::Always,
        closes_at: None,
    };
    let maker = StoreVoter { key: "g:bench", name: "bench" };
    let poll = store.create_poll(lobby.id, &maker, spec).await.map_err(|e| e.to_string())?;
    let (own, engine) = (process::own_cpu_time(), cpu(engines));
    // Sixteen at once, as a server's connections would.
    let next = Rc::new(Cell::new(0usize));
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (store, next, poll) = (store.clone(), next.clone(), poll.id);
            tokio::task::spawn_local(async move {
                loop {
                    let i = next.get();
                    if i >= voters {
                        return Ok::<(), String>(());
                    }
                    next.set(i + 1);
                    let key = format!("g:store{i}");
                    let voter = StoreVoter { key: &key, name: "voter" };
                    store.vote(poll, &voter, vec![(i % 4) as u32]).await.map_err(|e| e.to_string())?;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.map_err(|e| e.to_string())??;
    }
    let spent = process::own_cpu_time() - own + (cpu(engines) - engine);
    Ok(spent / voters as u32)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted.get(((sorted.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0.0)
}

async fn run(args: Args) -> Result<Value, String> {
    process::raise_file_limit();
    let options = 4;
    let poll = make_poll(args.addr[0], options).await.map_err(|e| format!("making the poll: {e}"))?;
    let topic = format!("poll:{poll}");
    let voters: Rc<Vec<Voter>> = Rc::new((0..args.voters).map(|_| Voter::default()).collect());
    let start_at: Rc<Cell<Option<Instant>>> = Rc::new(Cell::new(None));
    let failures = Rc::new(Cell::new(0usize));
    let gate = Rc::new(Semaphore::new(64));
    let spread = Duration::from_secs_f64(args.seconds / args.voters.max(1) as f64);
    let total = args.voters as u64;
    let mut tasks = Vec::new();
    for i in 0..args.voters {
        let (voters, start_at, failures, gate, topic) =
            (voters.clone(), start_at.clone(), failures.clone(), gate.clone(), topic.clone());
        let addr = args.addr[i % args.addr.len()];
        let source =
            (args.sources > 1).then(|| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i % args.sources as usize) as u8)));
        tasks.push(tokio::task::spawn_local(async move {
            let me = &voters[i];
            let permit = gate.acquire().await;
            let opened = wire::Conn::open(addr, source, &format!("/ws?name=v{i}")).await;
            drop(permit);
            let Ok(mut conn) = opened else {
                failures.set(failures.get() + 1);
                return;
            };
            conn.queue_text(json!({"type": "subscribe", "id": "s", "topic": topic}).to_string().as_bytes());
            let scratch = RefCell::new(vec![0u8; 16 << 10]);
            let mut voted = false;
            let on_frame = |frame: &Value| match frame["type"].as_str() {
                Some("tally") => {
                    me.live.set(true);
                    let version = frame["version"].as_u64().unwrap_or(0);
                    if version > me.version.get() || me.counted.get() == 0 {
                        me.version.set(version);
                        let counts = frame["counts"].as_array();
                        let counted: u64 = counts.map_or(0, |c| c.iter().filter_map(Value::as_u64).sum());
                        me.counted.set(counted);
                        if counted == total && me.final_at.get().is_none() {
                            me.final_at.set(Some(Instant::now()));
                        }
                    }
                }
                Some("ack") => me.acked_at.set(Some(Instant::now())),
                Some("error") => eprintln!("voter {i}: {frame}"),
                _ => {}
            };
            while me.final_at.get().is_none() {
                // Until the votes start, look again every 50 ms; then wait for my turn.
                let wake = match start_at.get() {
                    Some(start) if !voted => Some(start + spread * i as u32),
                    Some(_) => None,
                    None => Some(Instant::now() + Duration::from_millis(50)),
                };
                let due = async {
                    match wake {
                        Some(at) => tokio::time::sleep_until(at.into()).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    read = conn.read(&scratch, || 0, |payload, _, _| {
                        if let Ok(frame) = serde_json::from_slice::<Value>(payload) {
                            on_frame(&frame);
                        }
                    }) => {
                        if !matches!(read, Ok(wire::Read::Open)) {
                            failures.set(failures.get() + 1);
                            return;
                        }
                    }
                    _ = due => {
                        let turn = start_at.get().map(|start| start + spread * i as u32);
                        if !voted && turn.is_some_and(|turn| Instant::now() >= turn) {
                            voted = true;
                            me.sent_at.set(Some(Instant::now()));
                            let vote = json!({"type": "vote", "id": format!("v{i}"), "topic": topic, "choices": [i % options]});
                            conn.queue_text(vote.to_string().as_bytes());
                        }
                    }
                }
                if conn.flush().await.is_err() {
                    failures.set(failures.get() + 1);
                    return;
                }
            }
        }));
    }
    // Everyone live (their first tally came), then the votes.
    let waited = Instant::now();
    while voters.iter().filter(|v| v.live.get()).count() + failures.get() < args.voters {
        if waited.elapsed() > Duration::from_secs(300) {
            return Err("voters did not all connect within 300 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if failures.get() > 0 {
        return Err(format!("{} voters could not connect", failures.get()));
    }
    let (server_before, own_before) = (cpu(&args.server_pid), process::own_cpu_time());
    let started = Instant::now();
    start_at.set(Some(started + Duration::from_millis(50)));
    let deadline = started + Duration::from_secs_f64(args.seconds + 60.0);
    while voters.iter().any(|v| v.final_at.get().is_none()) {
        if Instant::now() > deadline || failures.get() > 0 {
            let missing = voters.iter().filter(|v| v.final_at.get().is_none()).count();
            return Err(format!("{missing} voters never had the final tally ({} failed)", failures.get()));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (server_cpu, own_cpu) = (cpu(&args.server_pid) - server_before, process::own_cpu_time() - own_before);
    for task in tasks {
        let _ = task.await;
    }
    let last_ack = voters.iter().filter_map(|v| v.acked_at.get()).max().ok_or("no vote was acknowledged")?;
    let acked = voters.iter().filter(|v| v.acked_at.get().is_some()).count();
    let mut after: Vec<f64> = voters
        .iter()
        .filter_map(|v| v.final_at.get())
        .map(|at| at.saturating_duration_since(last_ack).as_secs_f64() * 1000.0)
        .collect();
    after.sort_by(f64::total_cmp);
    let per_vote_us = server_cpu.as_secs_f64() * 1e6 / args.voters as f64;
    let store_us = match &args.store_url {
        Some(url) => {
            let engines: Vec<u32> = args.server_pid.iter().skip(args.addr.len()).copied().collect();
            Some(store_only(url, args.voters, &engines).await?.as_secs_f64() * 1e6)
        }
        None => None,
    };
    Ok(json!({
        "nodes": args.addr.len(),
        "voters": args.voters,
        "acked": acked,
        "votes_over_s": (last_ack - started).as_secs_f64(),
        "first_vote_sent_s": voters.iter().filter_map(|v| v.sent_at.get()).min().map(|at| (at - started).as_secs_f64()),
        "last_vote_sent_s": voters.iter().filter_map(|v| v.sent_at.get()).max().map(|at| (at - started).as_secs_f64()),
        "final_after_last_ack_ms_p50": quantile(&after, 0.5),
        "final_after_last_ack_ms_p99": quantile(&after, 0.99),
        "final_after_last_ack_ms_max": quantile(&after, 1.0),
        "server_cpu_us_per_vote": per_vote_us,
        "store_cpu_us_per_vote": store_us,
        "store_share": store_us.map(|store| store / per_vote_us),
        "generator_cpu_s": own_cpu.as_secs_f64(),
    }))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let json_out = args.json;
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("switchboard-bench-polls: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(tokio::task::LocalSet::new().run_until(run(args)));
    match outcome {
        Ok(result) => {
            if json_out {
                println!("{result}");
            } else {
                println!("{}", serde_json::to_string_pretty(&result).unwrap_or_default());
            }
            let ok = result["acked"] == result["voters"];
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("switchboard-bench-polls: {error}");
            ExitCode::FAILURE
        }
    }
}
