//! Supervises the node's containerd: writes its config under the agent's data dir, starts it, restarts it
//! when it dies. A containerd that already answers on our socket (left by a previous agent) is adopted,
//! so that restarting the agent restarts no containers.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::KubeletError;
use crate::cri::{self, Cri};

/// Where containerd keeps its files, all under one directory.
#[derive(Debug, Clone)]
pub struct ContainerdPaths {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub cni_conf_dir: PathBuf,
    pub certs_dir: PathBuf,
}

impl ContainerdPaths {
    pub fn new(agent_dir: &Path) -> Self {
        let dir = agent_dir.join("containerd");
        Self {
            socket: dir.join("containerd.sock"),
            config: dir.join("config.toml"),
            cni_conf_dir: agent_dir.join("cni"),
            certs_dir: dir.join("certs.d"),
            dir,
        }
    }
}

/// containerd 1.6's config: CRI on, overlayfs, runc with cgroupfs (no systemd here),
/// `restrict_oom_score_adj` (root lacks CAP_SYS_RESOURCE), our own CNI dir and sandbox image.
pub fn config_toml(paths: &ContainerdPaths, sandbox_image: &str) -> String {
    let p = |p: &Path| p.display().to_string();
    format!(
        r#"# Written by capstan agent; regenerated on every start.
version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{certs}"
"#,
        root = p(&paths.dir.join("root")),
        state = p(&paths.dir.join("state")),
        socket = p(&paths.socket),
        cni = p(&paths.cni_conf_dir),
        certs = p(&paths.certs_dir),
    )
}

/// Starts (or adopts) containerd and keeps it running until `shutdown`. Returns once the CRI answers.
pub async fn start(
    paths: ContainerdPaths,
    sandbox_image: String,
    shutdown: CancellationToken,
) -> Result<Cri, KubeletError> {
    let client = Cri::connect(&paths.socket)?;
    if paths.socket.exists()
        && cri::wait_ready(&client, Duration::from_millis(300))
            .await
            .is_ok()
    {
        tracing::info!(socket = %paths.socket.display(), "adopting the running containerd");
        return Ok(client);
    }
    for dir in [&paths.dir, &paths.cni_conf_dir, &paths.certs_dir] {
        std::fs::create_dir_all(dir).map_err(|e| KubeletError::io(dir, e))?;
    }
    std::fs::write(&paths.config, config_toml(&paths, &sandbox_image))
        .map_err(|e| KubeletError::io(&paths.config, e))?;
    let _ = std::fs::remove_file(&paths.socket);
    let mut child = spawn(&paths)?;
    let ready = tokio::select! {
        r = cri::wait_ready(&client, Duration::from_secs(20)) => r,
        status = child.wait() => Err(KubeletError::Runtime(format!(
            "containerd exited at start ({}); see {}",
            status.map(|s| s.to_string()).unwrap_or_default(),
            paths.dir.join("containerd.log").display()
        ))),
    };
    let (name, version) = ready?;
    tracing::info!(%name, %version, socket = %paths.socket.display(), "containerd is up");
    tokio::spawn(supervise(child, paths, shutdown));
    Ok(client)
}

fn spawn(paths: &ContainerdPaths) -> Result<tokio::process::Child, KubeletError> {
    let log_path = paths.dir.join("containerd.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| KubeletError::io(&log_path, e))?;
    let log2 = log
        .try_clone()
        .map_err(|e| KubeletError::io(&log_path, e))?;
    tokio::process::Command::new("containerd")
        .arg("--config")
        .arg(&paths.config)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| {
            KubeletError::Runtime(format!(
                "cannot start containerd: {e} (is the containerd package installed?)"
            ))
        })
}

async fn supervise(
    mut child: tokio::process::Child,
    paths: ContainerdPaths,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            status = child.wait() => {
                tracing::warn!(?status, "containerd exited; restarting it");
                tokio::time::sleep(Duration::from_secs(1)).await;
                match spawn(&paths) {
                    Ok(c) => child = c,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot restart containerd");
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(5)) => {}
                            () = shutdown.cancelled() => return,
                        }
                        if let Ok(c) = spawn(&paths) { child = c; }
                    }
                }
            }
            () = shutdown.cancelled() => {
                // Containers live on in their shims; the next agent adopts them.
                terminate(&mut child).await;
                return;
            }
        }
    }
}

async fn terminate(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
        if tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = child.kill().await;
}
