//! Test helper for the crash test: writes new keys from 8 concurrent writers and prints
//! `ack KEY REVISION` for every write the store acknowledged, until it is killed.
//!
//! Usage: `capstan-store-crash-writer sqlite FILE` or `capstan-store-crash-writer etcd URL`.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;
use capstan_store::{EtcdStore, SqliteStore, Store};

const WRITERS: usize = 8;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let store: Arc<dyn Store> = match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("sqlite"), Some(path)) => match SqliteStore::open(path) {
            Ok(store) => Arc::new(store),
            Err(e) => return fail(&e),
        },
        (Some("etcd"), Some(endpoint)) => {
            match EtcdStore::connect(std::slice::from_ref(endpoint)).await {
                Ok(store) => Arc::new(store),
                Err(e) => return fail(&e),
            }
        }
        _ => {
            eprintln!("usage: capstan-store-crash-writer sqlite FILE | etcd URL");
            return ExitCode::from(2);
        }
    };
    let (acks, mut acked) = tokio::sync::mpsc::channel::<(String, i64)>(1024);
    for writer in 0..WRITERS {
        let store = store.clone();
        let acks = acks.clone();
        tokio::spawn(async move {
            for i in 0u64.. {
                let key = format!("/crash/{writer}/{i:08}");
                let value = Bytes::from(format!("value of {key}"));
                match store.create(&key, value).await {
                    Ok(kv) => {
                        if acks.send((key, kv.mod_revision)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        eprintln!("write failed: {e}");
                        return;
                    }
                }
            }
        });
    }
    drop(acks);
    let mut stdout = std::io::stdout().lock();
    while let Some((key, revision)) = acked.recv().await {
        // Printed only after the store acknowledged the write; flushed so the parent sees it at once.
        if writeln!(stdout, "ack {key} {revision}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            break;
        }
    }
    ExitCode::SUCCESS
}

fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("cannot open the store: {error}");
    ExitCode::FAILURE
}
