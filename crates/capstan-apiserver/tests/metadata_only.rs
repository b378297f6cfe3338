//! `PartialObjectMetadata`: what client-go's metadata informers (kube's garbage collector, quota,
//! operators' metadata-only watches) and kube-rs's `Api<PartialObjectMeta<K>>` ask for with
//! `Accept: application/json;as=PartialObjectMetadata[List];g=meta.k8s.io;v=v1`. The answer is the
//! objects' metadata only, in `meta.k8s.io/v1` kinds, for get, list, watch and writes' answers.

use bytes::Bytes;
use capstan_apiserver::testing::TestCluster;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

mod support;
use support::{Client, WAIT};

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";
/// What client-go's metadata client sends (protobuf first, which is not served, then JSON).
const ACCEPT_ONE: &str = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json";
const ACCEPT_LIST: &str = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";

fn get(path: &str, accept: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method("GET")
        .uri(path)
        .header("host", "127.0.0.1")
        .header("accept", accept)
        .body(Full::new(Bytes::new()))
        .expect("request")
}

async fn read(client: &Client, path: &str, accept: &str) -> (StatusCode, String, Value) {
    answer(client, get(path, accept)).await
}

/// The status, content type and JSON body of `request`'s answer.
async fn answer(client: &Client, request: Request<Full<Bytes>>) -> (StatusCode, String, Value) {
    let response = client.send(request).await;
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (
        status,
        content_type,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn get_list_watch_and_writes_answer_metadata_only() {
    let cluster = TestCluster::start().await;
    let client = Client::new(&cluster);
    let (code, created) = client
        .json(
            "POST",
            CONFIGMAPS,
            Some(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "meta", "labels": {"app": "x"}, "annotations": {"note": "kept"}},
                "data": {"secret-ish": "not in metadata"}})),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{created}");

    let (code, content_type, one) = read(&client, &format!("{CONFIGMAPS}/meta"), ACCEPT_ONE).await;
    assert_eq!(code, StatusCode::OK, "{one}");
    assert_eq!(
        content_type,
        "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
    );
    assert_eq!(one["kind"], "PartialObjectMetadata");
    assert_eq!(one["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(
        one["metadata"], created["metadata"],
        "the metadata as stored"
    );
    assert!(one.get("data").is_none(), "{one}");

    let (code, content_type, list) = read(&client, CONFIGMAPS, ACCEPT_LIST).await;
    assert_eq!(code, StatusCode::OK, "{list}");
    assert_eq!(
        content_type,
        "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
    );
    assert_eq!(list["kind"], "PartialObjectMetadataList");
    assert_eq!(list["apiVersion"], "meta.k8s.io/v1");
    let items = list["items"].as_array().expect("items");
    let mine = items
        .iter()
        .find(|i| i["metadata"]["name"] == "meta")
        .expect("listed");
    assert_eq!(mine["kind"], "PartialObjectMetadata");
    assert_eq!(mine["metadata"]["annotations"]["note"], "kept");
    assert!(mine.get("data").is_none(), "{mine}");
    assert!(list["metadata"]["resourceVersion"].is_string());

    // Without the media type, the same list is whole ConfigMaps.
    let (_, content_type, whole) = read(&client, CONFIGMAPS, "application/json").await;
    assert_eq!(content_type, "application/json");
    assert_eq!(whole["kind"], "ConfigMapList");

    // A watch from the list's revision sees a change as PartialObjectMetadata.
    let rv = list["metadata"]["resourceVersion"].as_str().expect("rv");
    let response = client
        .send(get(
            &format!("{CONFIGMAPS}?watch=true&resourceVersion={rv}"),
            ACCEPT_ONE,
        ))
        .await;
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1")
    );
    let patch = Request::builder()
        .method("PATCH")
        .uri(format!("{CONFIGMAPS}/meta"))
        .header("host", "127.0.0.1")
        .header("content-type", "application/merge-patch+json")
        .body(Full::new(Bytes::from(
            json!({"metadata": {"labels": {"app": "y"}}}).to_string(),
        )))
        .expect("request");
    assert_eq!(client.send(patch).await.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut seen = Vec::new();
    let event = tokio::time::timeout(WAIT, async {
        loop {
            let frame = body.frame().await.expect("open").expect("frame");
            if let Some(data) = frame.data_ref() {
                seen.extend_from_slice(data);
            }
            if let Some(end) = seen.iter().position(|b| *b == b'\n') {
                return serde_json::from_slice::<Value>(&seen[..end]).expect("event");
            }
        }
    })
    .await
    .expect("an event in time");
    assert_eq!(event["type"], "MODIFIED", "{event}");
    assert_eq!(event["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(event["object"]["metadata"]["labels"]["app"], "y");
    assert!(event["object"].get("data").is_none(), "{event}");

    // A write's answer too, as client-go's metadata client patches finalizers away.
    let patch = Request::builder()
        .method("PATCH")
        .uri(format!("{CONFIGMAPS}/meta"))
        .header("host", "127.0.0.1")
        .header("accept", ACCEPT_ONE)
        .header("content-type", "application/merge-patch+json")
        .body(Full::new(Bytes::from(
            json!({"metadata": {"finalizers": ["example.com/keep"]}}).to_string(),
        )))
        .expect("request");
    let (code, content_type, patched) = answer(&client, patch).await;
    assert_eq!(code, StatusCode::OK, "{patched}");
    assert_eq!(
        content_type,
        "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
    );
    assert_eq!(patched["kind"], "PartialObjectMetadata");
    assert_eq!(
        patched["metadata"]["finalizers"],
        json!(["example.com/keep"])
    );
    assert!(patched.get("data").is_none(), "{patched}");
    // An error stays a Status.
    let (code, _, status) = read(&client, &format!("{CONFIGMAPS}/absent"), ACCEPT_ONE).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(status["kind"], "Status");
}
