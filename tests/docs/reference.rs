//! The generated reference pages: the API of the three kinds from their CRD
//! schemas, the flags from the clap definitions, the chart's values from
//! the `# --` comments of values.yaml. Each renders from the code as it is,
//! so a new field, flag or value appears after `make docs-gen` without an
//! edit here.

use std::fmt::Write as _;

use clap::{Args, Command};
use collibra_oauth_operator::{
    api::{
        OAuthClient,
        connection::{ClusterCollibraConnection, CollibraConnection},
    },
    config::RunArgs,
    connection::audit::AuditArgs,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::Value;

use super::{cell, check_generated, generated_header, root};

// ---- API ----------------------------------------------------------------

fn render_api() -> String {
    let crds = [
        OAuthClient::crd(),
        CollibraConnection::crd(),
        ClusterCollibraConnection::crd(),
    ];
    let mut out = generated_header("the CRD schemas (src/api.rs, src/api/connection.rs)");
    out.push_str("# API reference\n\n");
    out.push_str(
        "The custom resources of the API group `oauth.collibra.dev`. Each field is listed \
         with its type, default and the rules the API server enforces at admission; \
         `kubectl explain` shows the same descriptions. What each condition reason means \
         is in [troubleshooting](../troubleshooting.md), the Secret the operator writes \
         in [the Secret and annotations](secret.md).\n\n",
    );
    for crd in &crds {
        render_crd(&mut out, crd);
    }
    out
}

fn render_crd(out: &mut String, crd: &CustomResourceDefinition) {
    let names = &crd.spec.names;
    let _ = writeln!(out, "## {}\n", names.kind);
    for version in &crd.spec.versions {
        let short = names
            .short_names
            .as_ref()
            .map(|s| {
                s.iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "`{}/{}`, {} (`kubectl get {}`{}).\n",
            crd.spec.group,
            version.name,
            if crd.spec.scope == "Namespaced" {
                "namespaced"
            } else {
                "cluster-scoped"
            },
            names.plural,
            if short.is_empty() {
                String::new()
            } else {
                format!(", short names {short}")
            },
        );
        let Some(schema) = version
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .and_then(|s| serde_json::to_value(s).ok())
        else {
            continue;
        };
        if let Some(description) = schema.get("description").and_then(Value::as_str) {
            let _ = writeln!(out, "{}\n", description.trim());
        }
        if let Some(columns) = &version.additional_printer_columns {
            let list: Vec<String> = columns.iter().map(|c| format!("`{}`", c.name)).collect();
            let _ = writeln!(out, "`kubectl get` columns: {}.\n", list.join(", "));
        }
        for part in ["spec", "status"] {
            let Some(sub) = schema.pointer(&format!("/properties/{part}")) else {
                continue;
            };
            let _ = writeln!(out, "### {} `{part}`\n", names.kind);
            if let Some(rules) = rules(sub) {
                let _ = writeln!(out, "Rules: {rules}\n");
            }
            out.push_str("| field | type | default | description |\n|---|---|---|---|\n");
            let required = required_fields(sub);
            walk(out, sub, part, &required);
            out.push('\n');
        }
    }
}

fn required_fields(schema: &Value) -> Vec<String> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The CEL rules of a schema node, by their messages.
fn rules(schema: &Value) -> Option<String> {
    let rules = schema.get("x-kubernetes-validations")?.as_array()?;
    let list: Vec<String> = rules
        .iter()
        .filter_map(|r| {
            r.get("message")
                .or_else(|| r.get("rule"))
                .and_then(Value::as_str)
                .map(|m| cell(m.trim_end_matches('.')))
        })
        .collect();
    (!list.is_empty()).then(|| format!("{}.", list.join("; ")))
}

fn walk(out: &mut String, schema: &Value, path: &str, required: &[String]) {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    let mut names: Vec<&String> = properties.keys().collect();
    names.sort();
    for name in names {
        let field = &properties[name];
        let here = format!("{path}.{name}");
        row(out, &here, field, required.contains(name));
        let (inner, inner_path) = match field.get("items") {
            Some(items) if field.get("type").and_then(Value::as_str) == Some("array") => {
                (items, format!("{here}[]"))
            }
            _ => (field, here.clone()),
        };
        walk(out, inner, &inner_path, &required_fields(inner));
    }
}

fn row(out: &mut String, path: &str, field: &Value, required: bool) {
    let mut kind = type_of(field);
    if required {
        kind.push_str(", required");
    }
    let default = field
        .get("default")
        .map(|d| format!("`{}`", cell(&d.to_string())))
        .unwrap_or_default();
    let mut description = field
        .get("description")
        .and_then(Value::as_str)
        .map(cell)
        .unwrap_or_default();
    let mut constraints = Vec::new();
    for (key, words) in [
        ("minLength", "min length {}"),
        ("maxLength", "max length {}"),
        ("minItems", "min items {}"),
        ("maxItems", "max items {}"),
        ("maxProperties", "max entries {}"),
        ("minimum", "minimum {}"),
        ("maximum", "maximum {}"),
    ] {
        if let Some(v) = field.get(key) {
            constraints.push(words.replace("{}", &v.to_string()));
        }
    }
    if let Some(pattern) = field.get("pattern").and_then(Value::as_str) {
        constraints.push(format!("pattern `{}`", cell(pattern)));
    }
    if field.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("set") {
        constraints.push("no duplicates".to_owned());
    }
    if let Some(rules) = rules(field) {
        constraints.push(rules.trim_end_matches('.').to_owned());
    }
    if !constraints.is_empty() {
        if !description.is_empty() && !description.ends_with('.') {
            description.push('.');
        }
        let _ = write!(description, " Validation: {}.", constraints.join("; "));
    }
    let _ = writeln!(
        out,
        "| `{path}` | {kind} | {default} | {} |",
        description.trim()
    );
}

fn type_of(field: &Value) -> String {
    let base = field.get("type").and_then(Value::as_str).unwrap_or("");
    let mut kind = match base {
        "array" => {
            let item = field.get("items").map(type_of).unwrap_or_default();
            format!("[]{item}")
        }
        "object" if field.get("properties").is_none() => match field.get("additionalProperties") {
            Some(v) if v.is_object() => format!("map[string]{}", type_of(v)),
            _ if field.get("x-kubernetes-preserve-unknown-fields").is_some() => {
                "object (any)".to_owned()
            }
            _ => "object".to_owned(),
        },
        "" if field.get("x-kubernetes-int-or-string").is_some() => "int or string".to_owned(),
        other => other.to_owned(),
    };
    if let Some(format) = field.get("format").and_then(Value::as_str) {
        let _ = write!(kind, " ({format})");
    }
    if let Some(values) = field.get("enum").and_then(Value::as_array) {
        let list: Vec<String> = values
            .iter()
            .map(|v| {
                format!(
                    "`{}`",
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string())
                )
            })
            .collect();
        let _ = write!(kind, ": {}", list.join(", "));
    }
    kind
}

#[test]
fn api_reference_is_current() {
    check_generated("docs/src/reference/api.md", &render_api());
}

// ---- flags --------------------------------------------------------------

fn render_flags() -> String {
    let mut out = generated_header("the command-line definitions (src/config.rs, src/connection)");
    out.push_str("# Command-line flags\n\n");
    out.push_str(
        "```\ncollibra-oauth-operator run      # the controller (the image's default command)\n\
         collibra-oauth-operator crd [oauthclients|collibraconnections|clustercollibraconnections]\n\
         \x20                                # print a CRD; crds/ holds the same\n\
         collibra-oauth-operator audit    # the clients in Collibra no OAuthClient accounts for\n```\n\n\
         Kubernetes access is the usual kubeconfig or in-cluster configuration. Every flag \
         of `run` can be given as its environment variable instead; the Helm chart sets them \
         from its [values](helm-values.md). The level of the logs comes from `RUST_LOG` \
         (default `info`).\n\n",
    );
    let run = RunArgs::augment_args(Command::new("run"));
    out.push_str("## `run`\n\n");
    flags_table(&mut out, &run);
    out.push_str(
        "The operator's own Collibra credential comes from the environment only, never a \
         flag: `COLLIBRA_CLIENT_ID` and `COLLIBRA_CLIENT_SECRET` for `oauth`, \
         `COLLIBRA_USERNAME` and `COLLIBRA_PASSWORD` for `basic`, `COLLIBRA_TOKEN` for \
         `bearer`; each also as `..._FILE`, a file to read it from, read again when it \
         changes (the chart mounts its credentials Secret this way).\n\n",
    );
    let audit = AuditArgs::augment_args(Command::new("audit"));
    out.push_str("## `audit`\n\n");
    out.push_str(
        "Reads what the operator reads, so run it with the operator's rights, for example \
         `kubectl exec -n collibra-oauth-operator deploy/collibra-oauth-operator -- \
         collibra-oauth-operator audit`. The default instance is audited when `COLLIBRA_URL` \
         and its credentials are set, as for `run`.\n\n",
    );
    flags_table(&mut out, &audit);
    out
}

fn flags_table(out: &mut String, command: &Command) {
    out.push_str("| flag | environment | default | description |\n|---|---|---|---|\n");
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version") {
            continue;
        }
        let mut flag = format!("`--{long}`");
        if let Some(short) = arg.get_short() {
            let _ = write!(flag, ", `-{short}`");
        }
        let env = arg
            .get_env()
            .map(|e| format!("`{}`", e.to_string_lossy()))
            .unwrap_or_default();
        let mut defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| format!("`{}`", v.to_string_lossy()))
            .collect();
        if arg.is_required_set() {
            defaults.push("required".to_owned());
        }
        let mut help = arg
            .get_long_help()
            .or_else(|| arg.get_help())
            .map(|h| cell(&h.to_string()))
            .unwrap_or_default();
        if !help.is_empty() && !help.ends_with('.') {
            help.push('.');
        }
        let values: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| match v.get_help() {
                Some(h) => format!(
                    "`{}` ({})",
                    v.get_name(),
                    cell(&h.to_string()).trim_end_matches('.')
                ),
                None => format!("`{}`", v.get_name()),
            })
            .collect();
        // A bool flag's possible values are just true and false.
        if !values.is_empty()
            && values
                .iter()
                .any(|v| !v.starts_with("`true`") && !v.starts_with("`false`"))
        {
            let _ = write!(help, " One of: {}.", values.join(", "));
        }
        let _ = writeln!(
            out,
            "| {flag} | {env} | {} | {} |",
            defaults.join(", "),
            help.trim()
        );
    }
    out.push('\n');
}

