//! The operator as users run it: its image (built by `make image`'s script)
//! on a real node (containerd, runc, CNI, kubelet, kube-proxy and
//! kube-scheduler from `test-control-plane`), installed with the Helm chart
//! or `kubectl apply -k` from `deploy/`.
//!
//! One control plane, one node and one Collibra simulator serve the run; the
//! simulator listens on host loopback and is exposed to pods on the node IP.
//! Each test installs its own release in its own namespace, which enforces
//! the restricted Pod Security Standard, with `watchNamespaces` set to that
//! namespace so releases never touch each other's objects.
//!
//! Nothing is skipped: if the image, the control plane or the node cannot be
//! built or started, every test fails with the reason. At the end the node
//! must leave nothing behind (processes, mounts, namespaces, cgroups).

mod faults;

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use collibra_sim::{SimConfig, SimHandle, Simulator};
use serde_json::Value;
use test_control_plane::{ControlPlane, NODE_CONTROLLERS, Node, Options};
use test_support::{Arguments, manifest, tail, tooling};
use tokio::process::Command;

/// The release name; its full name (and so the credentials Secret's and the
/// Lease's) is `collibra-oauth-operator`, as in the README.
const RELEASE: &str = "collibra-oauth-operator";
const CREDENTIALS: &str = "collibra-oauth-operator-credentials";

/// Long enough for a pod start on a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(180);

/// Everything the tests share.
struct World {
    cp: ControlPlane,
    node: Node,
    image_repository: String,
    image_tag: String,
    /// The simulator as pods reach it.
    collibra_url: String,
    collibra: SimHandle,
    _sim: Simulator,
    dir: tempfile::TempDir,
}

impl World {
    async fn start() -> anyhow::Result<World> {
        let image = build_image().await?;
        let cp = ControlPlane::start_with(Options {
            extra_controllers: NODE_CONTROLLERS.iter().map(|c| (*c).to_owned()).collect(),
        })
        .await?;
        eprintln!("control plane ready: {:?}", cp.timings());
        let node = Node::start(&cp).await?;
        eprintln!("node {} ready: {:?}", node.name(), node.timings());
        let archive = image.join("image.tar");
        let began = Instant::now();
        node.load_image(&archive).await?;
        eprintln!("image loaded into the node in {:?}", began.elapsed());
        let reference = std::fs::read_to_string(image.join("ref"))?
            .trim()
            .to_owned();
        let (repository, tag) = reference
            .rsplit_once(':')
            .with_context(|| format!("image reference {reference:?} has no tag"))?;
        let sim = Simulator::start(SimConfig::default()).await?;
        let on_node = node.expose_host_port(sim.addr().port())?;
        Ok(World {
            cp,
            node,
            image_repository: repository.to_owned(),
            image_tag: tag.to_owned(),
            collibra_url: format!("http://{on_node}"),
            collibra: sim.handle(),
            _sim: sim,
            dir: tempfile::tempdir()?,
        })
    }

