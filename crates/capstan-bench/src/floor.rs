//! The CRI floor of `capstan-bench pods`: how fast the node's containerd alone starts a one-container pod,
//! driven directly over CRI with the kubelet's own client (`capstan_kubelet::Cri`) and the same CNI
//! network, image and command as the benchmark's pods. The kubelet's pod start-up is compared with it.
//!
//! The sandboxes carry no `io.kubernetes.pod.uid` label, so the kubelet's orphan sweep leaves them alone.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use capstan_kubelet::Cri;
use k8s_cri::v1 as cri;

/// Namespace written into the sandboxes' metadata (CRI only; no API object).
const FLOOR_NAMESPACE: &str = "capstan-bench-floor";
/// Label that marks the floor's sandboxes (for `crictl pods --label`).
const FLOOR_LABEL: &str = "capstan-bench";
const STATUS_POLL: Duration = Duration::from_millis(2);
const RUNNING_TIMEOUT: Duration = Duration::from_secs(60);

/// One floor pod's timings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FloorSample {
    /// RunPodSandbox sent to ContainerStatus RUNNING.
    pub(crate) total: Duration,
    pub(crate) sandbox: Duration,
    pub(crate) create: Duration,
    pub(crate) start: Duration,
}

/// What the floor run measured.
#[derive(Debug, Default)]
pub(crate) struct Floor {
    /// Pods started one after the other.
    pub(crate) samples: Vec<FloorSample>,
    /// Stopping and removing the sequential round's containers and sandboxes, one after the other.
    pub(crate) teardown: Duration,
    /// Pods started all at once.
    pub(crate) burst: Vec<FloorSample>,
    /// First RunPodSandbox sent to the last container running in the burst.
    pub(crate) burst_wall: Duration,
}

/// The sandbox of floor pod `index`: pod network (CNI), its own PID namespace, logs under `log_dir`.
pub(crate) fn sandbox_config(index: usize, run_id: &str, log_dir: &Path) -> cri::PodSandboxConfig {
    let name = format!("floor-{index:03}");
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.clone(),
            uid: format!("{run_id}-{index:03}"),
            namespace: FLOOR_NAMESPACE.into(),
            attempt: 0,
        }),
        hostname: name,
        log_directory: log_dir.display().to_string(),
        labels: [(FLOOR_LABEL.to_owned(), "floor".to_owned())].into(),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Network and IPC of the pod, a PID namespace of its own: what the kubelet asks for a plain pod.
fn namespaces() -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: cri::NamespaceMode::Pod as i32,
        pid: cri::NamespaceMode::Container as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// The container: `image` running `sleep 3600`.
pub(crate) fn container_config(image: &str) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "sleep".into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: image.to_owned(),
            ..Default::default()
        }),
        command: vec!["sleep".into(), "3600".into()],
        log_path: "sleep/0.log".into(),
        labels: [(FLOOR_LABEL.to_owned(), "floor".to_owned())].into(),
        linux: Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(namespaces()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Starts one floor pod; returns its timings and its sandbox and container ids.
async fn start_one(
    cri: &Cri,
    index: usize,
    run_id: &str,
    image: &str,
    logs: &Path,
    created: &mut Vec<(String, Option<String>)>,
) -> Result<FloorSample> {
    let log_dir = logs.join(format!("floor-{index:03}"));
    std::fs::create_dir_all(&log_dir)
        .with_context(|| format!("cannot create {}", log_dir.display()))?;
    let config = sandbox_config(index, run_id, &log_dir);
    let mut runtime = cri.runtime.clone();
    let t0 = Instant::now();
    let sandbox_id = runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .context("RunPodSandbox failed")?
        .into_inner()
        .pod_sandbox_id;
    let sandbox = t0.elapsed();
    created.push((sandbox_id.clone(), None));
    let container_id = runtime
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.clone(),
            config: Some(container_config(image)),
            sandbox_config: Some(config),
        })
        .await
        .context("CreateContainer failed")?
        .into_inner()
        .container_id;
    let create = t0.elapsed() - sandbox;
    if let Some(last) = created.last_mut() {
        last.1 = Some(container_id.clone());
    }
    runtime
        .start_container(cri::StartContainerRequest {
            container_id: container_id.clone(),
        })
        .await
        .context("StartContainer failed")?;
    let start = t0.elapsed() - sandbox - create;
    loop {
        let status = cri
            .container_status(&container_id)
            .await
            .context("ContainerStatus failed")?;
        match status {
            Some(s) if s.state == cri::ContainerState::ContainerRunning as i32 => break,
            Some(s) if s.state == cri::ContainerState::ContainerExited as i32 => {
                bail!(
                    "floor container {index} exited ({}: {})",
                    s.reason,
                    s.message
                )
            }
            _ => {}
        }
        if t0.elapsed() > RUNNING_TIMEOUT {
            bail!("floor container {index} not running after {RUNNING_TIMEOUT:?}");
        }
        tokio::time::sleep(STATUS_POLL).await;
    }
    Ok(FloorSample {
        total: t0.elapsed(),
        sandbox,
        create,
        start,
    })
}

