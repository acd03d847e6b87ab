//! A source's per-record parsing spread over every core, awaited without blocking the
//! runtime.
//!
//! A source that reads pages from a server and parses them on its own task (the
//! langgraph-redis reader: the documents' fields picked, their checkpoints checked)
//! puts that parsing between one page's answer and the next page's request, so the
//! server and the parsing take turns on the critical path. Spread over the cores, the
//! parsing of a page takes a fraction of that time.
//!
//! The pool is one of its own, as the sinks' encode pool is
//! ([`crate::sinks::on_encode_pool`]): jobs queued on rayon's global pool wait there
//! until the batch being decoded on it is done.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::OnceLock;

/// `parse` applied to each of `items` on the read pool, the results in their order.
/// A panic in `parse` is raised again here, in the caller.
pub async fn map<T, R>(items: Vec<T>, parse: fn(T) -> R) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
{
    use rayon::prelude::*;
    let Some(pool) = pool().filter(|_| items.len() > 1) else {
        return items.into_iter().map(parse).collect();
    };
    let (done, result) = tokio::sync::oneshot::channel();
    pool.spawn(move || {
        let parsed = catch_unwind(AssertUnwindSafe(|| {
            items.into_par_iter().map(parse).collect::<Vec<R>>()
        }));
        // The caller may have stopped waiting (its task was dropped): nobody to tell.
        let _ = done.send(parsed);
    });
    match result.await {
        Ok(Ok(parsed)) => parsed,
        Ok(Err(panic)) => resume_unwind(panic),
        Err(_) => unreachable!("the job always answers"),
    }
}

fn pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("read-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn results_keep_their_order_and_panics_reach_the_caller() {
        let items: Vec<u32> = (0..1000).collect();
        let doubled = map(items, |i| i * 2).await;
        assert_eq!(doubled, (0..1000).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(map(vec![3u32], |i| i + 1).await, [4]);
        let panicked = tokio::spawn(map(vec![1u32, 2, 3], |i| {
            assert!(i != 2, "item two");
            i
        }))
        .await;
        assert!(panicked.unwrap_err().is_panic());
    }
}
