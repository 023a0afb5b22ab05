//! A real node for the test control plane: Debian's containerd and runc as
//! the container runtime, the CNI bridge plugin for pod networking, and
//! kubelet, kube-proxy and kube-scheduler built from the same
//! `k8s.io/kubernetes` pin as the API server (`hack/node/build.sh`).
//!
//! The node lives in a network namespace the rig creates (`coo-node-PID-N`):
//! its IP ([`NODE_IP`]) is on a bridge inside that namespace, pods get
//! addresses from [`POD_CIDR`] on the CNI bridge, and nothing is added to
//! the host's network. The API server and other test servers listen on
//! host loopback only; [`Node::expose_host_port`] makes one reachable from
//! the node and its pods through a forwarder whose listening socket is
//! created inside the namespace. The `kubernetes` Service points at the
//! forwarder of the API server, and kube-proxy makes its ClusterIP work from
//! pods, as in a real cluster.
//!
//! Stopping (or dropping) the node kills every process it started (the
//! containers too), unmounts everything under its temp dir, deletes the
//! namespaces and cgroups and removes the dir; a killed test's leftovers
//! are removed by the next start.

use std::collections::{BTreeSet, HashSet};
use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::{Value, json};

use crate::ControlPlane;
use crate::process::Component;

/// The node's IP, on a bridge inside its network namespace.
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 1);

/// The pods' address range (CNI host-local IPAM on the `cni0` bridge).
pub const POD_CIDR: &str = "10.244.0.0/24";

/// kube-controller-manager controllers a node needs beyond the rig's
/// defaults: Deployments and their ReplicaSets, the `kube-root-ca.crt`
/// ConfigMap that every service-account token volume mounts, and node
/// lifecycle (it lifts the not-ready taint the kubelet registers with).
pub const NODE_CONTROLLERS: [&str; 4] = [
    "deployment-controller",
    "replicaset-controller",
    "root-ca-certificate-publisher-controller",
    "node-lifecycle-controller",
];

/// Port of the API server's forwarder on the node IP (the `kubernetes`
/// Service's endpoint).
const APISERVER_PORT_ON_NODE: u16 = 6443;

/// Prefix of the node's network namespace and temp dir names.
const NETNS_PREFIX: &str = "coo-node-";
const DIR_PREFIX: &str = "test-node-";
const OWNER_FILE: &str = "owner.pid";

/// Executables the node needs from the host (Debian packages, installed by
/// `make node-deps`).
const HOST_PROGRAMS: [(&str, &str); 7] = [
    ("containerd", "containerd"),
    ("containerd-shim-runc-v2", "containerd"),
    ("ctr", "containerd"),
    ("runc", "runc"),
    ("iptables", "iptables"),
    ("ip", "iproute2"),
    ("nsenter", "util-linux"),
];
const CNI_BIN_DIR: &str = "/usr/lib/cni";
const CNI_PLUGINS: [&str; 3] = ["bridge", "host-local", "loopback"];

/// PATH of the node's processes: runc, iptables and the shim live in sbin.
const NODE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const STOP_GRACE: Duration = Duration::from_secs(10);
const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(180);
const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// Distinguishes nodes started by one test process.
static NEXT_NODE: AtomicU32 = AtomicU32::new(0);

/// How long each phase of [`Node::start`] took.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeTimings {
    /// Locating (on a cold cache: building) kubelet, kube-proxy,
    /// kube-scheduler and the pause image.
    pub binaries: Duration,
    /// From spawning containerd until the pause image is imported.
    pub containerd: Duration,
    /// From spawning kubelet until the node is Ready.
    pub kubelet: Duration,
    /// The whole of `start`.
    pub total: Duration,
}

