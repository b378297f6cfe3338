//! Running the host's network tools (`iptables`, `iptables-restore`, `ip`): shared by the service
//! proxy and the pod network, which both program the node's kernel through them.

use std::process::Stdio;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;

use tokio::io::AsyncWriteExt;

use crate::ProxyError;

/// Waits for the next change on `events` (or for `until_full`, the next periodic full sync), then
/// gathers whatever else arrives within `gather`, so that a burst is applied once. `false` when
/// the stream ended or `shutdown` came.
pub async fn next_batch<S: Stream + Unpin>(
    events: &mut S,
    until_full: Duration,
    gather: Duration,
    shutdown: &CancellationToken,
) -> bool {
    tokio::select! {
        item = events.next() => if item.is_none() { return false },
        () = tokio::time::sleep(until_full.max(Duration::from_millis(10))) => {}
        () = shutdown.cancelled() => return false,
    }
    let gather = tokio::time::sleep(gather);
    let mut gather = std::pin::pin!(gather);
    loop {
        tokio::select! {
            () = &mut gather => return true,
            item = events.next() => if item.is_none() { return false },
            () = shutdown.cancelled() => return false,
        }
    }
}

/// Makes the built-in chains jump to ours (idempotent: `-C` first, `-I` when missing).
pub async fn ensure_jumps(jumps: &[(&str, &str, &str)]) -> Result<(), ProxyError> {
    for (table, chain, rule) in jumps {
        let args = split_rule(rule);
        let mut check = vec!["-w", "5", "-t", table, "-C", chain];
        check.extend(args.iter().map(String::as_str));
        if command("iptables", &check, None).await.is_ok() {
            continue;
        }
        let mut insert = vec!["-w", "5", "-t", table, "-I", chain];
        insert.extend(args.iter().map(String::as_str));
        command("iptables", &insert, None).await?;
    }
    Ok(())
}

/// Splits a rule into arguments, keeping double-quoted comments whole.
pub fn split_rule(rule: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in rule.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Runs `program args` (feeding `stdin`), returning its stdout.
pub async fn command(
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, ProxyError> {
    let name = || format!("{program} {}", args.join(" "));
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ProxyError::Spawn {
            command: name(),
            source,
        })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .await
            .map_err(|source| ProxyError::Spawn {
                command: name(),
                source,
            })?;
    }
    let output = child
        .wait_with_output()
        .await
        .map_err(|source| ProxyError::Spawn {
            command: name(),
            source,
        })?;
    if !output.status.success() {
        return Err(ProxyError::Failed {
            command: name(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_split_into_arguments_with_quoted_comments_whole() {
        assert_eq!(
            split_rule("-m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"),
            [
                "-m",
                "comment",
                "--comment",
                "kubernetes service portals",
                "-j",
                "KUBE-SERVICES"
            ]
        );
    }
}
