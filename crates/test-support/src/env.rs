//! The control plane of a run, prepared as the operator's installation
//! expects it: the CRD established, the RBAC of `deploy/rbac.yaml` (or the
//! chart's namespaced Roles), an admin client and a kubeconfig that
//! impersonates the operator's ServiceAccount.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use kube::{
    Client,
    config::{KubeConfigOptions, Kubeconfig},
};
use test_control_plane::ControlPlane;

use crate::{repo, tooling};

/// The operator's service account, as `deploy/rbac.yaml` defines it.
pub const OPERATOR_SA: &str =
    "system:serviceaccount:collibra-oauth-operator:collibra-oauth-operator";

/// Which of the chart's RBAC modes the operator runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rbac {
    /// The chart's default: the ClusterRole and ClusterRoleBinding of
    /// `deploy/rbac.yaml`.
    ClusterWide,
    /// The chart's `watchNamespaces` mode: no cluster-wide rule; each
    /// fixture's namespace gets the chart's Role.
    Namespaced,
}

impl Rbac {
    /// `E2E_RBAC=namespaced` selects [`Rbac::Namespaced`]; anything else the
    /// cluster-wide default.
    pub fn from_env() -> Rbac {
        if std::env::var("E2E_RBAC").as_deref() == Ok("namespaced") {
            Rbac::Namespaced
        } else {
            Rbac::ClusterWide
        }
    }
}

/// Shared by every test of the run.
pub struct Env {
    /// The control plane.
    pub cp: ControlPlane,
    /// Admin client.
    pub client: Client,
    /// A kubeconfig that impersonates the operator's service account.
    pub operator_kubeconfig: PathBuf,
    /// The operator binary the fixtures start.
    pub operator_bin: PathBuf,
    /// The RBAC mode the fixtures grant.
    pub rbac: Rbac,
    _dir: tempfile::TempDir,
}

impl Env {
    /// Starts the control plane and installs the CRD and the RBAC, in the
    /// mode `E2E_RBAC` asks for (see [`Rbac::from_env`]). Test binaries pass
    /// `env!("CARGO_BIN_EXE_collibra-oauth-operator")` as `operator_bin`.
    pub async fn start(operator_bin: impl Into<PathBuf>) -> anyhow::Result<Env> {
        Env::start_with(operator_bin.into(), Rbac::from_env()).await
    }

    /// Starts the control plane and installs the CRD and the RBAC in `rbac` mode.
    pub async fn start_with(operator_bin: PathBuf, rbac: Rbac) -> anyhow::Result<Env> {
        let mut env = Env::start_bare(operator_bin).await?;
        env.rbac = rbac;
        let cp = &env.cp;
        let crds = repo("crds");
        let rbac_yaml = repo("deploy/rbac.yaml");
        cp.kubectl(&[
            "apply",
            "--server-side",
            "-f",
            path_str(&crds)?,
            "-f",
            path_str(&rbac_yaml)?,
        ])
        .await
        .context("applying crds/ and deploy/rbac.yaml")?;
        cp.kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/oauthclients.oauth.collibra.dev",
            "crd/collibraconnections.oauth.collibra.dev",
            "crd/clustercollibraconnections.oauth.collibra.dev",
        ])
        .await?;
        if rbac == Rbac::Namespaced {
            // The chart's namespaced mode: no cluster-wide rule at all; each
            // fixture's namespace gets the chart's Role (see `grant_namespace`).
            cp.kubectl(&["delete", "clusterrolebinding", "collibra-oauth-operator"])
                .await
                .context("E2E_RBAC=namespaced: removing the cluster-wide binding")?;
        }
        Ok(env)
    }

    /// Starts the control plane with nothing installed (no CRD, no RBAC), for
    /// a test that installs them itself, such as an older release's chart.
    /// The operator kubeconfig impersonates [`OPERATOR_SA`] all the same.
    pub async fn start_bare(operator_bin: PathBuf) -> anyhow::Result<Env> {
        let cp = ControlPlane::start().await?;
        let dir = tempfile::tempdir()?;
        let operator_kubeconfig = dir.path().join("operator.kubeconfig");
        cp.write_kubeconfig_as(&operator_kubeconfig, OPERATOR_SA, &[])?;
        let kubeconfig = Kubeconfig::read_from(cp.kubeconfig_path())?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        let client = Client::try_from(config)?;
        Ok(Env {
            cp,
            client,
            operator_kubeconfig,
            operator_bin,
            rbac: Rbac::ClusterWide,
            _dir: dir,
        })
    }

    /// The operator's environment: the impersonating kubeconfig, the
    /// simulator's admin credentials and `RUST_LOG`.
    pub fn operator_env(&self, rust_log: String) -> Vec<(String, String)> {
        vec![
            (
                "KUBECONFIG".to_owned(),
                self.operator_kubeconfig.display().to_string(),
            ),
            ("COLLIBRA_CLIENT_ID".to_owned(), "operator".to_owned()),
            (
                "COLLIBRA_CLIENT_SECRET".to_owned(),
                "operator-secret".to_owned(),
            ),
            ("RUST_LOG".to_owned(), rust_log),
        ]
    }

    /// Stops the control plane.
    pub fn stop(self) -> anyhow::Result<()> {
        self.cp.stop()
    }

    /// Applies the chart's namespaced-mode Role and RoleBinding for `ns`
    /// (rendered by helm from `charts/`, with the operator's ServiceAccount).
    pub(crate) async fn grant_namespace(&self, ns: &str) -> anyhow::Result<()> {
        let namespaces = format!(r#"watchNamespaces=["{ns}"]"#);
        let rbac = tooling::render(
            self,
            "collibra-oauth-operator",
            "collibra-oauth-operator",
            &[
                "--set",
                "leaderElection.enabled=false",
                "--set-json",
                &namespaces,
                "--show-only",
                "templates/rbac.yaml",
            ],
        )
        .await
        .context("rendering the chart's namespaced Role (needs helm from hack/tools)")?;
        self.cp
            .kubectl_with_stdin(&["apply", "--server-side", "-f", "-"], &rbac)
            .await
            .context("applying the chart's namespaced Role")?;
        Ok(())
    }
}

/// A path as a command-line argument.
pub(crate) fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str().context("non-UTF-8 path")
}
