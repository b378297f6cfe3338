//! End-to-end: service account tokens. `kubectl create token` (TokenRequest, sent as protobuf)
//! issues a signed token; kubectl with only that token is the service account; the token stops
//! working when the account, or the pod it is bound to, is deleted; it survives a server restart
//! (the key is in the data dir); bad requests get kube's errors.

mod support;

use std::path::Path;

use support::{Cluster, assert_contains};

/// `kubectl auth whoami` with `kubeconfig`: the user name, or the error kubectl printed.
fn whoami(k: &Cluster, kubeconfig: &Path) -> Result<String, String> {
    let out = k
        .command_with(kubeconfig)
        .args([
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ])
        .output()
        .expect("run kubectl");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn created_tokens_authenticate_as_their_service_account_until_it_is_deleted() {
    let k = Cluster::start();
    k.create_namespace("team");
    k.ok(&["create", "serviceaccount", "robot", "-n", "team"]);
    let token = k.ok(&["create", "token", "robot", "-n", "team"]);
    let token = token.trim();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let config = k.token_kubeconfig("robot.kubeconfig", token);
    assert_eq!(
        whoami(&k, &config).as_deref(),
        Ok("system:serviceaccount:team:robot")
    );
    let groups = k
        .command_with(&config)
        .args(["auth", "whoami", "-o", "jsonpath={.status.userInfo.groups}"])
        .output()
        .expect("run kubectl");
    assert_eq!(
        String::from_utf8_lossy(&groups.stdout),
        r#"["system:serviceaccounts","system:serviceaccounts:team","system:authenticated"]"#
    );
    // The admin's TokenReview agrees.
    let review = k.ok_stdin(
        &["create", "-f", "-", "-o", "jsonpath={.status.authenticated} {.status.user.username}"],
        &format!(r#"{{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{{"token":"{token}"}}}}"#),
    );
    assert_eq!(review, "true system:serviceaccount:team:robot");

    // A changed token is refused.
    let mut forged = token.to_owned();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    let err = whoami(&k, &k.token_kubeconfig("forged.kubeconfig", &forged))
        .expect_err("the token is refused");
    assert_contains(&err, "You must be logged in to the server");

    // Deleting the account (even recreating one of the same name) ends the token.
    k.ok(&["delete", "serviceaccount", "robot", "-n", "team"]);
    k.ok(&["create", "serviceaccount", "robot", "-n", "team"]);
    let err = whoami(&k, &config).expect_err("the token is refused");
    assert_contains(&err, "You must be logged in to the server");
}

#[test]
fn bound_tokens_end_with_their_pod_and_requests_are_validated() {
    let k = Cluster::start();
    k.ok(&["run", "web", "--image=busybox"]);
    let token = k.ok(&[
        "create",
        "token",
        "default",
        "--bound-object-kind=Pod",
        "--bound-object-name=web",
    ]);
    let config = k.token_kubeconfig("bound.kubeconfig", token.trim());
    assert_eq!(
        whoami(&k, &config).as_deref(),
        Ok("system:serviceaccount:default:default")
    );
    k.ok(&["delete", "pod", "web", "--grace-period=0", "--force"]);
    let err = whoami(&k, &config).expect_err("the token is refused");
    assert_contains(&err, "You must be logged in to the server");

    let err = k.fails(&["create", "token", "nobody"]);
    assert_contains(&err, r#"serviceaccounts "nobody" not found"#);
    let err = k.fails(&["create", "token", "default", "--duration=1m"]);
    assert_contains(
        &err,
        "spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes",
    );
    let err = k.fails(&[
        "create",
        "token",
        "default",
        "--bound-object-kind=Pod",
        "--bound-object-name=gone",
    ]);
    assert_contains(&err, r#"pods "gone" not found"#);
    // A token for another audience is not for this API server.
    let other = k.ok(&["create", "token", "default", "--audience=vault"]);
    let err = whoami(&k, &k.token_kubeconfig("vault.kubeconfig", other.trim()))
        .expect_err("the token is refused");
    assert_contains(&err, "You must be logged in to the server");
}

#[test]
fn tokens_survive_a_server_restart() {
    let mut k = Cluster::start();
    let token = k.ok(&["create", "token", "default", "--duration=1h"]);
    k.restart();
    let config = k.token_kubeconfig("after-restart.kubeconfig", token.trim());
    assert_eq!(
        whoami(&k, &config).as_deref(),
        Ok("system:serviceaccount:default:default")
    );
}

/// RBAC: a service account may do nothing until bound; a RoleBinding to `view` lets it read its
/// namespace only (not secrets, not writes), a ClusterRoleBinding to `edit` lets it write anywhere,
/// `admin` of its namespace may bind roles there but not grant more than it holds, and the refusals
/// read as kube-apiserver's.
#[test]
fn rbac_limits_a_service_account_to_its_bindings() {
    let k = Cluster::start();
    k.create_namespace("team");
    k.ok(&["create", "serviceaccount", "robot", "-n", "team"]);
    let token = k.ok(&["create", "token", "robot", "-n", "team"]);
    let robot = k.token_kubeconfig("robot.kubeconfig", token.trim());
    let as_robot = |args: &[&str]| {
        k.command_with(&robot)
            .args(args)
            .output()
            .expect("run kubectl")
    };
    let stderr = |out: &std::process::Output| String::from_utf8_lossy(&out.stderr).into_owned();
    // A new binding reaches the authorizer through the watch cache: retry for a moment.
    let as_robot_eventually = |args: &[&str]| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let out = as_robot(args);
            if out.status.success() {
                return out;
            }
            assert!(std::time::Instant::now() < deadline, "{}", stderr(&out));
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };

    let denied = as_robot(&["get", "pods", "-n", "team"]);
    assert!(!denied.status.success());
    assert_contains(
        &stderr(&denied),
        r#"Error from server (Forbidden): pods is forbidden: User "system:serviceaccount:team:robot" cannot list resource "pods" in API group "" in the namespace "team""#,
    );
    let can_i = as_robot(&["auth", "can-i", "list", "pods", "-n", "team"]);
    assert_eq!(String::from_utf8_lossy(&can_i.stdout).trim(), "no");

    k.ok(&[
        "create",
        "rolebinding",
        "robot-view",
        "--clusterrole=view",
        "--serviceaccount=team:robot",
        "-n",
        "team",
    ]);
    k.ok(&[
        "create",
        "configmap",
        "settings",
        "-n",
        "team",
        "--from-literal=a=b",
    ]);
    let out = as_robot_eventually(&["get", "configmaps", "settings", "-n", "team", "-o", "name"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "configmap/settings"
    );
    for (args, message) in [
        (
            vec!["get", "pods", "-n", "default"],
            r#"cannot list resource "pods" in API group "" in the namespace "default""#,
        ),
        (
            vec!["get", "secrets", "-n", "team"],
            r#"cannot list resource "secrets" in API group "" in the namespace "team""#,
        ),
        (
            vec!["create", "configmap", "mine", "-n", "team"],
            r#"cannot create resource "configmaps" in API group "" in the namespace "team""#,
        ),
        (
            vec!["get", "nodes"],
            r#"cannot list resource "nodes" in API group "" at the cluster scope"#,
        ),
    ] {
        let out = as_robot(&args);
        assert!(!out.status.success(), "{args:?} was allowed");
        assert_contains(&stderr(&out), message);
    }
    let can_i = as_robot(&["auth", "can-i", "watch", "deployments.apps", "-n", "team"]);
    assert_eq!(String::from_utf8_lossy(&can_i.stdout).trim(), "yes");
    // `can-i --list` (SelfSubjectRulesReview) shows the bound rules.
    let list = as_robot(&["auth", "can-i", "--list", "-n", "team"]);
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.lines()
            .any(|l| l.starts_with("deployments.apps ") && l.ends_with("[get list watch]")),
        "{list}"
    );
    assert!(!list.contains("secrets"), "{list}");

    // A ClusterRoleBinding to edit: writes anywhere, still no RBAC changes.
    k.ok(&[
        "create",
        "clusterrolebinding",
        "robot-edit",
        "--clusterrole=edit",
        "--serviceaccount=team:robot",
    ]);
    as_robot_eventually(&["create", "configmap", "mine", "-n", "default"]);
    let out = as_robot(&[
        "create",
        "rolebinding",
        "escalate",
        "--clusterrole=cluster-admin",
        "--serviceaccount=team:robot",
        "-n",
        "team",
    ]);
    assert!(!out.status.success());
    assert_contains(
        &stderr(&out),
        r#"cannot create resource "rolebindings" in API group "rbac.authorization.k8s.io" in the namespace "team""#,
    );
    // As admin of its namespace it may grant what it holds there, and nothing more (escalation).
    k.ok(&[
        "create",
        "rolebinding",
        "robot-admin",
        "--clusterrole=admin",
        "--serviceaccount=team:robot",
        "-n",
        "team",
    ]);
    as_robot_eventually(&[
        "create",
        "rolebinding",
        "friend-view",
        "--clusterrole=view",
        "--user=friend",
        "-n",
        "team",
    ]);
    let out = as_robot(&[
        "create",
        "rolebinding",
        "friend-admin",
        "--clusterrole=cluster-admin",
        "--user=friend",
        "-n",
        "team",
    ]);
    assert!(!out.status.success());
    assert_contains(
        &stderr(&out),
        r#"rolebindings.rbac.authorization.k8s.io "friend-admin" is forbidden: user "system:serviceaccount:team:robot" (groups=["system:serviceaccounts" "system:serviceaccounts:team" "system:authenticated"]) is attempting to grant RBAC permissions not currently held:"#,
    );
    assert_contains(
        &stderr(&out),
        r#"{APIGroups:["*"], Resources:["*"], Verbs:["*"]}"#,
    );
    // The defaults are there for everyone to see (admins).
    let roles = k.ok(&["get", "clusterroles", "-o", "name"]);
    for role in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:node",
        "system:kube-scheduler",
    ] {
        assert_contains(
            &roles,
            &format!("clusterrole.rbac.authorization.k8s.io/{role}\n"),
        );
    }
}

/// `kubectl --as` / `--as-group`: the admin (system:masters) may become anyone and is then judged as
/// them; a service account bound to `edit` in its namespace may act as the namespace's other
/// service accounts (Kubernetes' edit role allows that) but not as a user or another namespace's
/// account; refusals read as kube-apiserver's.
#[test]
fn impersonation_runs_requests_as_the_impersonated_user_when_allowed() {
    let k = Cluster::start();
    k.create_namespace("team");
    let who = k.ok(&[
        "auth",
        "whoami",
        "--as=jane",
        "--as-group=devs",
        "-o",
        "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
    ]);
    assert_eq!(who, r#"jane ["devs","system:authenticated"]"#);
    let denied = k.fails(&["get", "pods", "-n", "team", "--as=jane"]);
    assert_contains(
        &denied,
        r#"Error from server (Forbidden): pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "team""#,
    );
    // A named object's refusal names it (and its group), as kube-apiserver's does.
    let denied = k.fails(&["get", "deployment", "web", "-n", "team", "--as=jane"]);
    assert_contains(
        &denied,
        r#"deployments.apps "web" is forbidden: User "jane" cannot get resource "deployments" in API group "apps" in the namespace "team""#,
    );
    assert_eq!(
        k.ok(&[
            "auth",
            "can-i",
            "get",
            "pods",
            "-n",
            "team",
            "--as=jane",
            "--as-group=system:masters"
        ])
        .trim(),
        "yes"
    );

    for sa in ["robot", "helper"] {
        k.ok(&["create", "serviceaccount", sa, "-n", "team"]);
    }
    k.ok(&[
        "create",
        "rolebinding",
        "robot-edit",
        "--clusterrole=edit",
        "--serviceaccount=team:robot",
        "-n",
        "team",
    ]);
    k.ok(&[
        "create",
        "rolebinding",
        "helper-view",
        "--clusterrole=view",
        "--serviceaccount=team:helper",
        "-n",
        "team",
    ]);
    k.ok(&["create", "configmap", "settings", "-n", "team"]);
    let token = k.ok(&["create", "token", "robot", "-n", "team"]);
    let robot = k.token_kubeconfig("robot.kubeconfig", token.trim());
    let as_robot = |args: &[&str]| {
        k.command_with(&robot)
            .args(args)
            .output()
            .expect("run kubectl")
    };
    let helper = "--as=system:serviceaccount:team:helper";
    // New bindings reach the authorizer through the watch cache: retry for a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let out = loop {
        let out = as_robot(&[
            "get",
            "configmap",
            "settings",
            "-n",
            "team",
            "-o",
            "name",
            helper,
        ]);
        if out.status.success() || std::time::Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "configmap/settings",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // As helper (view), the robot may not write, although it could itself.
    let out = as_robot(&["create", "configmap", "other", "-n", "team", helper]);
    assert_contains(
        &String::from_utf8_lossy(&out.stderr),
        r#"configmaps is forbidden: User "system:serviceaccount:team:helper" cannot create resource "configmaps" in API group "" in the namespace "team""#,
    );
    for (args, message) in [
        (
            vec!["get", "configmaps", "-n", "team", "--as=jane"],
            r#"users "jane" is forbidden: User "system:serviceaccount:team:robot" cannot impersonate resource "users" in API group "" at the cluster scope"#,
        ),
        (
            vec![
                "get",
                "configmaps",
                "-n",
                "team",
                helper,
                "--as-group=system:masters",
            ],
            r#"groups "system:masters" is forbidden: User "system:serviceaccount:team:robot" cannot impersonate resource "groups" in API group "" at the cluster scope"#,
        ),
        (
            vec!["get", "pods", "--as=system:serviceaccount:default:default"],
            r#"serviceaccounts "default" is forbidden: User "system:serviceaccount:team:robot" cannot impersonate resource "serviceaccounts" in API group "" in the namespace "default""#,
        ),
    ] {
        let out = as_robot(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_contains(&String::from_utf8_lossy(&out.stderr), message);
    }
}