/// A running node registered with a [`ControlPlane`].
pub struct Node {
    name: String,
    netns: String,
    dir: Option<tempfile::TempDir>,
    dir_path: PathBuf,
    containerd_address: PathBuf,
    cgroup_root: String,
    containerd: Component,
    kubelet: Component,
    kube_proxy: Component,
    scheduler: Component,
    forwards: Mutex<Vec<tokio::task::AbortHandle>>,
    timings: NodeTimings,
    stopped: bool,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name)
            .field("netns", &self.netns)
            .field("dir", &self.dir_path)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Starts containerd, kube-scheduler, kube-proxy and kubelet for `cp`
    /// and waits until the node is Ready. `cp` must run the controllers in
    /// [`NODE_CONTROLLERS`] (see [`crate::Options`]).
    pub async fn start(cp: &ControlPlane) -> Result<Node> {
        let began = Instant::now();
        check_host_programs()?;
        let bin_dir = crate::run_build_script(
            "hack/node/build.sh",
            &[
                "kubelet",
                "kube-proxy",
                "kube-scheduler",
                "pause.tar",
                "pause.ref",
            ],
        )
        .await?;
        let binaries = began.elapsed();

        let sandbox_image = std::fs::read_to_string(bin_dir.join("pause.ref"))
            .context("reading pause.ref")?
            .trim()
            .to_owned();
        remove_stale_nodes();
        let serial = NEXT_NODE.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{serial}", std::process::id());
        let name = format!("coo-node-{id}");
        let netns = format!("{NETNS_PREFIX}{id}");
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir()
            .context("creating the node's temp dir")?;
        let dir_path = dir.path().to_path_buf();
        std::fs::write(dir_path.join(OWNER_FILE), std::process::id().to_string())
            .context("writing the node's owner file")?;
        std::fs::write(dir_path.join("netns"), &netns)?;
        std::fs::write(dir_path.join("sandbox-image"), &sandbox_image)?;
        let cgroup_root = format!("/{name}");
        std::fs::write(dir_path.join("cgroup"), &cgroup_root)?;

        let containerd_address = dir_path.join("containerd/containerd.sock");
        let in_netns = |name: &'static str, program: &Path, args: Vec<OsString>| {
            let mut full: Vec<OsString> = vec![
                format!("--net=/run/netns/{netns}").into(),
                "--".into(),
                "env".into(),
                format!("PATH={NODE_PATH}").into(),
                program.into(),
            ];
            full.extend(args);
            Component::new(
                name,
                PathBuf::from("nsenter"),
                full,
                dir_path.join(format!("{name}.log")),
                STOP_GRACE,
            )
        };
        let containerd = in_netns(
            "containerd",
            Path::new("containerd"),
            vec!["--config".into(), dir_path.join("containerd.toml").into()],
        );
        let kubelet = in_netns(
            "kubelet",
            &bin_dir.join("kubelet"),
            kubelet_args(&dir_path, &name),
        );
        let kube_proxy = in_netns(
            "kube-proxy",
            &bin_dir.join("kube-proxy"),
            vec!["--config".into(), dir_path.join("kube-proxy.yaml").into()],
        );
        let scheduler = Component::new(
            "kube-scheduler",
            bin_dir.join("kube-scheduler"),
            vec![
                "--kubeconfig".into(),
                cp.kubeconfig_path().into(),
                "--leader-elect=false".into(),
                "--secure-port=0".into(),
                "--profiling=false".into(),
            ],
            dir_path.join("kube-scheduler.log"),
            STOP_GRACE,
        );

        // From here on an early return drops `node`, which undoes whatever
        // was already set up.
        let mut node = Node {
            name,
            netns,
            dir: Some(dir),
            dir_path,
            containerd_address,
            cgroup_root,
            containerd,
            kubelet,
            kube_proxy,
            scheduler,
            forwards: Mutex::new(Vec::new()),
            timings: NodeTimings {
                binaries,
                ..NodeTimings::default()
            },
            stopped: false,
        };
        node.create_network().await?;
        node.write_configs(cp, &sandbox_image)?;
        for controller in cgroup_controllers() {
            // The kubelet places pods under its cgroup root, which must exist
            // in every hierarchy.
            let path = controller.join(node.cgroup_root.trim_start_matches('/'));
            std::fs::create_dir_all(&path)
                .with_context(|| format!("creating cgroup {}", path.display()))?;
        }
        let api = SocketAddr::from((Ipv4Addr::LOCALHOST, cp.apiserver_port));
        node.forward(SocketAddrV4::new(NODE_IP, APISERVER_PORT_ON_NODE), api)?;

        let deadline = Instant::now() + start_timeout();
        let phase = Instant::now();
        node.containerd.start()?;
        node.wait_until(
            "containerd to answer",
            deadline,
            &[&node.containerd],
            || node.ctr(&["version"]),
        )
        .await?;
        node.load_image(&bin_dir.join("pause.tar")).await?;
        node.timings.containerd = phase.elapsed();

        publish_apiserver_endpoint(cp).await?;
        node.scheduler.start()?;
        node.kube_proxy.start()?;
        let phase = Instant::now();
        node.kubelet.start()?;
        let node_name = node.name.clone();
        node.wait_until(
            "the node to become Ready",
            deadline,
            &[
                &node.containerd,
                &node.kubelet,
                &node.kube_proxy,
                &node.scheduler,
            ],
            || async {
                let status = cp
                    .kubectl(&[
                        "get",
                        "node",
                        &node_name,
                        "--request-timeout=5s",
                        "-o",
                        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                    ])
                    .await?;
                if status.trim() == "True" {
                    Ok(())
                } else {
                    Err(anyhow!("Ready is {:?}", status.trim()))
                }
            },
        )
        .await?;
        node.timings.kubelet = phase.elapsed();
        node.timings.total = began.elapsed();
        tracing::info!(node = %node.name, dir = %node.dir_path.display(), timings = ?node.timings, "node ready");
        Ok(node)
    }

    /// The node's name (also its hostname for the kubelet).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The network namespace the node's processes run in (in `/run/netns`).
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// The temp dir with configs, logs and the runtimes' state.
    pub fn dir(&self) -> &Path {
        &self.dir_path
    }

    /// How long each phase of [`Node::start`] took.
    pub fn timings(&self) -> NodeTimings {
        self.timings
    }

    /// Makes `127.0.0.1:port` of the host reachable from the node and its
    /// pods as `NODE_IP:port`, and returns that address.
    pub fn expose_host_port(&self, port: u16) -> Result<SocketAddr> {
        let on_node = SocketAddrV4::new(NODE_IP, port);
        self.forward(on_node, SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
        Ok(SocketAddr::V4(on_node))
    }

    /// Imports a docker-archive (`podman save --format docker-archive`)
    /// into the runtime's `k8s.io` namespace, where the kubelet finds it
    /// (pods must use `imagePullPolicy: Never` or `IfNotPresent`).
    pub async fn load_image(&self, archive: &Path) -> Result<()> {
        let archive = archive
            .to_str()
            .ok_or_else(|| anyhow!("image archive path {} is not UTF-8", archive.display()))?;
        self.ctr(&["images", "import", archive])
            .await
            .with_context(|| format!("importing {archive} into the node's containerd"))
    }

    /// The log of a container of a pod, read from the kubelet's pod log dir
    /// (the API server cannot dial the kubelet inside the namespace, so
    /// `kubectl logs` does not work here). Empty if there is none yet.
    pub fn container_log(&self, namespace: &str, pod: &str, container: &str) -> String {
        let prefix = format!("{namespace}_{pod}_");
        let Ok(entries) = std::fs::read_dir(self.dir_path.join("pod-logs")) else {
            return String::new();
        };
        let mut out = String::new();
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().starts_with(&prefix) {
                continue;
            }
            let Ok(files) = std::fs::read_dir(entry.path().join(container)) else {
                continue;
            };
            let mut files: Vec<PathBuf> = files.flatten().map(|f| f.path()).collect();
            files.sort();
            for file in files {
                if let Ok(text) = std::fs::read_to_string(&file) {
                    out.push_str(&text);
                }
            }
        }
        out
    }

    /// The kubelet's directory of a pod (by uid): its volumes are under
    /// `volumes/<plugin>/<name>/`, as the container sees them.
    pub fn pod_dir(&self, pod_uid: &str) -> PathBuf {
        self.dir_path.join("kubelet/pods").join(pod_uid)
    }

    /// Process ids of the node's components while they run.
    pub fn pids(&self) -> Vec<u32> {
        self.components().iter().filter_map(|c| c.pid()).collect()
    }

    /// The log file of `containerd`, `kubelet`, `kube-proxy` or
    /// `kube-scheduler`.
    pub fn log_path(&self, component: &str) -> Option<&Path> {
        self.components()
            .into_iter()
            .find(|c| c.name == component)
            .map(Component::log_path)
    }

    /// SIGKILLs a container's task through containerd (`ctr task kill`), as
    /// an OOM kill or a crash would; the kubelet sees it exit and restarts
    /// it as the pod's `restartPolicy` says. `container_id` is a pod
    /// status's `containerID` (`containerd://ID`) or the bare id.
    pub async fn kill_container(&self, container_id: &str) -> Result<()> {
        let id = container_id
            .strip_prefix("containerd://")
            .unwrap_or(container_id);
        if id.is_empty() {
            bail!("no container id to kill");
        }
        self.ctr(&["task", "kill", "--signal", "SIGKILL", id])
            .await
            .with_context(|| format!("killing container {id} through containerd"))
    }

    /// Restarts the node's container runtime and kubelet as
    /// `systemctl restart containerd kubelet` would: SIGTERM to both, then
    /// both started again with the same flags and state. Running containers
    /// survive it (their runc shims outlive containerd by design). Waits
    /// until containerd answers and the kubelet has renewed its node Lease
    /// again, i.e. talks to the API server.
    pub async fn restart_kubelet_and_containerd(
        &self,
        cp: &ControlPlane,
    ) -> Result<RuntimeRestart> {
        let began = Instant::now();
        let lease = || async {
            cp.kubectl(&[
                "get",
                "lease",
                &self.name,
                "--namespace",
                "kube-node-lease",
                "--request-timeout=5s",
                "-o",
                "jsonpath={.spec.renewTime}",
            ])
            .await
            .map(|s| s.trim().to_owned())
        };
        let renewed_before = lease().await.unwrap_or_default();
        self.kubelet.stop().await?;
        self.containerd.stop().await?;
        let stopped = began.elapsed();
        let deadline = Instant::now() + start_timeout();
        self.containerd.start()?;
        self.wait_until(
            "containerd to answer after its restart",
            deadline,
            &[&self.containerd],
            || self.ctr(&["version"]),
        )
        .await?;
        let containerd = began.elapsed();
        self.kubelet.start()?;
        self.wait_until(
            "the kubelet to renew its node Lease after its restart",
            deadline,
            &[&self.containerd, &self.kubelet],
            || async {
                let now = lease().await?;
                if !now.is_empty() && now != renewed_before {
                    Ok(())
                } else {
                    Err(anyhow!("node Lease still renewed at {now:?}"))
                }
            },
        )
        .await?;
        Ok(RuntimeRestart {
            stopped,
            containerd,
            total: began.elapsed(),
        })
    }

    /// Drops every TCP packet between `pod_ip` and `port` on the node's
    /// address, both ways, in the node's network namespace (iptables
    /// `INPUT` and `OUTPUT`): the pod's connections to a server exposed
    /// with [`Node::expose_host_port`] hang, as when a network path to it
    /// fails, until [`Node::heal_tcp`]. Nothing outside the namespace changes.
    pub async fn cut_tcp(&self, pod_ip: &str, port: u16) -> Result<()> {
        for rule in cut_rules(pod_ip, port) {
            self.iptables("-I", &rule).await?;
        }
        Ok(())
    }

    /// Removes what [`Node::cut_tcp`] added for `pod_ip` and `port`.
    pub async fn heal_tcp(&self, pod_ip: &str, port: u16) -> Result<()> {
        for rule in cut_rules(pod_ip, port) {
            self.iptables("-D", &rule).await?;
        }
        Ok(())
    }

    async fn iptables(&self, op: &str, rule: &[String]) -> Result<()> {
        let netns = format!("--net=/run/netns/{}", self.netns);
        let mut args: Vec<&str> = vec![&netns, "--", "iptables", "-w", op];
        args.extend(rule.iter().map(String::as_str));
        run("nsenter", &args).await
    }

    /// Stops everything and removes every trace (processes, containers,
    /// mounts, namespaces, cgroups, the temp dir); an error names what could
    /// not be removed.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn components(&self) -> [&Component; 4] {
        [
            &self.containerd,
            &self.kubelet,
            &self.kube_proxy,
            &self.scheduler,
        ]
    }

    fn forward(&self, listen: SocketAddrV4, target: SocketAddr) -> Result<()> {
        let listener = bind_in_netns(&self.netns, listen)?;
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)
            .context("registering the forwarder with the runtime")?;
        let task = tokio::spawn(async move {
            // Dropped with the task, which aborts the open connections too.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                match listener.accept().await {
                    Ok((mut inbound, _)) => {
                        connections.spawn(async move {
                            if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound)
                                    .await;
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!(%listen, "forwarder accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                // Reap finished connections so the set does not grow.
                while connections.try_join_next().is_some() {}
            }
        });
        self.forwards
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task.abort_handle());
        Ok(())
    }

    async fn create_network(&self) -> Result<()> {
        let ns = self.netns.as_str();
        run("ip", &["netns", "add", ns]).await?;
        let node_cidr = format!("{NODE_IP}/24");
        for args in [
            &["-n", ns, "link", "set", "lo", "up"][..],
            // A bridge with no ports holds the node IP: a local address of
            // the namespace that pods reach through the CNI bridge's routing.
            &["-n", ns, "link", "add", "node0", "type", "bridge"][..],
            &["-n", ns, "addr", "add", &node_cidr, "dev", "node0"][..],
            &["-n", ns, "link", "set", "node0", "up"][..],
        ] {
            run("ip", args).await?;
        }
        let netns_path = format!("--net=/run/netns/{ns}");
        run(
            "nsenter",
            &[&netns_path, "--", "sysctl", "-qw", "net.ipv4.ip_forward=1"],
        )
        .await?;
        Ok(())
    }

    fn write_configs(&self, cp: &ControlPlane, sandbox_image: &str) -> Result<()> {
        let dir = &self.dir_path;
        let write = |name: &str, text: &str| -> Result<PathBuf> {
            let path = dir.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            Ok(path)
        };
        let ca = write("ca.crt", &cp.pki.ca_pem)?;

        // The node's components reach the API server through its forwarder
        // on the node IP; the serving certificate names `kubernetes`.
        let mut kubeconfig: Value = serde_json::from_str(&cp.render_kubeconfig(None))
            .context("parsing the admin kubeconfig")?;
        kubeconfig["clusters"][0]["cluster"]["server"] =
            json!(format!("https://{NODE_IP}:{APISERVER_PORT_ON_NODE}"));
        kubeconfig["clusters"][0]["cluster"]["tls-server-name"] = json!("kubernetes");
        let kubeconfig = write("node.kubeconfig", &kubeconfig.to_string())?;

        let d = |p: &str| dir.join(p).display().to_string();
        let containerd = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{address}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  # The sandbox refuses raising oom_score_adj and has no AppArmor; without
  # these, runc fails with "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  # Pod network namespaces under the state dir, not /var/run/netns, so
  # that clean-up finds them among the node's own mounts.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{runc_root}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{cni_conf}"
"#,
            root = d("containerd/root"),
            state = d("containerd/state"),
            address = self.containerd_address.display(),
            opt = d("containerd/opt"),
            runc_root = d("containerd/runc"),
            cni_conf = d("cni/net.d"),
        );
        write("containerd.toml", &containerd)?;

        let cni = json!({
            "cniVersion": "0.4.0",
            "name": "coo-node",
            "plugins": [{
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": POD_CIDR }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": d("cni/ipam"),
                },
            }],
        });
        write("cni/net.d/10-coo-node.conflist", &cni.to_string())?;

        let kubelet = json!({
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            // The host has cgroup v1 (v2 only at /sys/fs/cgroup/unified).
            "failCgroupV1": false,
            "cgroupDriver": "cgroupfs",
            "cgroupsPerQOS": false,
            "cgroupRoot": self.cgroup_root,
            "enforceNodeAllocatable": [],
            "failSwapOn": false,
            "localStorageCapacityIsolation": false,
            "evictionHard": {},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "address": NODE_IP.to_string(),
            "port": 10250,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": 10248,
            "containerRuntimeEndpoint": format!("unix://{}", self.containerd_address.display()),
            "authentication": {
                "anonymous": { "enabled": false },
                "webhook": { "enabled": false },
                "x509": { "clientCAFile": ca },
            },
            "authorization": { "mode": "AlwaysAllow" },
            "podLogsDir": d("pod-logs"),
            // Secret volumes are refreshed on a pod's sync; the default
            // (1 min) would make a credential rotation slow to observe.
            "syncFrequency": "5s",
            "nodeStatusUpdateFrequency": "5s",
            "maxPods": 32,
            "serializeImagePulls": false,
            "shutdownGracePeriod": "0s",
            "protectKernelDefaults": false,
        });
        write("kubelet.yaml", &kubelet.to_string())?;

        let proxy = json!({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": { "kubeconfig": kubeconfig },
            "mode": "iptables",
            "clusterCIDR": POD_CIDR,
            "hostnameOverride": self.name,
            "bindAddress": NODE_IP.to_string(),
            "healthzBindAddress": "127.0.0.1:10256",
            "metricsBindAddress": "127.0.0.1:10249",
            // Conntrack limits are host-wide sysctls the sandbox may not
            // change; zero keeps them as they are.
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
        });
        write("kube-proxy.yaml", &proxy.to_string())?;
        Ok(())
    }

    async fn ctr(&self, args: &[&str]) -> Result<()> {
        let mut full = vec![
            "--address".to_owned(),
            self.containerd_address.display().to_string(),
            "--namespace".to_owned(),
            "k8s.io".to_owned(),
        ];
        full.extend(args.iter().map(|a| (*a).to_owned()));
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        run("ctr", &refs).await
    }

    async fn wait_until<F, Fut>(
        &self,
        what: &str,
        deadline: Instant,
        watched: &[&Component],
        probe: F,
    ) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        crate::wait_until(what, deadline, watched, PROBE_INTERVAL, probe).await
    }

    fn shutdown(&mut self) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let mut errors = Vec::new();
        for task in self
            .forwards
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
        // The kubelet first, so it does not restart containers as they die.
        for wave in [&[&self.kubelet, &self.kube_proxy, &self.scheduler][..]] {
            for c in wave {
                c.begin_stop();
            }
            let since = Instant::now();
            for c in wave {
                if let Err(e) = c.finish_stop_blocking(since) {
                    errors.push(format!("stopping {}: {e:#}", c.name));
                }
            }
        }
        // Containers: every process below the runc shims of this containerd
        // (the shims outlive containerd by design).
        let shims = processes_mentioning(&self.containerd_address.display().to_string());
        kill_trees(&shims, false);
        self.containerd.begin_stop();
        if let Err(e) = self.containerd.finish_stop_blocking(Instant::now()) {
            errors.push(format!("stopping containerd: {e:#}"));
        }
        kill_trees(&shims, true);
        errors.extend(clean_up(&self.dir_path, &self.netns, &self.cgroup_root));
        if let Some(dir) = self.dir.take()
            && let Err(e) = dir.close()
        {
            errors.push(format!("removing {}: {e}", self.dir_path.display()));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(anyhow!(errors.join("; ")))
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!("stopping the node: {e:#}");
        }
    }
}

