//! One pod watch for the whole controller manager, as kube-controller-manager's shared informer:
//! pods are most of a cluster's objects and events, and a watch per controller made the API server
//! encrypt, and this process decode and cache, every pod event once per controller.
//!
//! [`SharedPods::run`] drives a kube-runtime watcher into one reflector [`Store`] and hands each
//! event to every subscriber. Subscribers see what a watcher of their own would: `Init`,
//! `InitApply`..., `InitDone` (again after every re-list), then `Apply` and `Delete`; one that
//! subscribes late first gets the current state as an initial list. Delivery is unbounded, as an
//! informer's handler queue: a controller that falls behind costs memory, never stalls the others.

use std::sync::{Arc, Mutex, PoisonError};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event, watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A watch event of the shared pod stream.
pub(crate) type PodEvent = Event<Arc<Pod>>;

/// The controller manager's one pod watch and cache.
#[derive(Clone)]
pub(crate) struct SharedPods {
    store: Store<Pod>,
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    writer: Writer<Pod>,
    subscribers: Vec<mpsc::UnboundedSender<PodEvent>>,
    /// The pods of an initial list in progress (between `Init` and `InitDone`).
    listing: Option<Vec<Arc<Pod>>>,
    /// Whether an initial list has completed: the store then holds the state to replay.
    synced: bool,
}

impl std::fmt::Debug for SharedPods {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedPods").finish_non_exhaustive()
    }
}

impl Default for SharedPods {
    fn default() -> Self {
        Self::new()
    }
}

impl SharedPods {
    pub(crate) fn new() -> SharedPods {
        let (store, writer) = reflector::store::<Pod>();
        SharedPods {
            store,
            inner: Arc::new(Mutex::new(Inner {
                writer,
                subscribers: Vec::new(),
                listing: None,
                synced: false,
            })),
        }
    }

    /// The cache of every pod (without `managedFields`), ready after the first list.
    pub(crate) fn store(&self) -> Store<Pod> {
        self.store.clone()
    }

    /// Every pod event from now on, after the current state as an initial list if there is one.
    pub(crate) fn subscribe(&self) -> impl Stream<Item = PodEvent> + Send + 'static {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(listed) = &inner.listing {
            let _ = tx.send(Event::Init);
            for pod in listed {
                let _ = tx.send(Event::InitApply(pod.clone()));
            }
        } else if inner.synced {
            let _ = tx.send(Event::Init);
            for pod in self.store.state() {
                let _ = tx.send(Event::InitApply(pod));
            }
            let _ = tx.send(Event::InitDone);
        }
        inner.subscribers.push(tx);
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }

    /// The pods an event names (created, changed, listed or deleted): what a controller's
    /// `watches` mapper is given.
    pub(crate) fn touched(&self) -> impl Stream<Item = Arc<Pod>> + Send + 'static {
        self.subscribe().filter_map(|event| {
            futures::future::ready(match event {
                Event::Apply(pod) | Event::InitApply(pod) | Event::Delete(pod) => Some(pod),
                Event::Init | Event::InitDone => None,
            })
        })
    }

    /// Watches every pod until `shutdown`, feeding the store and the subscribers.
    pub(crate) async fn run(self, client: kube::Client, shutdown: CancellationToken) {
        let events = watcher(Api::<Pod>::all(client), watcher::Config::default())
            .modify(crate::util::strip_managed_fields)
            .default_backoff();
        let mut events = std::pin::pin!(events);
        loop {
            let event = tokio::select! {
                event = events.next() => event,
                () = shutdown.cancelled() => return,
            };
            match event {
                Some(Ok(event)) => self.dispatch(event),
                Some(Err(error)) => tracing::warn!(%error, "pod watch failed; retrying"),
                None => return,
            }
        }
    }

    fn dispatch(&self, event: Event<Pod>) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.writer.apply_watcher_event(&event);
        let event = match event {
            Event::Init => {
                inner.listing = Some(Vec::new());
                Event::Init
            }
            Event::InitApply(pod) => {
                let pod = Arc::new(pod);
                if let Some(listed) = &mut inner.listing {
                    listed.push(pod.clone());
                }
                Event::InitApply(pod)
            }
            Event::InitDone => {
                inner.listing = None;
                inner.synced = true;
                Event::InitDone
            }
            Event::Apply(pod) => Event::Apply(Arc::new(pod)),
            Event::Delete(pod) => Event::Delete(Arc::new(pod)),
        };
        inner
            .subscribers
            .retain(|subscriber| subscriber.send(event.clone()).is_ok());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    fn names(events: &[PodEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                Event::Init => "init".to_owned(),
                Event::InitApply(p) => format!("list {}", p.metadata.name.as_deref().unwrap_or("")),
                Event::InitDone => "synced".to_owned(),
                Event::Apply(p) => format!("apply {}", p.metadata.name.as_deref().unwrap_or("")),
                Event::Delete(p) => format!("delete {}", p.metadata.name.as_deref().unwrap_or("")),
            })
            .collect()
    }

    async fn drain(stream: impl Stream<Item = PodEvent>, n: usize) -> Vec<PodEvent> {
        stream.take(n).collect().await
    }

    #[tokio::test]
    async fn every_subscriber_sees_every_event_and_late_ones_get_the_state_first() {
        let shared = SharedPods::new();
        let early = shared.subscribe();
        shared.dispatch(Event::Init);
        shared.dispatch(Event::InitApply(pod("a")));
        // Subscribing in the middle of a list: the list so far, then the rest of it.
        let mid_list = shared.subscribe();
        shared.dispatch(Event::InitApply(pod("b")));
        shared.dispatch(Event::InitDone);
        shared.dispatch(Event::Apply(pod("c")));
        shared.dispatch(Event::Delete(pod("a")));
        let late = shared.subscribe();
        shared.dispatch(Event::Apply(pod("d")));

        let all = [
            "init", "list a", "list b", "synced", "apply c", "delete a", "apply d",
        ];
        assert_eq!(names(&drain(early, 7).await), all);
        assert_eq!(names(&drain(mid_list, 7).await), all);
        let late = names(&drain(late, 5).await);
        assert_eq!(late[0], "init");
        let mut listed = late[1..3].to_vec();
        listed.sort();
        assert_eq!(listed, ["list b", "list c"], "the state at subscription");
        assert_eq!(late[3..], ["synced", "apply d"]);

        let mut cached: Vec<String> = shared
            .store()
            .state()
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        cached.sort();
        assert_eq!(cached, ["b", "c", "d"]);
    }

    #[tokio::test]
    async fn touched_pods_include_deleted_ones_and_a_gone_subscriber_is_dropped() {
        let shared = SharedPods::new();
        let touched = shared.touched();
        let gone = shared.subscribe();
        drop(gone);
        shared.dispatch(Event::Init);
        shared.dispatch(Event::InitApply(pod("a")));
        shared.dispatch(Event::InitDone);
        shared.dispatch(Event::Delete(pod("a")));
        let seen: Vec<String> = touched
            .take(2)
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect()
            .await;
        assert_eq!(seen, ["a", "a"]);
        let inner = shared.inner.lock().expect("lock");
        assert_eq!(inner.subscribers.len(), 1, "the dropped subscriber is gone");
    }
}
