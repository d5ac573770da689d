//! Work that must not hold up a runtime worker: disk reads and writes of snapshot chunks, and
//! CPU-heavy encoding and decoding.

/// Runs `work` on a blocking thread. The simulation forbids threads and has no workers to hold
/// up: it runs the work in place. `None`: the work panicked.
#[cfg(not(madsim))]
pub(crate) async fn off_runtime<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> Option<R> {
    tokio::task::spawn_blocking(work).await.ok()
}

#[cfg(madsim)]
pub(crate) async fn off_runtime<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> Option<R> {
    Some(work())
}

/// Runs `work` on the process's background thread: one thread, at the lowest CPU priority the
/// system gives (nice 19 on Linux), running its jobs one at a time in order. Work that takes a
/// core for a while without anyone waiting on it — encoding a snapshot — then runs on the CPU
/// the runtime's workers leave, instead of taking it from the appends and reads they serve. In
/// the simulation it runs in place. `None`: the work panicked.
#[cfg(not(madsim))]
pub(crate) async fn in_background<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> Option<R> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: background::Job = Box::new(move || {
        // A panic drops `tx`, which the caller sees as `None`; the thread lives on.
        if let Ok(r) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
            let _ = tx.send(r);
        }
    });
    if let Err(job) = background::send(job) {
        // No background thread (it could not be started): a blocking thread does the work.
        tokio::task::spawn_blocking(job).await.ok()?;
    }
    rx.await.ok()
}

#[cfg(madsim)]
pub(crate) async fn in_background<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> Option<R> {
    Some(work())
}

#[cfg(not(madsim))]
mod background {
    use std::sync::mpsc::{channel, Sender};
    use std::sync::{Mutex, OnceLock};

    pub(super) type Job = Box<dyn FnOnce() + Send>;

    /// Nice value of the background thread: the lowest priority.
    const NICE: i32 = 19;

    static QUEUE: OnceLock<Option<Mutex<Sender<Job>>>> = OnceLock::new();

    /// Queues `job` for the background thread, started on first use; gives it back when there is
    /// no such thread.
    pub(super) fn send(job: Job) -> Result<(), Job> {
        let queue = QUEUE.get_or_init(|| {
            let (tx, rx) = channel::<Job>();
            let started = std::thread::Builder::new().name("boxoffice-background".into()).spawn(move || {
                lower_priority();
                for job in rx {
                    job();
                }
            });
            match started {
                Ok(_) => Some(Mutex::new(tx)),
                Err(e) => {
                    tracing::warn!(error = %e, "no background thread: snapshots are encoded on blocking threads");
                    None
                }
            }
        });
        match queue {
            Some(tx) => tx.lock().unwrap_or_else(|p| p.into_inner()).send(job).map_err(|e| e.0),
            None => Err(job),
        }
    }

    /// Lowers the calling thread's priority (on Linux each thread has its own nice value).
    #[cfg(target_os = "linux")]
    fn lower_priority() {
        let me = rustix::thread::gettid();
        if let Err(e) = rustix::process::setpriority_process(Some(me), NICE) {
            tracing::warn!(error = %e, "the background thread keeps its priority");
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn lower_priority() {
        let _ = NICE;
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::in_background;

    #[tokio::test]
    async fn background_work_answers_and_a_panic_leaves_the_thread_running() {
        let current = || (std::thread::current().id(), std::thread::current().name().map(str::to_owned));
        let first = in_background(current).await.expect("answer");
        assert_eq!(first.1.as_deref(), Some("boxoffice-background"));
        let panicked: Option<u32> = in_background(|| panic!("planted")).await;
        assert_eq!(panicked, None, "a panic is reported as no answer");
        let after = in_background(current).await.expect("answer");
        assert_eq!(after, first, "the same thread lives on after a panic");
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_background_thread_runs_at_the_lowest_priority() {
        let nice = in_background(|| rustix::process::getpriority_process(Some(rustix::thread::gettid())))
            .await
            .expect("answer")
            .expect("getpriority");
        assert_eq!(nice, 19);
    }
}