/// How long [`Node::restart_kubelet_and_containerd`] took, from its start.
#[derive(Debug, Clone, Copy, Default)]
pub struct RuntimeRestart {
    /// Until both had exited.
    pub stopped: Duration,
    /// Until containerd answered again.
    pub containerd: Duration,
    /// Until the kubelet had renewed its node Lease again.
    pub total: Duration,
}

/// The iptables rules (chain and match, after `-I`/`-D`) that cut TCP
/// between a pod and a port on the node: its packets to the port, and the
/// port's packets to it.
fn cut_rules(pod_ip: &str, port: u16) -> [Vec<String>; 2] {
    let port = port.to_string();
    let rule = |chain: &str, addr_flag: &str, port_flag: &str| {
        [
            chain,
            addr_flag,
            pod_ip,
            "-p",
            "tcp",
            port_flag,
            &port,
            "-m",
            "comment",
            "--comment",
            "test-control-plane cut",
            "-j",
            "DROP",
        ]
        .map(str::to_owned)
        .to_vec()
    };
    [
        rule("INPUT", "-s", "--dport"),
        rule("OUTPUT", "-d", "--sport"),
    ]
}

/// Everything of a node outside its processes: mounts under its dir (the
/// kubelet's volumes and its self bind mount, containerd's rootfs and shm
/// mounts, the pods' network namespaces), the node's namespace, its
/// cgroups. Returns what could not be removed.
fn clean_up(dir: &Path, netns: &str, cgroup_root: &str) -> Vec<String> {
    let mut errors = Vec::new();
    // Nested mounts (a volume inside the kubelet's self bind mount) may need
    // more than one pass.
    for _ in 0..3 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            break;
        }
        for m in mounts.iter().rev() {
            let _ = rustix::mount::unmount(m.as_path(), rustix::mount::UnmountFlags::DETACH);
        }
    }
    for m in mounts_under(dir) {
        errors.push(format!("still mounted: {}", m.display()));
    }
    let path = Path::new("/run/netns").join(netns);
    if path.exists() {
        let _ = rustix::mount::unmount(&path, rustix::mount::UnmountFlags::DETACH);
        if let Err(e) = std::fs::remove_file(&path) {
            errors.push(format!("removing {}: {e}", path.display()));
        }
    }
    for controller in cgroup_controllers() {
        let root = controller.join(cgroup_root.trim_start_matches('/'));
        if root.is_dir()
            && let Err(e) = remove_cgroup_tree(&root)
        {
            errors.push(format!("removing cgroup {}: {e}", root.display()));
        }
    }
    errors
}

