//! To be written.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::Context;

pub(crate) async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let _ = ctx;
    shutdown.cancelled().await;
}
