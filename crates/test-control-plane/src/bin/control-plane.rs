//! Runs the test control plane until Ctrl-C, for `make demo` and for poking
//! at by hand: `control-plane --kubeconfig /tmp/demo.kubeconfig`.

use std::path::PathBuf;

use anyhow::Context as _;
use test_control_plane::ControlPlane;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let out = match (args.next().as_deref(), args.next()) {
        (Some("--kubeconfig"), Some(path)) => PathBuf::from(path),
        _ => anyhow::bail!("usage: control-plane --kubeconfig PATH"),
    };
    let cp = ControlPlane::start().await?;
    std::fs::copy(cp.kubeconfig_path(), &out)
        .with_context(|| format!("writing {}", out.display()))?;
    let t = cp.timings();
    println!(
        "control plane ready at {} in {:.1}s; admin kubeconfig: {}",
        cp.server_url(),
        t.total.as_secs_f64(),
        out.display()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    println!("stopping the control plane");
    cp.stop()
}
