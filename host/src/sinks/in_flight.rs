//! A store destination's batch sent on a task of its own, so that the store's server
//! and this process work side by side: while the server takes batch n, the sink puts
//! batch n + 1 in the store's shape. Such a sink [`confirms late`] (one batch): its
//! `write_batch(n + 1)` waits for batch n to land before it sends, so one batch is in
//! flight at a time and batches arrive in order.
//!
//! The batch is kept until it landed: after an error (a lost connection) it waits to be
//! sent again, which the engine's retry of the next `write_batch` does first.
//!
//! [`confirms late`]: super::Sink::unconfirmed_batches

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::error::StoreError;
use crate::stores::WriteCounts;

/// What a send gives back: its connection (none when it may be broken) and the batch's
/// counts, or why it was not written.
pub type Sent<C> = (Option<C>, Result<WriteCounts, StoreError>);

/// Sends a batch on a connection.
pub type SendFn<C, B> = fn(C, Arc<B>) -> Pin<Box<dyn Future<Output = Sent<C>> + Send>>;

/// The batch sent last, not known to have landed yet.
pub struct InFlight<C, B> {
    batch: Arc<B>,
    send: SendFn<C, B>,
    /// `None` once a send ended in an error: the batch waits to be sent again.
    task: Option<JoinHandle<Sent<C>>>,
}

impl<C: Send + 'static, B: Send + Sync + 'static> InFlight<C, B> {
    /// Starts sending `batch` on `conn`.
    pub fn start(conn: C, batch: B, send: SendFn<C, B>) -> Self {
        let batch = Arc::new(batch);
        let task = Some(tokio::spawn(send(conn, batch.clone())));
        Self { batch, send, task }
    }

    /// Whether the batch waits to be sent again (on a new connection).
    pub fn needs_connection(&self) -> bool {
        self.task.is_none()
    }

    /// Sends the batch again, after an error.
    pub fn restart(&mut self, conn: C) {
        self.task = Some(tokio::spawn((self.send)(conn, self.batch.clone())));
    }

    /// Waits for the send to end. After an error the batch stays, to be sent again.
    pub async fn wait(&mut self) -> Sent<C> {
        let Some(task) = self.task.take() else {
            return (
                None,
                Err(StoreError::fatal("a batch to send again was not sent")),
            );
        };
        match task.await {
            Ok(sent) => sent,
            Err(e) => (
                None,
                Err(StoreError::fatal(format!("a batch's send stopped: {e}"))),
            ),
        }
    }

    /// Stops a send under way (an interrupted run): the batch did not land, or landed
    /// and a resumed run finds it there.
    pub fn abort(self) {
        if let Some(task) = self.task {
            task.abort();
        }
    }
}

/// Lands the batch in `slot`, if any: waits for its send (first sending it again, on
/// `conn` or a connection from `connect`, when an error stopped it), takes the
/// connection back into `conn` and adds the batch's counts to `counts`. After an error
/// the batch stays in `slot`, and `conn` is empty when the connection may be broken.
pub async fn land<C: Send + 'static, B: Send + Sync + 'static>(
    slot: &mut Option<InFlight<C, B>>,
    conn: &mut Option<C>,
    counts: &mut WriteCounts,
    connect: impl AsyncFnOnce() -> Result<C, StoreError>,
) -> Result<(), StoreError> {
    let Some(flight) = slot.as_mut() else {
        return Ok(());
    };
    if flight.needs_connection() {
        let again = match conn.take() {
            Some(again) => again,
            None => connect().await?,
        };
        flight.restart(again);
    }
    let (back, result) = flight.wait().await;
    *conn = back;
    *counts += result?;
    *slot = None;
    Ok(())
}

/// Starts sending `batch` on the connection in `conn`, or on one from `connect` (the
/// connection is the send's until the batch lands); the batch before must have landed.
pub async fn send<C: Send + 'static, B: Send + Sync + 'static>(
    slot: &mut Option<InFlight<C, B>>,
    conn: &mut Option<C>,
    connect: impl AsyncFnOnce() -> Result<C, StoreError>,
    batch: B,
    send: SendFn<C, B>,
) -> Result<(), StoreError> {
    if slot.is_some() {
        return Err(StoreError::fatal(
            "a batch was sent before the one before landed",
        ));
    }
    let conn = match conn.take() {
        Some(conn) => conn,
        None => connect().await?,
    };
    *slot = Some(InFlight::start(conn, batch, send));
    Ok(())
}