/// v1 hierarchies under /sys/fs/cgroup (plus the unified one).
fn cgroup_controllers() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && !p.is_symlink())
        .collect()
}

/// Removes a cgroup dir and its children, deepest first (cgroup dirs
/// are removed with rmdir; their files are virtual).
fn remove_cgroup_tree(path: &Path) -> std::io::Result<()> {
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&entry.path())?;
            }
        }
    }
    let mut last = Ok(());
    // A cgroup whose last task just died may be busy for a moment.
    for _ in 0..20 {
        last = std::fs::remove_dir(path);
        if last.is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    last
}

/// Mount points at or under `dir`, in mount order (pod network namespaces
/// included: containerd keeps them under its state dir).
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in text.lines() {
        // Field 5 is the mount point, with spaces etc. octal-escaped.
        let Some(point) = line.split(' ').nth(4) else {
            continue;
        };
        let point = PathBuf::from(unescape_mountinfo(point));
        if point.starts_with(dir) {
            out.push(point);
        }
    }
    out
}

fn unescape_mountinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Pids of processes whose command line contains `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(needle)
                })
                .unwrap_or(false)
        })
        .collect()
}

/// (pid, parent pid) of every process.
fn process_table() -> Vec<(u32, u32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // "pid (comm) state ppid ...": comm may hold spaces and parens.
            let rest = &stat[stat.rfind(')')? + 1..];
            let ppid = rest.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect()
}

/// SIGKILLs the descendants of `roots` (and the roots themselves if
/// `roots_too`), waiting up to a few seconds for them to be gone.
fn kill_trees(roots: &[u32], roots_too: bool) {
    let table = process_table();
    let mut victims: BTreeSet<u32> = BTreeSet::new();
    let mut frontier: Vec<u32> = roots.to_vec();
    while let Some(p) = frontier.pop() {
        for (child, _) in table.iter().filter(|(_, ppid)| *ppid == p) {
            if victims.insert(*child) {
                frontier.push(*child);
            }
        }
    }
    if roots_too {
        victims.extend(roots);
    }
    for pid in &victims {
        if let Some(pid) = rustix::process::Pid::from_raw(*pid as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && victims.iter().any(|p| is_running(*p)) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True while `pid` exists and is not a zombie.
fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Removes nodes of test processes that were killed: their components
/// died with them, but containers, mounts, the namespace and cgroups stay.
fn remove_stale_nodes() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(DIR_PREFIX) {
            continue;
        }
        let dir = entry.path();
        let Some(pid) = std::fs::read_to_string(dir.join(OWNER_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        tracing::info!(dir = %dir.display(), pid, "removing a killed test's node");
        let socket = dir.join("containerd/containerd.sock");
        let mut stale = processes_mentioning(&dir.display().to_string());
        stale.extend(processes_mentioning(&socket.display().to_string()));
        kill_trees(&stale, true);
        let netns = std::fs::read_to_string(dir.join("netns")).unwrap_or_default();
        let cgroup = std::fs::read_to_string(dir.join("cgroup")).unwrap_or_default();
        for e in clean_up(&dir, netns.trim(), cgroup.trim()) {
            tracing::warn!("cleaning up a killed test's node: {e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// What of a stopped node is still there: processes mentioning its dir,
/// mounts under it, its namespace, its cgroups. Empty when it is all gone.
pub fn leftovers(dir: &Path, netns: &str, name: &str) -> Vec<String> {
    let mut out: Vec<String> = processes_mentioning(&dir.display().to_string())
        .into_iter()
        .map(|p| format!("process {p}"))
        .collect();
    out.extend(
        mounts_under(dir)
            .into_iter()
            .map(|m| format!("mount {}", m.display())),
    );
    if Path::new("/run/netns").join(netns).exists() {
        out.push(format!("network namespace {netns}"));
    }
    for c in cgroup_controllers() {
        let p = c.join(name);
        if p.exists() {
            out.push(format!("cgroup {}", p.display()));
        }
    }
    if dir.exists() {
        out.push(format!("dir {}", dir.display()));
    }
    out
}

/// Binds a TCP listener inside the network namespace `/run/netns/NETNS`,
/// on a short-lived thread (a thread's namespace is its own; the socket
/// stays in the namespace it was created in).
fn bind_in_netns(netns: &str, addr: SocketAddrV4) -> Result<std::net::TcpListener> {
    let path = Path::new("/run/netns").join(netns);
    let file = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            rustix::thread::move_into_link_name_space(
                file.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .with_context(|| format!("entering {}", path.display()))?;
            std::net::TcpListener::bind(addr)
                .with_context(|| format!("listening on {addr} in {netns}"))
        })
        .join()
        .map_err(|_| anyhow!("the thread binding {addr} in {netns} panicked"))?
    })
}

/// Points the `kubernetes` Service at the API server's forwarder on the
/// node (the API server runs with `--endpoint-reconciler-type=none`, as its
/// own address is loopback).
async fn publish_apiserver_endpoint(cp: &ControlPlane) -> Result<()> {
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kubernetes-test-node",
            "namespace": "default",
            "labels": {
                "kubernetes.io/service-name": "kubernetes",
                "endpointslice.kubernetes.io/managed-by": "test-control-plane",
            },
        },
        "addressType": "IPv4",
        "endpoints": [{ "addresses": [NODE_IP.to_string()], "conditions": { "ready": true } }],
        "ports": [{ "name": "https", "port": APISERVER_PORT_ON_NODE, "protocol": "TCP" }],
    });
    cp.kubectl_with_stdin(&["apply", "-f", "-"], &slice.to_string())
        .await
        .context("publishing the kubernetes Service's endpoint")?;
    Ok(())
}

fn kubelet_args(dir: &Path, name: &str) -> Vec<OsString> {
    vec![
        "--config".into(),
        dir.join("kubelet.yaml").into(),
        "--kubeconfig".into(),
        dir.join("node.kubeconfig").into(),
        "--root-dir".into(),
        dir.join("kubelet").into(),
        "--cert-dir".into(),
        dir.join("kubelet-pki").into(),
        "--hostname-override".into(),
        name.into(),
        "--node-ip".into(),
        NODE_IP.to_string().into(),
    ]
}

fn check_host_programs() -> Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut search: Vec<PathBuf> = std::env::split_paths(&path).collect();
    search.extend(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from));
    let mut missing: Vec<String> = HOST_PROGRAMS
        .iter()
        .filter(|(p, _)| !search.iter().any(|d| d.join(p).is_file()))
        .map(|(p, pkg)| format!("{p} (Debian package {pkg})"))
        .collect();
    missing.extend(
        CNI_PLUGINS
            .iter()
            .filter(|p| !Path::new(CNI_BIN_DIR).join(p).is_file())
            .map(|p| format!("{CNI_BIN_DIR}/{p} (Debian package containernetworking-plugins)")),
    );
    let unique: HashSet<&String> = missing.iter().collect();
    if unique.is_empty() {
        Ok(())
    } else {
        bail!(
            "the test node needs programs that are not installed: {} (make node-deps installs them)",
            missing.join(", ")
        )
    }
}

fn start_timeout() -> Duration {
    std::env::var("NODE_START_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(DEFAULT_START_TIMEOUT, Duration::from_secs)
}

/// Runs a short command; a non-zero exit is an error with its stderr.
async fn run(program: &str, args: &[&str]) -> Result<()> {
    let output = tokio::process::Command::new(program)
        .args(args)
        .env("PATH", NODE_PATH)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running {program}"))?;
    if output.status.success() {
        Ok(())
    } else {
        bail!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }

    #[test]
    fn a_cut_drops_both_directions_between_the_pod_and_the_port() {
        let [inbound, outbound] = cut_rules("10.244.0.7", 4321);
        let text = |r: &[String]| r.join(" ");
        assert!(
            text(&inbound).starts_with("INPUT -s 10.244.0.7 -p tcp --dport 4321 ")
                && text(&inbound).ends_with("-j DROP"),
            "{inbound:?}"
        );
        assert!(
            text(&outbound).starts_with("OUTPUT -d 10.244.0.7 -p tcp --sport 4321 ")
                && text(&outbound).ends_with("-j DROP"),
            "{outbound:?}"
        );
    }

    #[test]
    fn the_process_table_holds_this_process() {
        let me = std::process::id();
        assert!(process_table().iter().any(|(pid, _)| *pid == me));
    }
}