#[test]
fn flags_reference_is_current() {
    check_generated("docs/src/reference/flags.md", &render_flags());
}

// ---- chart values -------------------------------------------------------

/// One documented value of values.yaml.
#[derive(Debug, PartialEq)]
struct ChartValue {
    path: String,
    default: String,
    description: String,
}

/// The values of a values.yaml in file order, with the text of the `# --`
/// comment above each (helm-docs' convention; continuation lines are
/// comment lines that follow it). A commented-out key inside such a
/// comment (`# url: ...`) is a value without a default.
fn chart_values(yaml: &str) -> Vec<ChartValue> {
    let mut out = Vec::new();
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut doc: Option<String> = None;
    for line in yaml.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed.is_empty() {
            doc = None;
            continue;
        }
        if let Some(comment) = trimmed.strip_prefix('#') {
            if let Some(text) = comment.strip_prefix(" --") {
                doc = Some(text.trim().to_owned());
            } else if let Some(current) = doc.as_mut() {
                if let Some((key, _)) = commented_key(comment) {
                    let parent = parents(&mut stack, indent);
                    out.push(ChartValue {
                        path: join(&parent, key),
                        default: "unset".to_owned(),
                        description: current.clone(),
                    });
                    doc = None;
                } else {
                    current.push(' ');
                    current.push_str(comment.trim());
                }
            }
            continue;
        }
        let Some((key, rest)) = trimmed.split_once(':') else {
            continue;
        };
        if key.starts_with('-') || key.contains(' ') {
            // A list item or a continuation: part of the value above.
            continue;
        }
        let (value, inline) = match rest.split_once(" #") {
            Some((value, comment)) => (value.trim(), Some(comment.trim().to_owned())),
            None => (rest.trim(), None),
        };
        let parent = parents(&mut stack, indent);
        let path = join(&parent, key);
        let description = doc.take().or(inline).unwrap_or_default();
        if value.is_empty() {
            if !description.is_empty() {
                out.push(ChartValue {
                    path: path.clone(),
                    default: String::new(),
                    description,
                });
            }
            stack.push((indent, key.to_owned()));
        } else {
            out.push(ChartValue {
                path,
                default: value.to_owned(),
                description,
            });
        }
    }
    out
}

