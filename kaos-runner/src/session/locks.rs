use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::SessionId;

/// One async mutex per session with a turn in flight, so turns on one session run one after
/// another (in arrival order: tokio's mutex is fair) while different sessions run in parallel.
/// Entries are removed when the last turn of a session releases its lock, so the map holds
/// only sessions that are busy right now.
#[derive(Debug, Default, Clone)]
pub(crate) struct SessionLocks {
    locks: Arc<DashMap<SessionId, Arc<Mutex<()>>>>,
}

impl SessionLocks {
    pub(crate) async fn lock(&self, id: &SessionId) -> SessionGuard {
        let mutex = self.locks.entry(id.clone()).or_default().clone();
        let guard = mutex.lock_owned().await;
        SessionGuard { locks: self.locks.clone(), id: id.clone(), guard: Some(guard) }
    }

    #[cfg(test)]
    pub(crate) fn busy(&self) -> usize {
        self.locks.len()
    }
}

/// Holds a session; dropping it lets the next turn of that session in.
#[derive(Debug)]
pub(crate) struct SessionGuard {
    locks: Arc<DashMap<SessionId, Arc<Mutex<()>>>>,
    id: SessionId,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        drop(self.guard.take());
        // Only the map's own reference left: no turn holds or awaits this session. Both the
        // clone in `lock` and this check run under the map's shard lock, so a turn arriving
        // concurrently either sees the old mutex (count > 1, kept) or inserts a new one.
        self.locks.remove_if(&self.id, |_, mutex| Arc::strong_count(mutex) == 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_sessions_are_forgotten() {
        let locks = SessionLocks::default();
        let a = SessionId::new("a").unwrap();
        let first = locks.lock(&a).await;
        assert_eq!(locks.busy(), 1);
        drop(first);
        assert_eq!(locks.busy(), 0);
    }
}
