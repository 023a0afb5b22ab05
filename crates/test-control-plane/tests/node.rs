//! The rig's node on its own: it registers and becomes Ready, runs a pod
//! under the restricted Pod Security Standard, and leaves nothing behind
//! when stopped (processes, mounts, network namespaces, cgroups, files).

use std::time::{Duration, Instant};

use test_control_plane::{ControlPlane, NODE_CONTROLLERS, Node, Options, leftovers};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_runs_on_the_node_and_stop_leaves_nothing() {
    let cp = ControlPlane::start_with(Options {
        extra_controllers: NODE_CONTROLLERS.iter().map(|c| (*c).to_owned()).collect(),
    })
    .await
    .expect("control plane");
    let node = Node::start(&cp).await.expect("node");
    eprintln!("node ready: {:?}", node.timings());
    let ns = cp.create_namespace("node-smoke").await.expect("namespace");
    cp.kubectl(&[
        "label",
        "namespace",
        &ns,
        "pod-security.kubernetes.io/enforce=restricted",
    ])
    .await
    .expect("label");
    let pause = std::fs::read_to_string(node.dir().join("sandbox-image"))
        .expect("the node records its sandbox image");
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": "sleeper", "namespace": ns },
        "spec": {
            "securityContext": {
                "runAsNonRoot": true,
                "runAsUser": 65532,
                "seccompProfile": { "type": "RuntimeDefault" },
            },
            "containers": [{
                "name": "sleep",
                "image": pause.trim(),
                "imagePullPolicy": "Never",
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "capabilities": { "drop": ["ALL"] },
                },
            }],
        },
    });
    cp.kubectl_with_stdin(&["apply", "-f", "-"], &pod.to_string())
        .await
        .expect("pod admitted under the restricted policy");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let phase = cp
            .kubectl(&[
                "get",
                "pod",
                "sleeper",
                "--namespace",
                &ns,
                "-o",
                "jsonpath={.status.phase} {.status.podIP}",
            ])
            .await
            .expect("get pod");
        if phase.starts_with("Running 10.244.") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the pod did not run with a pod IP: {phase:?}\n{}",
            cp.kubectl(&["describe", "pod", "sleeper", "--namespace", &ns])
                .await
                .unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (dir, netns, name) = (
        node.dir().to_path_buf(),
        node.netns().to_owned(),
        node.name().to_owned(),
    );
    node.stop().expect("stopping the node");
    let left = leftovers(&dir, &netns, &name);
    assert!(left.is_empty(), "left behind: {left:?}");
    cp.stop().expect("stopping the control plane");
}
