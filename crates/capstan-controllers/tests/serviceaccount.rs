//! The serviceaccount controller on a TestCluster: every namespace has a `default` ServiceAccount.

use std::future::Future;
use std::time::Duration;

use capstan_apiserver::testing::TestCluster;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::Kubeconfig;
use serde_json::json;
use tokio_util::sync::CancellationToken;

struct Harness {
    _cluster: TestCluster,
    client: kube::Client,
    shutdown: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start() -> Harness {
    let cluster = TestCluster::start().await;
    let kubeconfig = Kubeconfig::from_yaml(&cluster.admin_kubeconfig()).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("client config");
    let client = kube::Client::try_from(config).expect("client");
    let shutdown = CancellationToken::new();
    tokio::spawn(capstan_controllers::run_all(
        client.clone(),
        capstan_controllers::ControllerConfig::default(),
        shutdown.clone(),
    ));
    Harness {
        _cluster: cluster,
        client,
        shutdown,
    }
}

/// Polls `check` until it yields a value, for at most 20 s.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn create<K>(api: &Api<K>, value: serde_json::Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(value).expect("object");
    api.create(&PostParams::default(), &object)
        .await
        .expect("create")
}

async fn create_namespace(client: &kube::Client, name: &str) {
    create(
        &Api::<Namespace>::all(client.clone()),
        json!({"metadata": {"name": name}}),
    )
    .await;
}

#[tokio::test]
async fn a_new_namespace_gets_a_default_service_account_that_comes_back_after_deletion() {
    let h = start().await;
    let c = &h.client;
    create_namespace(c, "team-a").await;
    let accounts: Api<ServiceAccount> = Api::namespaced(c.clone(), "team-a");
    let first = eventually("the default service account", || async {
        accounts.get_opt("default").await.expect("get")
    })
    .await;

    accounts
        .delete("default", &DeleteParams::default())
        .await
        .expect("delete");
    let second = eventually("the default service account to be re-created", || async {
        accounts
            .get_opt("default")
            .await
            .expect("get")
            .filter(|sa| sa.metadata.uid != first.metadata.uid)
    })
    .await;
    assert_eq!(second.metadata.name.as_deref(), Some("default"));
}

#[tokio::test]
async fn the_built_in_namespaces_have_a_default_service_account() {
    let h = start().await;
    for ns in ["default", "kube-system", "kube-public"] {
        let accounts: Api<ServiceAccount> = Api::namespaced(h.client.clone(), ns);
        eventually(&format!("{ns}/default"), || async {
            accounts.get_opt("default").await.expect("get")
        })
        .await;
    }
}
