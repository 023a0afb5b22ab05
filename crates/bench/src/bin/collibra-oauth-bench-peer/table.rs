//! The side-by-side table (Markdown), one column per configuration.

use serde_json::Value;

/// `k v` pairs of a count map divided by `per` (1: plain counts), with
/// their total when there are several.
fn per_object(v: &Value, per: f64) -> String {
    let Some(m) = v.as_object() else {
        return "n/a".to_owned();
    };
    if m.is_empty() {
        return "0".to_owned();
    }
    let show = |x: f64| if per == 1.0 { fmt(x) } else { ratio(x) };
    let total: f64 = m.values().filter_map(Value::as_f64).sum();
    let parts: Vec<String> = m
        .iter()
        .map(|(k, x)| format!("{k} {}", show(x.as_f64().unwrap_or(0.0) / per)))
        .collect();
    if parts.len() == 1 {
        parts.join("")
    } else {
        format!("{} (total {})", parts.join(", "), show(total / per))
    }
}

/// A per-object ratio: two decimals, four below 0.01.
fn ratio(x: f64) -> String {
    if x == 0.0 {
        "0".to_owned()
    } else if x.abs() < 0.01 {
        format!("{x:.4}")
    } else {
        format!("{x:.2}")
    }
}

fn fmt(x: f64) -> String {
    if x == 0.0 {
        "0".to_owned()
    } else if x.fract() == 0.0 || x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn num(v: &Value) -> String {
    v.as_f64().map_or_else(|| "n/a".to_owned(), fmt)
}

/// Prints the table for a report written by `run_all`.
pub fn print(r: &Value) {
    let Some(runs) = r["runs"].as_object() else {
        return;
    };
    let n = r["n"].as_f64().unwrap_or(1.0).max(1.0);
    let names: Vec<&String> = runs.keys().collect();
    println!(
        "| figure (N = {n}) | {} |",
        names
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---|".repeat(names.len()));
    let row = |label: &str, f: &dyn Fn(&Value) -> String| {
        let cells: Vec<String> = runs.values().map(f).collect();
        println!("| {label} | {} |", cells.join(" | "));
    };
    row("flags", &|x| {
        let mut a: Vec<String> = x["args"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        a.extend(
            x["env"]
                .as_array()
                .map(|v| {
                    v.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default(),
        );
        format!("`{}`", a.join(" "))
    });
    row("load (1 min) start → end", &|x| {
        let first = |v: &Value| {
            v.as_str()
                .and_then(|s| s.split_whitespace().next())
                .unwrap_or("?")
                .to_owned()
        };
        format!("{} → {}", first(&x["load_start"]), first(&x["load_end"]))
    });
    row("create N objects (s)", &|x| num(&x["create_seconds"]));
    row("**converge**: every Secret has credentials (s)", &|x| {
        num(&x["converge_seconds"])
    });
    row("API-server requests per object, by verb", &|x| {
        per_object(&x["rollout"]["kubernetes_requests"], n)
    });
    row("backend requests per object", &|x| {
        per_object(&x["rollout"]["backend_requests"], n)
    });
    row("… until reconciles stop (s)", &|x| {
        num(&x["settled_seconds"])
    });
    row("… API-server requests per object until then", &|x| {
        per_object(&x["rollout_until_settled"]["kubernetes_requests"], n)
    });
    row("… backend requests per object until then", &|x| {
        per_object(&x["rollout_until_settled"]["backend_requests"], n)
    });
    row("registrations in the backend (N objects)", &|x| {
        num(&x["rollout_until_settled"]["backend_requests"]["register"])
    });
    row("reconciles per object, until they stop", &|x| {
        x["rollout_until_settled"]["reconciles"]
            .as_f64()
            .map_or("n/a".to_owned(), |v| ratio(v / n))
    });
    row("**peak RSS** (MiB)", &|x| num(&x["peak_rss_mib"]));
    row("CPU seconds, rollout", &|x| {
        num(&x["rollout"]["cpu_seconds"])
    });
    row("CPU seconds, start to end of steady window", &|x| {
        num(&x["cpu_seconds_total"])
    });
    row("steady: API-server requests per minute", &|x| {
        per_object(&x["steady"]["kubernetes_requests_per_minute"], 1.0)
    });
    row("steady: backend requests per minute", &|x| {
        per_object(&x["steady"]["backend_requests_per_minute"], 1.0)
    });
    row("steady: CPU seconds per minute", &|x| {
        num(&x["steady"]["cpu_seconds_per_minute"])
    });
    row("**restart: first reconcile** (s)", &|x| {
        num(&x["restart"]["first_reconcile_seconds"])
    });
    row("restart: N reconciles done (s)", &|x| {
        num(&x["restart"]["all_reconciled_seconds"])
    });
    row("restart: API-server requests", &|x| {
        per_object(&x["restart"]["kubernetes_requests"], 1.0)
    });
    row("restart: backend requests", &|x| {
        per_object(&x["restart"]["backend_requests"], 1.0)
    });
    row("restart: peak RSS (MiB)", &|x| {
        num(&x["restart"]["peak_rss_mib"])
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn formats_counts_and_ratios() {
        assert_eq!(per_object(&json!({ "GET": 4 }), 1.0), "GET 4");
        assert_eq!(
            per_object(&json!({ "list": 1, "token": 1 }), 1.0),
            "list 1, token 1 (total 2)"
        );
        assert_eq!(
            per_object(&json!({ "GET": 3, "PUT": 10000 }), 10000.0),
            "GET 0.0003, PUT 1.00 (total 1.00)"
        );
        assert_eq!(per_object(&json!({}), 10.0), "0");
        assert_eq!(per_object(&Value::Null, 10.0), "n/a");
    }
}
