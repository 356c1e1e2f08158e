//! The local Key Vault on a thread of its own, for synchronous callers (tests, a rehearsal tool): it serves on its
//! own tokio runtime until the handle is dropped.

use crate::{Config, Error, Info, Observations};

/// A local Key Vault serving on its own thread; stopped (and its thread joined) when dropped.
#[derive(Debug)]
pub struct Background {
    /// How to reach it.
    pub info: Info,
    /// What it did: tokens issued, faults injected, blobs received (the first vault).
    pub observed: Observations,
    /// What each vault did, in the order of [`Info::vaults`].
    pub vaults: Vec<Observations>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    /// Starts it and returns once it listens.
    pub fn start(config: Config) -> Result<Self, Error> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    let _ = ready_tx.send(Err(Error::new(anyhow::Error::new(e).context("cannot start a runtime"))));
                    return;
                }
            };
            runtime.block_on(async move {
                let running = match crate::start(config).await {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok((running.info.clone(), running.all_observations())));
                let _ = stop_rx.await;
                // Stopping is best effort: the caller has gone.
                let _ = running.shutdown().await;
            });
        });
        let ready = ready_rx.recv().unwrap_or_else(|_| {
            Err(Error::new(anyhow::anyhow!(
                "the local Key Vault's thread ended at start"
            )))
        });
        let (info, vaults) = match ready {
            Ok(r) => r,
            Err(e) => {
                let _ = thread.join();
                return Err(e);
            }
        };
        Ok(Self {
            info,
            observed: vaults[0].clone(),
            vaults,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
