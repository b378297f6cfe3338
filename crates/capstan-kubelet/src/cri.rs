//! A CRI client over containerd's unix socket: the runtime and image services of `runtime.v1`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::KubeletError;

/// Both CRI services on one channel; cheap to clone.
#[derive(Debug, Clone)]
pub struct Cri {
    pub runtime: RuntimeServiceClient<Channel>,
    pub images: ImageServiceClient<Channel>,
}

impl Cri {
    /// Connects to the CRI socket (lazily: the first call dials).
    pub fn connect(socket: &Path) -> Result<Cri, KubeletError> {
        let path: PathBuf = socket.to_path_buf();
        let channel = Endpoint::try_from("http://[::]:50051")
            .map_err(|e| KubeletError::Cri(e.to_string()))?
            .connect_timeout(Duration::from_secs(5))
            .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }));
        // Images and logs of big containers exceed tonic's 4 MiB default.
        let runtime =
            RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20);
        let images = ImageServiceClient::new(channel).max_decoding_message_size(64 << 20);
        Ok(Cri { runtime, images })
    }

    /// The runtime's name and version, e.g. ("containerd", "1.6.20~ds1").
    pub async fn version(&self) -> Result<(String, String), KubeletError> {
        let v = self
            .runtime
            .clone()
            .version(cri::VersionRequest {
                version: "v1".into(),
            })
            .await?
            .into_inner();
        Ok((v.runtime_name, v.runtime_version))
    }

    /// Whether the image is present locally.
    pub async fn image_present(&self, image: &str) -> Result<bool, KubeletError> {
        let resp = self
            .images
            .clone()
            .image_status(cri::ImageStatusRequest {
                image: Some(image_spec(image)),
                verbose: false,
            })
            .await?
            .into_inner();
        Ok(resp.image.is_some())
    }

    /// Pulls an image; returns its reference (digest).
    pub async fn pull(&self, image: &str) -> Result<String, KubeletError> {
        let resp = self
            .images
            .clone()
            .pull_image(cri::PullImageRequest {
                image: Some(image_spec(image)),
                auth: None,
                sandbox_config: None,
            })
            .await?
            .into_inner();
        Ok(resp.image_ref)
    }

    /// Sandboxes carrying our pod-uid label (all of them when `uid` is None).
    pub async fn sandboxes(&self, uid: Option<&str>) -> Result<Vec<cri::PodSandbox>, KubeletError> {
        let filter = uid.map(|uid| cri::PodSandboxFilter {
            label_selector: [(crate::LABEL_POD_UID.to_string(), uid.to_string())].into(),
            ..Default::default()
        });
        Ok(self
            .runtime
            .clone()
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter })
            .await?
            .into_inner()
            .items)
    }

    /// Containers of one sandbox.
    pub async fn containers(&self, sandbox_id: &str) -> Result<Vec<cri::Container>, KubeletError> {
        Ok(self
            .runtime
            .clone()
            .list_containers(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter {
                    pod_sandbox_id: sandbox_id.to_string(),
                    ..Default::default()
                }),
            })
            .await?
            .into_inner()
            .containers)
    }

    pub async fn container_status(
        &self,
        id: &str,
    ) -> Result<Option<cri::ContainerStatus>, KubeletError> {
        match self
            .runtime
            .clone()
            .container_status(cri::ContainerStatusRequest {
                container_id: id.to_string(),
                verbose: false,
            })
            .await
        {
            Ok(resp) => Ok(resp.into_inner().status),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn sandbox_status(
        &self,
        id: &str,
    ) -> Result<Option<cri::PodSandboxStatus>, KubeletError> {
        match self
            .runtime
            .clone()
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.to_string(),
                verbose: false,
            })
            .await
        {
            Ok(resp) => Ok(resp.into_inner().status),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Stops a container, giving it `grace` seconds after SIGTERM.
    pub async fn stop_container(&self, id: &str, grace: i64) -> Result<(), KubeletError> {
        match self
            .runtime
            .clone()
            .stop_container(cri::StopContainerRequest {
                container_id: id.to_string(),
                timeout: grace,
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn remove_container(&self, id: &str) -> Result<(), KubeletError> {
        match self
            .runtime
            .clone()
            .remove_container(cri::RemoveContainerRequest {
                container_id: id.to_string(),
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Stops and removes a sandbox and everything in it.
    pub async fn remove_sandbox(&self, id: &str) -> Result<(), KubeletError> {
        let mut rt = self.runtime.clone();
        let stop = rt
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: id.to_string(),
            })
            .await;
        if let Err(status) = stop
            && status.code() != tonic::Code::NotFound
        {
            return Err(status.into());
        }
        match rt
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: id.to_string(),
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Runs a command in a container and waits for it (probes).
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: i64,
    ) -> Result<cri::ExecSyncResponse, KubeletError> {
        Ok(self
            .runtime
            .clone()
            .exec_sync(cri::ExecSyncRequest {
                container_id: id.to_string(),
                cmd,
                timeout,
            })
            .await?
            .into_inner())
    }
}

pub(crate) fn image_spec(image: &str) -> cri::ImageSpec {
    cri::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    }
}

/// Waits until the CRI socket answers `Version`, up to `timeout`.
pub async fn wait_ready(cri: &Cri, timeout: Duration) -> Result<(String, String), KubeletError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match cri.version().await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
