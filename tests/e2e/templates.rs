//! `spec.secretTemplate` (issue 13): what the API server accepts and
//! rejects, with messages that name the problem.

use std::sync::Arc;

use anyhow::ensure;
use futures::FutureExt;

use crate::{
    TestFn,
    support::{Env, Fixture, Options},
};

macro_rules! tests {
    ($($name:ident),* $(,)?) => {
        /// Every test of this module.
        pub fn tests() -> Vec<(&'static str, TestFn)> {
            vec![$((stringify!($name), (|env| $name(env).boxed()) as TestFn)),*]
        }
    };
}

tests!(
    secret_templates_are_checked_at_admission,
    template_examples_are_accepted
);

fn with_template(template: &str) -> String {
    format!(
        "apiVersion: oauth.collibra.dev/v1alpha1\nkind: OAuthClient\nmetadata:\n  name: tmpl\nspec:\n  clientName: tmpl\n  secretTemplate:\n{template}"
    )
}

async fn secret_templates_are_checked_at_admission(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::with(
        env,
        "tmpl-admission",
        Options {
            start_operator: false,
            ..Options::default()
        },
    )
    .await?;
    let rejected: &[(&str, &str, &str)] = &[
        (
            "data key with a space",
            "    data: {\"a b\": x}\n",
            "a key must be at most 253",
        ),
        (
            "data key starting with ..",
            "    data: {\"..x\": x}\n",
            "a key must be at most 253",
        ),
        (
            "data key equal to a standard key",
            "    data: {client_secret: x}\n",
            "cannot have the name of a standard key",
        ),
        (
            "data key equal to a renamed standard key",
            "    keys: {clientId: ID}\n    data: {ID: x}\n",
            "cannot have the name of a standard key",
        ),
        (
            "two standard values on one key",
            "    keys: {clientId: client_secret}\n",
            "two standard values cannot share a key name",
        ),
        (
            "key name with a slash",
            "    keys: {clientSecret: a/b}\n",
            "spec.secretTemplate.keys.clientSecret",
        ),
        (
            "key name ..",
            "    keys: {tokenUrl: ..}\n",
            "a key cannot be '.' or start with '..'",
        ),
        (
            "client secret left out",
            "    keys: {clientSecret: \"\"}\n",
            "spec.secretTemplate.keys.clientSecret",
        ),
        (
            "built-in type that does not fit",
            "    type: kubernetes.io/tls\n",
            "only Opaque and kubernetes.io/basic-auth",
        ),
        (
            "malformed type",
            "    type: \"not a type\"\n",
            "spec.secretTemplate.type",
        ),
        (
            "basic-auth without username or password",
            "    type: kubernetes.io/basic-auth\n",
            "needs a key named username or password",
        ),
        (
            "reserved annotation",
            "    annotations: {oauth.collibra.dev/registering-since: x}\n",
            "are the operator's own",
        ),
        (
            "template too long",
            &format!("    data: {{k: {}}}\n", "x".repeat(16385)),
            "spec.secretTemplate.data.k",
        ),
    ];
    let mut failures = Vec::new();
    for (what, template, needle) in rejected {
        match f.apply(&with_template(template)).await {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(e) if !e.to_string().contains(needle) => {
                failures.push(format!("{what}: message lacks {needle:?}: {e}"))
            }
            Err(_) => {}
        }
    }
    let accepted: &[(&str, &str)] = &[
        (
            "left-out key frees its name",
            "    keys: {clientName: \"\"}\n    data: {client_name: x}\n",
        ),
        (
            "basic-auth from data",
            "    type: kubernetes.io/basic-auth\n    data: {username: \"{{ client_id }}\"}\n",
        ),
        ("custom type", "    type: example.com/oauth\n"),
        ("labels only (today's template)", "    labels: {team: a}\n"),
    ];
    for (what, template) in accepted {
        if let Err(e) = f.apply(&with_template(template)).await {
            failures.push(format!("{what}: rejected: {e}"));
        }
    }
    ensure!(
        failures.is_empty(),
        "admission gaps:\n{}",
        failures.join("\n")
    );
    f.finish().await
}

async fn template_examples_are_accepted(env: Arc<Env>) -> anyhow::Result<()> {
    let f = Fixture::with(
        env,
        "tmpl-examples",
        Options {
            start_operator: false,
            ..Options::default()
        },
    )
    .await?;
    for name in ["env-keys", "spring-boot", "dotenv", "basic-auth"] {
        let path = format!("{}/examples/{name}.yaml", env!("CARGO_MANIFEST_DIR"));
        let yaml = std::fs::read_to_string(&path)?;
        f.apply(&yaml)
            .await
            .map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    }
    f.finish().await
}
