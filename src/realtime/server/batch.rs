//! The group commit's intake, shared by every single-writer service (chat messages, sensor
//! readings): wait for one request, then take whatever else is already queued, so that one
//! transaction (and one fsync) serves everyone who asked meanwhile.
//!
//! Under load, a writer may also space its batches out ([`Pace`]): a request that comes less
//! than a window after the last batch was taken waits for the window to pass, and goes with
//! whatever else came meanwhile. One `fsync` then serves a few milliseconds of requests, not
//! each one, at the price of that much more latency while busy; a request that comes when the
//! writer has been idle for a window is taken at once.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How a writer spaces its batches out under load (see the module's doc).
#[derive(Debug)]
pub struct Pace {
    window: Duration,
    last: Option<Instant>,
}

impl Pace {
    /// Batches at least `window` apart while requests keep coming (zero: never wait).
    pub fn new(window: Duration) -> Pace {
        Pace { window, last: None }
    }

    /// Until when a request taken `now` waits for company: `None` when the last batch was
    /// taken a window ago or more.
    fn linger_until(&self, now: Instant) -> Option<Instant> {
        let until = self.last? + self.window;
        (until > now).then_some(until)
    }
}

/// Fill `batch` with the next request and those queued behind it, `max` at most, waiting
/// for more as `pace` says. Once `stop` is cancelled no new requests are taken and nothing
/// waits, but those already queued were accepted and are still returned. `false`: closed and
/// drained, the writer is done.
pub async fn next<T>(
    rx: &mut mpsc::Receiver<T>,
    stop: &CancellationToken,
    max: usize,
    pace: &mut Pace,
    batch: &mut Vec<T>,
) -> bool {
    let first = tokio::select! {
        // Stopping is looked at first, so that a busy queue cannot keep the writer open.
        biased;
        _ = stop.cancelled() => {
            rx.close();
            rx.recv().await
        }
        request = rx.recv() => request,
    };
    let Some(first) = first else { return false };
    batch.push(first);
    if let Some(until) = pace.linger_until(Instant::now()) {
        let window = tokio::time::sleep_until(until);
        tokio::pin!(window);
        while batch.len() < max {
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                _ = &mut window => break,
                request = rx.recv() => match request {
                    Some(request) => batch.push(request),
                    None => break,
                },
            }
        }
    }
    while batch.len() < max {
        match rx.try_recv() {
            Ok(request) => batch.push(request),
            Err(_) => break,
        }
    }
    pace.last = Some(Instant::now());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_is_what_queued_up_and_stopping_keeps_what_was_accepted() {
        let (tx, mut rx) = mpsc::channel(16);
        let stop = CancellationToken::new();
        let mut pace = Pace::new(Duration::ZERO);
        for i in 0..5 {
            tx.send(i).await.unwrap();
        }
        let mut batch = Vec::new();
        assert!(next(&mut rx, &stop, 3, &mut pace, &mut batch).await);
        assert_eq!(batch, [0, 1, 2]);
        batch.clear();
        stop.cancel();
        assert!(next(&mut rx, &stop, 3, &mut pace, &mut batch).await, "queued before the stop: still written");
        assert_eq!(batch, [3, 4]);
        assert!(tx.send(9).await.is_err(), "closed to new requests");
        batch.clear();
        assert!(!next(&mut rx, &stop, 3, &mut pace, &mut batch).await);
        assert!(batch.is_empty());
    }

    /// Sends `first` now and `second` 20 ms later; returns the next batch.
    async fn two_apart(pace: &mut Pace, rx: &mut mpsc::Receiver<u32>, tx: &mpsc::Sender<u32>) -> Vec<u32> {
        let stop = CancellationToken::new();
        tx.send(1).await.unwrap();
        let later = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            later.send(2).await.unwrap();
        });
        let mut batch = Vec::new();
        assert!(next(rx, &stop, 8, pace, &mut batch).await);
        batch
    }

    #[tokio::test]
    async fn under_load_a_request_waits_for_the_window_and_goes_with_what_came_meanwhile() {
        let (tx, mut rx) = mpsc::channel(16);
        let stop = CancellationToken::new();
        let mut pace = Pace::new(Duration::from_millis(300));
        // Idle until now: the first request is taken at once, alone.
        tx.send(0).await.unwrap();
        let mut batch = Vec::new();
        assert!(next(&mut rx, &stop, 8, &mut pace, &mut batch).await);
        assert_eq!(batch, [0]);
        // Right after that batch, the next request waits and takes the one 20 ms behind it.
        let started = Instant::now();
        assert_eq!(two_apart(&mut pace, &mut rx, &tx).await, [1, 2]);
        assert!(started.elapsed() >= Duration::from_millis(250), "it waited for the window");
        // A full batch does not wait for the window.
        for i in 0..8 {
            tx.send(10 + i).await.unwrap();
        }
        let mut full = Vec::new();
        assert!(next(&mut rx, &stop, 8, &mut pace, &mut full).await);
        assert_eq!(full.len(), 8);
        // Without a window, the same two go in two batches.
        let mut eager = Pace::new(Duration::ZERO);
        assert_eq!(two_apart(&mut eager, &mut rx, &tx).await, [1]);
        let mut rest = Vec::new();
        assert!(next(&mut rx, &stop, 8, &mut eager, &mut rest).await);
        assert_eq!(rest, [2]);
    }

    #[tokio::test]
    async fn stopping_ends_the_wait_and_keeps_what_was_taken() {
        let (tx, mut rx) = mpsc::channel(16);
        let stop = CancellationToken::new();
        let mut pace = Pace::new(Duration::from_secs(60));
        let mut batch = Vec::new();
        tx.send(0).await.unwrap();
        assert!(next(&mut rx, &stop, 8, &mut pace, &mut batch).await);
        tx.send(1).await.unwrap();
        let stopper = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            stopper.cancel();
        });
        batch.clear();
        let waited =
            tokio::time::timeout(Duration::from_secs(10), next(&mut rx, &stop, 8, &mut pace, &mut batch)).await;
        assert_eq!(waited.ok(), Some(true), "a stop ends the window's wait");
        assert_eq!(batch, [1]);
    }
}
