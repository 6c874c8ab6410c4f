//! The one stop signal of `vigie run`: SIGTERM, Ctrl-C, or a part that cannot go on (the
//! engine failing) triggers it; the HTTP server (and its open streams), the live sources and
//! the engine loop all watch it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::watch;

/// A stop signal; clones share it.
#[derive(Clone, Debug)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
    /// The same state for code that polls a flag (threads, crates without tokio).
    flag: Arc<AtomicBool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    /// A signal not yet triggered.
    pub fn new() -> Shutdown {
        Shutdown {
            tx: Arc::new(watch::channel(false).0),
            flag: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Triggers it (again is harmless).
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.tx.send_replace(true);
    }

    /// True once triggered.
    pub fn is_triggered(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// The flag, for threads that poll it.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.flag.clone()
    }

    /// Completes once triggered.
    pub async fn triggered(&self) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|stopped| *stopped).await;
    }

    /// Completes on SIGTERM, Ctrl-C, or a trigger from elsewhere; triggers it in every case.
    pub async fn on_signals(&self) {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
            _ = self.triggered() => {}
        }
        self.trigger();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_sees_the_trigger() {
        let s = Shutdown::new();
        let other = s.clone();
        let flag = s.flag();
        let waiting = tokio::spawn(async move { other.triggered().await });
        assert!(!s.is_triggered());
        s.trigger();
        waiting.await.unwrap();
        assert!(flag.load(Ordering::SeqCst));
        // Already triggered: completes at once.
        s.triggered().await;
    }
}