    async fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        self.cp.kubectl(args).await
    }

    async fn helm(&self, args: &[&str]) -> anyhow::Result<String> {
        let home = self.dir.path().join("helm-home");
        let out = Command::new(tooling::helm_bin().await?)
            .args(args)
            .env("KUBECONFIG", self.cp.kubeconfig_path())
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .stdin(Stdio::null())
            .output()
            .await
            .context("running helm")?;
        ensure!(
            out.status.success(),
            "helm {} failed:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A namespace enforcing the restricted Pod Security Standard, with the
    /// operator's credentials Secret (`client_secret` as given).
    async fn namespace(&self, prefix: &str, client_secret: &str) -> anyhow::Result<String> {
        let ns = self.cp.create_namespace(prefix).await?;
        self.kubectl(&[
            "label",
            "namespace",
            &ns,
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/enforce-version=latest",
        ])
        .await?;
        self.set_credentials(&ns, client_secret).await?;
        Ok(ns)
    }

    /// Creates or replaces the operator's credentials Secret in `ns`.
    async fn set_credentials(&self, ns: &str, client_secret: &str) -> anyhow::Result<()> {
        let secret = self
            .kubectl(&[
                "create",
                "secret",
                "generic",
                CREDENTIALS,
                "--namespace",
                ns,
                "--from-literal=client_id=operator",
                &format!("--from-literal=client_secret={client_secret}"),
                "--dry-run=client",
                "-o",
                "json",
            ])
            .await?;
        self.cp
            .kubectl_with_stdin(&["apply", "-f", "-"], &secret)
            .await?;
        Ok(())
    }

    /// `helm install` as README.md shows it (its `readme:install-helm`
    /// block), with the README's example URL, image, chart path and
    /// namespace replaced by this rig's, then what only the rig needs (no
    /// pulls, this namespace only, text logs) and `extra` flags; waits for
    /// the rollout.
    async fn install(&self, ns: &str, extra: &[&str]) -> anyhow::Result<()> {
        use test_support::readme;
        let chart = tooling::chart();
        let chart = chart.to_str().context("non-UTF-8 chart path")?;
        let command = readme::command("install-helm", &["helm", "install", RELEASE])?;
        let mut args: Vec<String> = Vec::new();
        let mut words = command.iter().skip(1).map(String::as_str).peekable();
        while let Some(word) = words.next() {
            let word = match word {
                "charts/collibra-oauth-operator" => chart.to_owned(),
                "--namespace" => {
                    let name = words
                        .next()
                        .context("README: --namespace without a value")?;
                    ensure!(
                        name == readme::EXAMPLE_NAMESPACE,
                        "README installs into {name:?}, the test expects {:?}",
                        readme::EXAMPLE_NAMESPACE
                    );
                    args.push("--namespace".to_owned());
                    ns.to_owned()
                }
                other => other
                    .replace(readme::EXAMPLE_URL, &self.collibra_url)
                    .replace(readme::EXAMPLE_REPOSITORY, &self.image_repository)
                    .replace(
                        &format!("image.tag={}", readme::EXAMPLE_TAG),
                        &format!("image.tag={}", self.image_tag),
                    ),
            };
            args.push(word);
        }
        let watch = format!("watchNamespaces=[\"{ns}\"]");
        for word in [
            "--set",
            "image.pullPolicy=Never",
            "--set-json",
            &watch,
            "--set",
            "logFormat=text",
        ] {
            args.push(word.to_owned());
        }
        args.extend(extra.iter().map(|w| (*w).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.helm(&args).await?;
        self.rollout(ns).await
    }

    async fn rollout(&self, ns: &str) -> anyhow::Result<()> {
        let timeout = format!("--timeout={}s", WAIT.as_secs());
        if let Err(e) = self
            .kubectl(&[
                "rollout",
                "status",
                &format!("deployment/{RELEASE}"),
                "--namespace",
                ns,
                &timeout,
            ])
            .await
        {
            bail!("{e:#}\n{}", self.diagnose(ns).await);
        }
        Ok(())
    }

    /// Pods, events and operator logs of `ns`, for a failure message.
    async fn diagnose(&self, ns: &str) -> String {
        let mut out = String::new();
        for args in [
            &["get", "pods", "-o", "wide", "--namespace", ns][..],
            &[
                "get",
                "events",
                "--namespace",
                ns,
                "--sort-by=.lastTimestamp",
            ][..],
        ] {
            match self.kubectl(args).await {
                Ok(s) => out.push_str(&s),
                Err(e) => out.push_str(&format!("{e:#}\n")),
            }
        }
        for pod in self.pods(ns).await.unwrap_or_default() {
            let log = self.node.container_log(ns, &pod.name, "operator");
            out.push_str(&format!("---- log of {}:\n{}\n", pod.name, tail(&log, 30)));
        }
        out
    }

    /// The operator's pods in `ns` (not terminating).
    async fn pods(&self, ns: &str) -> anyhow::Result<Vec<Pod>> {
        let text = self
            .kubectl(&[
                "get",
                "pods",
                "--namespace",
                ns,
                "-l",
                "app.kubernetes.io/name=collibra-oauth-operator",
                "-o",
                "json",
            ])
            .await?;
        let list: Value = serde_json::from_str(&text)?;
        let mut pods = Vec::new();
        for p in list["items"].as_array().cloned().unwrap_or_default() {
            if !p["metadata"]["deletionTimestamp"].is_null() {
                continue;
            }
            let ready = p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            pods.push(Pod {
                name: p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                uid: p["metadata"]["uid"].as_str().unwrap_or_default().to_owned(),
                ready,
                restarts: p["status"]["containerStatuses"][0]["restartCount"]
                    .as_u64()
                    .unwrap_or(0),
            });
        }
        Ok(pods)
    }

    /// Applies an OAuthClient in `ns` and waits until it is Ready.
    async fn register(&self, ns: &str, name: &str, client_name: &str) -> anyhow::Result<()> {
        self.cp
            .kubectl_with_stdin(
                &["apply", "--namespace", ns, "-f", "-"],
                &manifest(name, client_name, ""),
            )
            .await?;
        self.wait_ready(ns, name).await
    }

    async fn wait_ready(&self, ns: &str, name: &str) -> anyhow::Result<()> {
        let timeout = format!("--timeout={}s", WAIT.as_secs());
        if let Err(e) = self
            .kubectl(&[
                "wait",
                "--for=condition=Ready",
                &format!("oauthclient/{name}"),
                "--namespace",
                ns,
                &timeout,
            ])
            .await
        {
            let status = self
                .kubectl(&["get", "oauthclient", name, "--namespace", ns, "-o", "yaml"])
                .await
                .unwrap_or_default();
            bail!("{e:#}\n{status}\n{}", self.diagnose(ns).await);
        }
        Ok(())
    }

    /// The OAuthClient's Secret holds credentials the simulator accepts.
    async fn check_secret(&self, ns: &str, name: &str) -> anyhow::Result<()> {
        let id = self.secret_value(ns, name, "client_id").await?;
        let secret = self.secret_value(ns, name, "client_secret").await?;
        ensure!(
            self.collibra.verify_credentials(&id, &secret),
            "the Secret {ns}/{name} does not hold the credentials registered in Collibra"
        );
        Ok(())
    }

    async fn secret_value(&self, ns: &str, name: &str, key: &str) -> anyhow::Result<String> {
        let b64 = self
            .kubectl(&[
                "get",
                "secret",
                name,
                "--namespace",
                ns,
                "-o",
                &format!("jsonpath={{.data.{key}}}"),
            ])
            .await?;
        let bytes = tooling::base64_decode(b64.trim())?;
        Ok(String::from_utf8(bytes)?)
    }

    /// How many clients named `client_name` exist in the simulator.
    fn registered(&self, client_name: &str) -> usize {
        self.collibra
            .clients()
            .iter()
            .filter(|c| c.client_name == client_name)
            .count()
    }

    /// The holder of the release's Lease in `ns`.
    async fn leader(&self, ns: &str) -> anyhow::Result<String> {
        Ok(self
            .kubectl(&[
                "get",
                "lease",
                RELEASE,
                "--namespace",
                ns,
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ])
            .await?
            .trim()
            .to_owned())
    }
}

struct Pod {
    name: String,
    uid: String,
    ready: bool,
    restarts: u64,
}

/// Polls `probe` until it returns `Some`, for at most [`WAIT`].
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        let last = match probe().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => String::from("not yet"),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            bail!("timed out waiting for {what} (last: {last})");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Runs `hack/image/build.sh` (cached by its inputs) and returns its
/// output dir (image.tar, ref).
async fn build_image() -> anyhow::Result<PathBuf> {
    let script = test_support::repo("hack/image/build.sh");
    let began = Instant::now();
    let out = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .await
        .context("running hack/image/build.sh")?;
    ensure!(
        out.status.success(),
        "hack/image/build.sh failed ({}); make node-deps installs podman",
        out.status
    );
    let dir = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .map(|l| PathBuf::from(l.trim()))
        .context("hack/image/build.sh printed no directory")?;
    eprintln!("image ready in {:?}: {}", began.elapsed(), dir.display());
    Ok(dir)
}

test_support::tests!(
    World;
    node_helm_install_probes_pss_and_an_oauthclient,
    node_rotated_credentials_are_read_without_a_restart,
    node_helm_upgrade_rolls_the_pod_without_registering_again,
    node_two_replicas_one_leader_and_a_handover,
    node_kubectl_apply_k_overlay_with_the_image,
    node_helm_uninstall_leaves_credentials_and_clients,
);

/// `helm install`: rollout, the Pod Ready through its probes under the
/// restricted PSS, an OAuthClient Ready with its Secret.
async fn node_helm_install_probes_pss_and_an_oauthclient(w: Arc<World>) -> anyhow::Result<()> {
    let ns = w.namespace("install", "operator-secret").await?;
    w.install(&ns, &[]).await?;
    let pods = w.pods(&ns).await?;
    ensure!(pods.len() == 1, "expected 1 pod, found {}", pods.len());
    ensure!(pods[0].ready, "pod {} is not Ready", pods[0].name);
    // The chart's securityContext is what the restricted policy admitted.
    let sc = w
        .kubectl(&[
            "get",
            "pod",
            &pods[0].name,
            "--namespace",
            &ns,
            "-o",
            "jsonpath={.spec.containers[0].securityContext.readOnlyRootFilesystem} {.spec.securityContext.runAsUser}",
        ])
        .await?;
    ensure!(sc.trim() == "true 65532", "pod security context: {sc}");
    let client = format!("{ns}-billing");
    w.register(&ns, "billing", &client).await?;
    w.check_secret(&ns, "billing").await?;
    ensure!(
        w.registered(&client) == 1,
        "{client} registered {} times",
        w.registered(&client)
    );
    // The probes ran for real: the kubelet recorded no failure and the pod
    // never restarted.
    let pods = w.pods(&ns).await?;
    ensure!(
        pods[0].restarts == 0,
        "the pod restarted {} times",
        pods[0].restarts
    );
    let events = w
        .kubectl(&["get", "events", "--namespace", &ns, "-o", "json"])
        .await?;
    ensure!(
        !events.contains("Unhealthy"),
        "a probe failed: {}",
        w.diagnose(&ns).await
    );
    w.helm(&["uninstall", RELEASE, "--namespace", &ns, "--wait"])
        .await?;
    Ok(())
}

/// A changed credentials Secret reaches the mounted file and the running
/// operator uses it, without a new Pod or a restart.
async fn node_rotated_credentials_are_read_without_a_restart(w: Arc<World>) -> anyhow::Result<()> {
    let ns = w.namespace("rotate", "not-the-secret").await?;
    w.install(&ns, &["--set", "logLevel=info\\,collibra_client=debug"])
        .await?;
    let before = w.pods(&ns).await?;
    ensure!(before.len() == 1, "expected 1 pod, found {}", before.len());
    let client = format!("{ns}-refused");
    w.cp.kubectl_with_stdin(
        &["apply", "--namespace", &ns, "-f", "-"],
        &manifest("refused", &client, ""),
    )
    .await?;
    // With the wrong secret Collibra refuses the operator's token request.
    eventually(
        "the OAuthClient to report the refused credentials",
        || async {
            let reason = w
                .kubectl(&[
                    "get",
                    "oauthclient",
                    "refused",
                    "--namespace",
                    &ns,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].reason}",
                ])
                .await?;
            Ok((reason.trim() == "CollibraRejected").then_some(()))
        },
    )
    .await?;
    ensure!(w.registered(&client) == 0, "registered with a wrong secret");

    w.set_credentials(&ns, "operator-secret").await?;
    // The kubelet updates the mounted Secret in place (the file the
    // container reads, seen here from the node's side).
    let file = w
        .node
        .pod_dir(&before[0].uid)
        .join("volumes/kubernetes.io~secret/collibra-credentials/client_secret");
    eventually("the kubelet to update the mounted credentials", || async {
        Ok(
            (std::fs::read_to_string(&file).ok().as_deref() == Some("operator-secret"))
                .then_some(()),
        )
    })
    .await?;
    // The object refused earlier is retried after 5 minutes (README); a new
    // one shows at once that the running operator uses the new secret.
    let client = format!("{ns}-accepted");
    w.register(&ns, "accepted", &client).await?;
    w.check_secret(&ns, "accepted").await?;
    let log = w.node.container_log(&ns, &before[0].name, "operator");
    ensure!(
        log.contains("credential file changed"),
        "the operator did not report re-reading the credential file:\n{}",
        tail(&log, 20)
    );
    let after = w.pods(&ns).await?;
    ensure!(
        after.len() == 1 && after[0].uid == before[0].uid && after[0].restarts == 0,
        "the pod was replaced or restarted: before {} ({}), after {:?}",
        before[0].name,
        before[0].uid,
        after
            .iter()
            .map(|p| format!("{} ({}, {} restarts)", p.name, p.uid, p.restarts))
            .collect::<Vec<_>>()
    );
    w.helm(&["uninstall", RELEASE, "--namespace", &ns, "--wait"])
        .await?;
    Ok(())
}

/// `helm upgrade` with a changed value rolls the Pod; the registered client
/// is adopted, not registered again.
async fn node_helm_upgrade_rolls_the_pod_without_registering_again(
    w: Arc<World>,
) -> anyhow::Result<()> {
    let ns = w.namespace("upgrade", "operator-secret").await?;
    w.install(&ns, &[]).await?;
    let client = format!("{ns}-kept");
    w.register(&ns, "kept", &client).await?;
    let secret_before = w.secret_value(&ns, "kept", "client_secret").await?;
    let before = w.pods(&ns).await?;
    let chart = tooling::chart();
    let chart = chart.to_str().context("non-UTF-8 chart path")?;
    w.helm(&[
        "upgrade",
        RELEASE,
        chart,
        "--namespace",
        &ns,
        "--reuse-values",
        "--set",
        "logLevel=debug",
    ])
    .await?;
    w.rollout(&ns).await?;
    let after = w.pods(&ns).await?;
    ensure!(
        after.len() == 1 && before.iter().all(|b| b.uid != after[0].uid),
        "helm upgrade did not replace the pod"
    );
    // The new pod has reconciled the object (observed its generation again
    // after starting) without a second registration.
    let new_pod = after[0].name.clone();
    eventually("the new pod to reconcile the OAuthClient", || async {
        let log = w.node.container_log(&ns, &new_pod, "operator");
        Ok(log.contains("kept").then_some(()))
    })
    .await
    .with_context(|| {
        format!(
            "operator log:\n{}",
            w.node.container_log(&ns, &new_pod, "operator")
        )
    })?;
    w.wait_ready(&ns, "kept").await?;
    ensure!(
        w.registered(&client) == 1,
        "{client} registered {} times",
        w.registered(&client)
    );
    ensure!(
        w.secret_value(&ns, "kept", "client_secret").await? == secret_before,
        "the client secret changed"
    );
    w.helm(&["uninstall", RELEASE, "--namespace", &ns, "--wait"])
        .await?;
    Ok(())
}

/// Two replicas: one holds the Lease; deleting it hands over and work goes
/// on with no duplicate registration.
async fn node_two_replicas_one_leader_and_a_handover(w: Arc<World>) -> anyhow::Result<()> {
    let ns = w.namespace("leader", "operator-secret").await?;
    w.install(&ns, &["--set", "replicas=2"]).await?;
    let pods = w.pods(&ns).await?;
    ensure!(
        pods.len() == 2 && pods.iter().all(|p| p.ready),
        "expected 2 ready pods"
    );
    let first = eventually("a leader", || async {
        let l = w.leader(&ns).await?;
        Ok((!l.is_empty()).then_some(l))
    })
    .await?;
    ensure!(
        pods.iter().any(|p| p.name == first),
        "the Lease holder {first} is not one of the pods"
    );
    let a = format!("{ns}-before");
    w.register(&ns, "before", &a).await?;
    // Only the leader reconciles: the other replica's log never mentions
    // the object.
    for p in pods.iter().filter(|p| p.name != first) {
        let log = w.node.container_log(&ns, &p.name, "operator");
        if log.contains("before") {
            let lease = w
                .kubectl(&["get", "lease", RELEASE, "--namespace", &ns, "-o", "yaml"])
                .await
                .unwrap_or_default();
            bail!(
                "the non-leader {} reconciled:\n{}\n---- the leader {first}:\n{}\n---- lease:\n{lease}",
                p.name,
                tail(&log, 20),
                tail(&w.node.container_log(&ns, &first, "operator"), 20)
            );
        }
    }
    w.kubectl(&["delete", "pod", &first, "--namespace", &ns, "--wait=false"])
        .await?;
    let second = eventually("another pod to take the Lease", || async {
        let l = w.leader(&ns).await?;
        Ok((!l.is_empty() && l != first).then_some(l))
    })
    .await?;
    ensure!(second != first, "the Lease did not move");
    let b = format!("{ns}-after");
    w.register(&ns, "after", &b).await?;
    w.wait_ready(&ns, "before").await?;
    ensure!(
        w.registered(&a) == 1,
        "{a} registered {} times",
        w.registered(&a)
    );
    ensure!(
        w.registered(&b) == 1,
        "{b} registered {} times",
        w.registered(&b)
    );
    w.check_secret(&ns, "after").await?;
    w.rollout(&ns).await?;
    w.helm(&["uninstall", RELEASE, "--namespace", &ns, "--wait"])
        .await?;
    Ok(())
}

/// `kubectl apply -k` as README.md shows it: its overlay on deploy/
/// (`readme:kustomization`, with the rig's image and URL) applied with its
/// command (`readme:install-kustomize`), through one more overlay that only
/// the rig needs (no pulls; WATCH_NAMESPACES, so it touches only its own
/// namespace here).
async fn node_kubectl_apply_k_overlay_with_the_image(w: Arc<World>) -> anyhow::Result<()> {
    use test_support::readme;
    const NS: &str = "collibra-oauth-operator";
    let dir = w.dir.path().join("kustomize");
    copy_dir(&test_support::repo("deploy"), &dir.join("deploy"))?;
    let mine = dir.join("my-install");
    std::fs::create_dir_all(&mine)?;
    let kustomization = readme::block("kustomization")?;
    for example in [readme::EXAMPLE_REPOSITORY, readme::EXAMPLE_URL] {
        ensure!(
            kustomization.contains(example),
            "README's overlay no longer shows {example}"
        );
    }
    std::fs::write(
        mine.join("kustomization.yaml"),
        kustomization
            .replace(readme::EXAMPLE_REPOSITORY, &w.image_repository)
            .replace(
                &format!("newTag: \"{}\"", readme::EXAMPLE_TAG),
                &format!("newTag: \"{}\"", w.image_tag),
            )
            .replace(readme::EXAMPLE_URL, &w.collibra_url),
    )?;
    let overlay = dir.join("overlay");
    std::fs::create_dir_all(&overlay)?;
    std::fs::write(
        overlay.join("kustomization.yaml"),
        format!(
            r#"apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../my-install
patches:
  - patch: |
      apiVersion: apps/v1
      kind: Deployment
      metadata:
        name: collibra-oauth-operator
        namespace: {NS}
      spec:
        template:
          spec:
            containers:
              - name: operator
                imagePullPolicy: Never
                env:
                  - name: WATCH_NAMESPACES
                    value: {NS}
"#
        ),
    )?;
    let overlay_path = overlay.to_str().context("non-UTF-8 path")?;
    // The namespace comes from deploy/, so the credentials Secret is created
    // after the apply, as docs/src/install/kustomize.md does.
    let rendered = w.kubectl(&["kustomize", overlay_path]).await?;
    ensure!(
        rendered.contains(&format!("image: {}:{}", w.image_repository, w.image_tag)),
        "the overlay did not set the image"
    );
    let command = readme::command("install-kustomize", &["kubectl", "apply"])?;
    let args: Vec<&str> = command
        .iter()
        .skip(1)
        .map(|word| match word.as_str() {
            "my-install/" | "my-install" => overlay_path,
            other => other,
        })
        .collect();
    ensure!(
        args.contains(&overlay_path),
        "README's kubectl command does not apply my-install/: {command:?}"
    );
    w.kubectl(&args).await.context("kubectl apply -k")?;
    w.set_credentials(NS, "operator-secret").await?;
    w.rollout(NS).await?;
    let enforce = w
        .kubectl(&[
            "get",
            "namespace",
            NS,
            "-o",
            "jsonpath={.metadata.labels.pod-security\\.kubernetes\\.io/enforce}",
        ])
        .await?;
    ensure!(
        enforce.trim() == "restricted",
        "deploy/'s namespace enforces {enforce:?}"
    );
    let client = "kustomize-billing";
    w.register(NS, "billing", client).await?;
    w.check_secret(NS, "billing").await?;
    ensure!(
        w.registered(client) == 1,
        "{client} registered {} times",
        w.registered(client)
    );
    // Remove the operator (not the CRD, which other tests' objects use).
    w.kubectl(&[
        "delete",
        "deployment",
        "collibra-oauth-operator",
        "--namespace",
        NS,
        "--wait=true",
    ])
    .await?;
    Ok(())
}

/// `helm uninstall` removes the operator and leaves what the README says:
/// the credentials Secret, the CRD, the OAuthClients and their Secrets, and
/// the clients in Collibra.
async fn node_helm_uninstall_leaves_credentials_and_clients(w: Arc<World>) -> anyhow::Result<()> {
    let ns = w.namespace("uninstall", "operator-secret").await?;
    w.install(&ns, &[]).await?;
    let client = format!("{ns}-stays");
    w.register(&ns, "stays", &client).await?;
    w.helm(&["uninstall", RELEASE, "--namespace", &ns, "--wait"])
        .await?;
    // The ReplicaSet's pods are removed by the garbage collector after
    // helm has returned; the operator's SIGTERM handling ends them.
    let selector = "app.kubernetes.io/instance=collibra-oauth-operator";
    eventually("the operator's pods to be gone", || async {
        let pods = w
            .kubectl(&[
                "get",
                "pods",
                "--namespace",
                &ns,
                "-l",
                selector,
                "-o",
                "name",
            ])
            .await?;
        Ok(pods.trim().is_empty().then_some(()))
    })
    .await?;
    let left = w
        .kubectl(&[
            "get",
            "deployment,replicaset,serviceaccount,role,rolebinding,service",
            "--namespace",
            &ns,
            "-l",
            selector,
            "-o",
            "name",
        ])
        .await?;
    ensure!(left.trim().is_empty(), "left after uninstall:\n{left}");
    w.kubectl(&["get", "secret", CREDENTIALS, "--namespace", &ns])
        .await
        .context("the credentials Secret was removed")?;
    w.kubectl(&["get", "crd", "oauthclients.oauth.collibra.dev"])
        .await
        .context("the CRD was removed")?;
    w.kubectl(&["get", "oauthclient", "stays", "--namespace", &ns])
        .await
        .context("the OAuthClient was removed")?;
    w.check_secret(&ns, "stays").await?;
    ensure!(
        w.registered(&client) == 1,
        "the client was removed from Collibra"
    );
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

impl test_support::World for World {
    /// Stops the node and checks that it left nothing behind (a leftover
    /// fails the run), then stops the control plane.
    async fn teardown(self) -> anyhow::Result<()> {
        let (dir, netns, name) = (
            self.node.dir().to_path_buf(),
            self.node.netns().to_owned(),
            self.node.name().to_owned(),
        );
        let stopped = self.node.stop();
        let left = test_control_plane::leftovers(&dir, &netns, &name);
        let cp = self.cp.stop();
        stopped.context("stopping the node")?;
        ensure!(left.is_empty(), "the node left behind: {}", left.join(", "));
        eprintln!("node stopped; nothing left behind");
        cp.context("stopping the control plane")
    }
}

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    // One test at a time: the fault test restarts the node's kubelet and
    // containerd under every pod on it.
    if args.test_threads.is_none() {
        args.test_threads = Some(1);
    }
    let mut all = tests();
    all.extend(faults::tests());
    test_support::run(&args, all, "the image, control plane or node", World::start)
}
