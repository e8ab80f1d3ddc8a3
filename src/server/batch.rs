//! The group commit's intake, shared by every single-writer service (chat messages, sensor
//! readings): wait for one request, then take whatever else is already queued, so that one
//! transaction (and one fsync) serves everyone who asked meanwhile.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Fill `batch` with the next request and those queued behind it, `max` at most. Once `stop`
/// is cancelled no new requests are taken, but those already queued were accepted and are
/// still returned. `false`: closed and drained, the writer is done.
pub async fn next<T>(rx: &mut mpsc::Receiver<T>, stop: &CancellationToken, max: usize, batch: &mut Vec<T>) -> bool {
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
    while batch.len() < max {
        match rx.try_recv() {
            Ok(request) => batch.push(request),
            Err(_) => break,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_is_what_queued_up_and_stopping_keeps_what_was_accepted() {
        let (tx, mut rx) = mpsc::channel(16);
        let stop = CancellationToken::new();
        for i in 0..5 {
            tx.send(i).await.unwrap();
        }
        let mut batch = Vec::new();
        assert!(next(&mut rx, &stop, 3, &mut batch).await);
        assert_eq!(batch, [0, 1, 2]);
        batch.clear();
        stop.cancel();
        assert!(next(&mut rx, &stop, 3, &mut batch).await, "queued before the stop: still written");
        assert_eq!(batch, [3, 4]);
        assert!(tx.send(9).await.is_err(), "closed to new requests");
        batch.clear();
        assert!(!next(&mut rx, &stop, 3, &mut batch).await);
        assert!(batch.is_empty());
    }
}
