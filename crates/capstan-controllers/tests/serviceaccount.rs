//! The serviceaccount controller on a TestCluster: every namespace has a `default` ServiceAccount.

mod support;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, DeleteParams};
use support::{create_namespace, eventually, start};

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
