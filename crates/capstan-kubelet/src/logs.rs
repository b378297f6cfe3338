//! Container logs: reads the CRI log files containerd writes (`<time> <stream> <P|F> <text>` per line)
//! and turns them into what `kubectl logs` shows, with tail, since, timestamps, limitBytes and follow.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

/// The query of `/containerLogs` (names as the kubelet API has them).
#[derive(Debug, Default, Clone)]
pub(crate) struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub tail_lines: Option<usize>,
    pub timestamps: bool,
    pub since: Option<k8s_openapi::jiff::Timestamp>,
    pub limit_bytes: Option<usize>,
}

impl LogOptions {
    pub(crate) fn from_query(query: &str) -> Self {
        let mut o = LogOptions::default();
        for (k, v) in query
            .split('&')
            .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        {
            let v = percent_decode(v);
            match k {
                "follow" => o.follow = v == "true" || v == "1",
                "previous" => o.previous = v == "true" || v == "1",
                "timestamps" => o.timestamps = v == "true" || v == "1",
                "tailLines" => o.tail_lines = v.parse().ok(),
                "limitBytes" => o.limit_bytes = v.parse().ok(),
                "sinceSeconds" => {
                    if let Ok(secs) = v.parse::<i64>() {
                        o.since = k8s_openapi::jiff::Timestamp::now()
                            .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(secs))
                            .ok();
                    }
                }
                "sinceTime" => o.since = v.parse().ok(),
                _ => {}
            }
        }
        o
    }
}

pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 3;
                }
                Err(_) => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One parsed CRI log line.
#[derive(Debug, PartialEq)]
struct Line<'a> {
    time: &'a str,
    partial: bool,
    text: &'a str,
}

fn parse(line: &str) -> Option<Line<'_>> {
    let mut parts = line.splitn(4, ' ');
    let time = parts.next()?;
    let _stream = parts.next()?;
    let tag = parts.next()?;
    let text = parts.next().unwrap_or("");
    Some(Line {
        time,
        partial: tag.split(':').next() == Some("P"),
        text,
    })
}

/// Renders complete CRI lines (without their trailing newline) the way kubectl shows them.
fn render(line: &str, o: &LogOptions, out: &mut Vec<u8>) {
    let Some(l) = parse(line) else { return };
    if let Some(since) = o.since
        && l.time
            .parse::<k8s_openapi::jiff::Timestamp>()
            .is_ok_and(|t| t < since)
    {
        return;
    }
    if o.timestamps {
        out.extend_from_slice(l.time.as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(l.text.as_bytes());
    if !l.partial {
        out.push(b'\n');
    }
}

/// Streams the log at `path` into `tx`. With `follow`, keeps reading while `running()` says the container
/// still runs. Stops early when the receiver goes away.
pub(crate) async fn stream<F, Fut>(
    path: PathBuf,
    o: LogOptions,
    tx: mpsc::Sender<Bytes>,
    running: F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => {
            let _ = tx
                .send(Bytes::from(format!(
                    "failed to open log file {}: {e}\n",
                    path.display()
                )))
                .await;
            return;
        }
    };
    let mut text = String::new();
    if file.read_to_string(&mut text).await.is_err() {
        return;
    }
    let mut offset = text.len() as u64;
    // Only complete lines; a trailing fragment is read again later.
    let complete = match text.rfind('\n') {
        Some(i) => i + 1,
        None => 0,
    };
    offset -= (text.len() - complete) as u64;
    let lines: Vec<&str> = text[..complete].lines().collect();
    let start = o
        .tail_lines
        .map(|n| lines.len().saturating_sub(n))
        .unwrap_or(0);
    let mut budget = o.limit_bytes.unwrap_or(usize::MAX);
    let mut out = Vec::new();
    for line in &lines[start..] {
        render(line, &o, &mut out);
    }
    if !send(&tx, out, &mut budget).await {
        return;
    }
    if !o.follow {
        return;
    }
    let mut idle_checks = 0u32;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if tx.is_closed() {
            return;
        }
        if file.seek(std::io::SeekFrom::Start(offset)).await.is_err() {
            return;
        }
        let mut more = String::new();
        if file.read_to_string(&mut more).await.is_err() {
            return;
        }
        let complete = more.rfind('\n').map(|i| i + 1).unwrap_or(0);
        if complete > 0 {
            offset += complete as u64;
            let mut out = Vec::new();
            for line in more[..complete].lines() {
                render(line, &o, &mut out);
            }
            if !send(&tx, out, &mut budget).await {
                return;
            }
            idle_checks = 0;
            continue;
        }
        idle_checks += 1;
        if idle_checks.is_multiple_of(5) && !running().await {
            return;
        }
    }
}

/// Sends up to the byte budget; false when done (budget spent or receiver gone).
async fn send(tx: &mpsc::Sender<Bytes>, mut out: Vec<u8>, budget: &mut usize) -> bool {
    if out.is_empty() {
        return *budget > 0;
    }
    let spent_all = out.len() >= *budget;
    out.truncate(*budget);
    *budget -= out.len();
    tx.send(Bytes::from(out)).await.is_ok() && !spent_all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_render_like_kubectl_logs() {
        let o = LogOptions::default();
        let mut out = Vec::new();
        render("2024-01-01T00:00:00.5Z stdout F hello world", &o, &mut out);
        render("2024-01-01T00:00:01Z stderr P part-", &o, &mut out);
        render("2024-01-01T00:00:01Z stderr F ial", &o, &mut out);
        render("2024-01-01T00:00:02Z stdout F ", &o, &mut out);
        assert_eq!(String::from_utf8_lossy(&out), "hello world\npart-ial\n\n");
        let ts = LogOptions {
            timestamps: true,
            ..Default::default()
        };
        let mut out = Vec::new();
        render("2024-01-01T00:00:00.5Z stdout F hi", &ts, &mut out);
        assert_eq!(String::from_utf8_lossy(&out), "2024-01-01T00:00:00.5Z hi\n");
    }

    #[test]
    fn query_parses_kubelet_names() {
        let o = LogOptions::from_query(
            "follow=true&tailLines=5&timestamps=1&limitBytes=10&previous=false",
        );
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!((o.tail_lines, o.limit_bytes), (Some(5), Some(10)));
        assert_eq!(percent_decode("a%20b+c%2F"), "a b c/");
    }

    #[tokio::test]
    async fn tail_and_limit_apply_to_the_file() {
        let path = std::env::temp_dir().join(format!("capstan-log-{}.log", std::process::id()));
        let body: String = (1..=5)
            .map(|i| format!("2024-01-01T00:00:0{i}Z stdout F line{i}\n"))
            .collect();
        std::fs::write(&path, body).expect("write");
        let (tx, mut rx) = mpsc::channel(8);
        let o = LogOptions {
            tail_lines: Some(2),
            ..Default::default()
        };
        stream(path.clone(), o, tx, || async { false }).await;
        assert_eq!(rx.recv().await.as_deref(), Some(&b"line4\nline5\n"[..]));
        let (tx, mut rx) = mpsc::channel(8);
        let o = LogOptions {
            limit_bytes: Some(8),
            ..Default::default()
        };
        stream(path.clone(), o, tx, || async { false }).await;
        assert_eq!(rx.recv().await.as_deref(), Some(&b"line1\nli"[..]));
        let _ = std::fs::remove_file(&path);
    }
}