/// `url: https://...` inside a comment: a key left out of the defaults.
fn commented_key(comment: &str) -> Option<(&str, &str)> {
    let text = comment.strip_prefix(' ')?;
    let (key, value) = text.split_once(": ")?;
    let first = key.chars().next()?;
    (first.is_ascii_lowercase() && key.chars().all(|c| c.is_ascii_alphanumeric()))
        .then_some((key, value))
}

fn parents(stack: &mut Vec<(usize, String)>, indent: usize) -> Vec<String> {
    while stack.last().is_some_and(|(i, _)| *i >= indent) {
        stack.pop();
    }
    stack.iter().map(|(_, k)| k.clone()).collect()
}

fn join(parent: &[String], key: &str) -> String {
    let mut parts = parent.to_vec();
    parts.push(key.to_owned());
    parts.join(".")
}

fn render_values() -> String {
    let path = "charts/collibra-oauth-operator/values.yaml";
    let yaml = std::fs::read_to_string(root().join(path))
        .unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let mut out = generated_header(path);
    out.push_str("# Helm chart values\n\n");
    out.push_str(
        "The values of the `collibra-oauth-operator` chart, their defaults and what they do. \
         `values.schema.json` checks every value at install and upgrade time, and `helm \
         install` fails with the field named. A value with no default shown is a group; its \
         entries follow it.\n\n| value | default | description |\n|---|---|---|\n",
    );
    for v in chart_values(&yaml) {
        let default = if v.default.is_empty() {
            String::new()
        } else {
            format!("`{}`", cell(&v.default))
        };
        let _ = writeln!(
            out,
            "| `{}` | {default} | {} |",
            v.path,
            cell(&v.description)
        );
    }
    out
}

#[test]
fn helm_values_reference_is_current() {
    check_generated("docs/src/reference/helm-values.md", &render_values());
}

#[test]
fn values_comments_are_read_as_helm_docs_does() {
    let yaml = "# file header\n\n# -- The group.\ngroup:\n  # -- Required, e.g. x.\n  # url: https://x\n  # -- A path,\n  # two lines.\n  path: /a  \n  keys:\n    id: client_id  # oauth\n    - item\n\nplain: 1\n";
    let values = chart_values(yaml);
    let got: Vec<(&str, &str, &str)> = values
        .iter()
        .map(|v| (v.path.as_str(), v.default.as_str(), v.description.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("group", "", "The group."),
            ("group.url", "unset", "Required, e.g. x."),
            ("group.path", "/a", "A path, two lines."),
            ("group.keys.id", "client_id", "oauth"),
            ("plain", "1", ""),
        ]
    );
}
