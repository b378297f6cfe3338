//! Reflector caches of Services and EndpointSlices (all namespaces) and the [`Index`] built from
//! them. After a burst of watch events the index is rebuilt once and published on a `watch`
//! channel; queries read the newest one and never call the API server. Nothing is published
//! before both caches have listed, so until then cluster names get SERVFAIL.

use std::pin::pin;
use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::resolve::Index;

/// Which cache a watch event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Services,
    Slices,
}

/// Keeps `index` current until `shutdown`.
pub(crate) async fn run(
    client: kube::Client,
    index: watch::Sender<Option<Arc<Index>>>,
    shutdown: CancellationToken,
) {
    let (services, services_w) = reflector::store::<Service>();
    let (slices, slices_w) = reflector::store::<EndpointSlice>();
    let svc_events = watcher(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(|o: &mut Service| o.metadata.managed_fields = None)
    .reflect(services_w)
    .map(|e| {
        (
            Source::Services,
            e.map(|e| matches!(e, watcher::Event::InitDone)),
        )
    });
    let slice_events = watcher(
        Api::<EndpointSlice>::all(client),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(|o: &mut EndpointSlice| o.metadata.managed_fields = None)
    .reflect(slices_w)
    .map(|e| {
        (
            Source::Slices,
            e.map(|e| matches!(e, watcher::Event::InitDone)),
        )
    });
    let mut events = pin!(futures::stream::select(svc_events, slice_events));
    let (mut services_synced, mut slices_synced) = (false, false);
    let mut serial = initial_serial();
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return,
            e = events.next() => e,
        };
        let Some(mut event) = first else {
            return;
        };
        let mut changed = false;
        // Take the whole burst, then rebuild once.
        loop {
            match event {
                (source, Ok(init_done)) => {
                    changed = true;
                    if init_done {
                        match source {
                            Source::Services => services_synced = true,
                            Source::Slices => slices_synced = true,
                        }
                    }
                }
                (source, Err(e)) => {
                    tracing::warn!(?source, error = %e, "watch failed; retrying");
                }
            }
            match events.next().now_or_never() {
                Some(Some(next)) => event = next,
                Some(None) => return,
                None => break,
            }
        }
        if changed && services_synced && slices_synced {
            serial = serial.wrapping_add(1);
            let built = build(&services, &slices, serial);
            if index.send(Some(Arc::new(built))).is_err() {
                return;
            }
        }
    }
}

fn build(services: &Store<Service>, slices: &Store<EndpointSlice>, serial: u32) -> Index {
    Index::build(&services.state(), &slices.state(), serial)
}

/// SOA serials start from the clock, so a restarted server does not go back in time.
fn initial_serial() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| (d.as_secs() & 0xffff_ffff) as u32)
}