/// Stops and removes what [`run`] created, one after the other.
async fn remove_all(cri: &Cri, created: &[(String, Option<String>)]) -> Result<()> {
    let mut first_error = None;
    for (sandbox, container) in created {
        if let Some(container) = container {
            if let Err(e) = cri.stop_container(container, 0).await {
                first_error.get_or_insert(format!("StopContainer: {e}"));
            }
            if let Err(e) = cri.remove_container(container).await {
                first_error.get_or_insert(format!("RemoveContainer: {e}"));
            }
        }
        if let Err(e) = cri.remove_sandbox(sandbox).await {
            first_error.get_or_insert(format!("Stop/RemovePodSandbox: {e}"));
        }
    }
    match first_error {
        Some(e) => bail!("floor clean-up failed: {e}"),
        None => Ok(()),
    }
}

/// Starts pods `first..first + pods` all at once; returns their timings and the wall time, after
/// removing them.
async fn burst(
    cri: &Cri,
    run_id: &str,
    image: &str,
    first: usize,
    pods: usize,
    logs: &Path,
) -> Result<(Vec<FloorSample>, Duration)> {
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(pods);
    for index in first..first + pods {
        let (cri, run_id, image, logs) = (
            cri.clone(),
            run_id.to_owned(),
            image.to_owned(),
            logs.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            let mut created = Vec::with_capacity(1);
            let sample = start_one(&cri, index, &run_id, &image, &logs, &mut created).await;
            (sample, created)
        }));
    }
    let mut created = Vec::with_capacity(pods);
    let mut samples = Vec::with_capacity(pods);
    let mut result = Ok(());
    for task in tasks {
        match task.await {
            Ok((sample, made)) => {
                created.extend(made);
                match sample {
                    Ok(s) => samples.push(s),
                    Err(e) => result = result.and(Err(e)),
                }
            }
            Err(e) => result = result.and(Err(anyhow::Error::from(e))),
        }
    }
    let wall = t0.elapsed();
    let removed = remove_all(cri, &created).await;
    result?;
    removed?;
    Ok((samples, wall))
}

/// Starts `pods` floor pods one after the other (each running before the next is started) and
/// removes them; then starts as many all at once and removes them. `logs` holds the pods' log
/// directories.
pub(crate) async fn run(socket: &Path, image: &str, pods: usize, logs: &Path) -> Result<Floor> {
    let cri = Cri::connect(socket).context("cannot connect to containerd")?;
    let run_id = format!("capstan-bench-{}", std::process::id());
    let mut created = Vec::with_capacity(pods);
    let mut samples = Vec::with_capacity(pods);
    let mut result = Ok(());
    for index in 0..pods {
        match start_one(&cri, index, &run_id, image, logs, &mut created).await {
            Ok(sample) => samples.push(sample),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    let t0 = Instant::now();
    let removed = remove_all(&cri, &created).await;
    let teardown = t0.elapsed();
    result?;
    removed?;
    let (burst, burst_wall) = burst(&cri, &run_id, image, pods, pods, logs).await?;
    Ok(Floor {
        samples,
        teardown,
        burst,
        burst_wall,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandboxes_are_pod_networked_unlabelled_for_the_kubelet_and_distinct() {
        let a = sandbox_config(1, "run", Path::new("/logs/floor-001"));
        let b = sandbox_config(2, "run", Path::new("/logs/floor-002"));
        let meta = a.metadata.as_ref().expect("metadata");
        assert_eq!(meta.name, "floor-001");
        assert_eq!(meta.namespace, FLOOR_NAMESPACE);
        assert_ne!(meta.uid, b.metadata.as_ref().expect("metadata").uid);
        assert_eq!(a.log_directory, "/logs/floor-001");
        // The kubelet removes sandboxes with a pod-uid label it does not know.
        assert!(!a.labels.contains_key(capstan_kubelet::LABEL_POD_UID));
        let ns = a
            .linux
            .and_then(|l| l.security_context)
            .and_then(|s| s.namespace_options)
            .expect("namespace options");
        assert_eq!(ns.network, cri::NamespaceMode::Pod as i32);
        assert_eq!(ns.pid, cri::NamespaceMode::Container as i32);
    }

    #[test]
    fn the_container_sleeps_in_the_given_image() {
        let c = container_config("127.0.0.1:5000/busybox:latest");
        assert_eq!(c.command, ["sleep", "3600"]);
        assert_eq!(
            c.image.map(|i| i.image).as_deref(),
            Some("127.0.0.1:5000/busybox:latest")
        );
        assert_eq!(c.metadata.map(|m| m.name).as_deref(), Some("sleep"));
    }
}
