//! A fuzz-style test of the response parsing that runs on stable in
//! `cargo test`: seeded random mutations of valid and hostile answers go
//! through `collibra_client::parse`, which must never panic, must keep its
//! error messages short, and must never quote a secret or a token.
//! `PARSE_FUZZ_ITERATIONS` (default 3000) and `PARSE_FUZZ_SEED` steer it;
//! the coverage-guided version is `fuzz/` (cargo fuzz, nightly).

use collibra_client::parse;
use rand::{Rng, SeedableRng, rngs::StdRng};

const SECRET: &str = "SECRETMARKERq8Zr2";
const TOKEN: &str = "TOKENMARKERv3Lk9";

fn seeds() -> Vec<Vec<u8>> {
    let entry = |id: &str, name: &str| {
        format!(
            r#"{{"client_id":"{id}","client_name":"{name}","client_id_issued_at":1764164337,"grant_types":["client_credentials"]}}"#
        )
    };
    let list = format!(
        r#"{{"registrations":[{},{},{}]}}"#,
        entry("urn:sys:env:1:i:a", "alpha"),
        entry("urn:sys:env:1:i:b", "beta"),
        entry("urn:sys:env:1:i:c", "alpha")
    );
    vec![
        list.into_bytes(),
        format!("[{}]", entry("urn:x", "bare")).into_bytes(),
        br#"{"registrations":null}"#.to_vec(),
        br#"{"registrations":[{"client_id":"a","client_name":"b","client_id_issued_at":"1764164337","grant_types":null}]}"#.to_vec(),
        format!(
            r#"{{"client_id":"urn:x:1","client_name":"n","client_id_issued_at":1,"grant_types":["client_credentials"],"client_secret":"{SECRET}"}}"#
        )
        .into_bytes(),
        format!(r#"{{"access_token":"{TOKEN}","token_type":"Bearer","expires_in":300}}"#).into_bytes(),
        format!(r#"{{"access_token":"{TOKEN}","token_type":"bearer","expires_in":"60"}}"#).into_bytes(),
        br#"{"error":"invalid_client_metadata","error_description":"client_name already used"}"#.to_vec(),
        b"<html><head><title>502 Bad Gateway</title></head><body><h1>502</h1></body></html>".to_vec(),
        Vec::new(),
    ]
}

const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "\"",
    ":",
    ",",
    "null",
    "true",
    "1e999",
    "-1",
    "18446744073709551616",
    "\"\\u0000\"",
    "\\",
    "\"\\ud800\"",
    "\"client_secret\"",
    "\"registrations\"",
    "\"client_id\"",
    "\u{feff}",
    "\u{0}",
    "<",
    "\"expires_in\":-5",
    "\"token_type\":\"mac\"",
];

fn mutate(rng: &mut StdRng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..rng.random_range(1..6) {
        match rng.random_range(0..7) {
            0 if !v.is_empty() => {
                let i = rng.random_range(0..v.len());
                v[i] = rng.random();
            }
            1 if !v.is_empty() => {
                let a = rng.random_range(0..v.len());
                let b = rng.random_range(a..=v.len().min(a + 16));
                v.drain(a..b);
            }
            2 => {
                let i = rng.random_range(0..=v.len());
                let t = TOKENS[rng.random_range(0..TOKENS.len())].as_bytes();
                v.splice(i..i, t.iter().copied());
            }
            3 => {
                let cut = rng.random_range(0..=v.len());
                v.truncate(cut);
            }
            4 if !v.is_empty() && v.len() < 64 * 1024 => {
                let a = rng.random_range(0..v.len());
                let b = rng.random_range(a..=v.len().min(a + 64));
                let chunk = v[a..b].to_vec();
                v.splice(a..a, chunk);
            }
            5 => {
                let depth = rng.random_range(1..5000);
                let mut nested = vec![b'['; depth];
                nested.extend_from_slice(&v);
                v = nested;
            }
            _ => {}
        }
    }
    v
}

const STATUSES: &[u16] = &[200, 201, 204, 400, 401, 403, 404, 409, 429, 500, 502, 503];
const TYPES: &[Option<&str>] = &[
    Some("application/json"),
    Some("text/html; charset=utf-8"),
    Some("application/json; charset=\u{0}"),
    None,
];

/// Whether the body still names a credential field (mutations may have
/// destroyed the key, leaving the marker as plain text).
fn names_credential(body: &[u8]) -> bool {
    let lower = body.to_ascii_lowercase();
    [&b"client_secret"[..], b"access_token"]
        .iter()
        .any(|k| lower.windows(k.len()).any(|w| w == *k))
}

fn check(body: &[u8], status: u16, ct: Option<&str>) {
    // A successful registration or token answer is never quoted at all;
    // any other answer is not quoted when it names a credential field.
    let always = [
        parse::registered(status, ct, body)
            .err()
            .filter(|_| (200..300).contains(&status))
            .map(|e| e.to_string()),
        parse::token(body).err().map(|e| e.to_string()),
    ];
    let others = [
        parse::list(status, ct, body).err().map(|e| e.to_string()),
        parse::client(status, ct, body).err().map(|e| e.to_string()),
        parse::registered(status, ct, body)
            .err()
            .map(|e| e.to_string()),
    ];
    let guarded = names_credential(body);
    for (m, strict) in always
        .into_iter()
        .map(|m| (m, true))
        .chain(others.into_iter().map(|m| (m, guarded)))
    {
        let Some(m) = m else { continue };
        assert!(m.len() < 4096, "error message of {} bytes", m.len());
        if strict {
            assert!(
                !m.contains(SECRET),
                "an error message quotes the client secret: {m}"
            );
            assert!(!m.contains(TOKEN), "an error message quotes the token: {m}");
        }
    }
}

#[test]
fn parsing_never_panics_and_never_quotes_credentials() {
    let iterations: usize = std::env::var("PARSE_FUZZ_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3_000);
    let seed: u64 = std::env::var("PARSE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    eprintln!("parse fuzz: {iterations} iterations, seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let corpus = seeds();
    for body in &corpus {
        for &s in STATUSES {
            for &ct in TYPES {
                check(body, s, ct);
            }
        }
    }
    for _ in 0..iterations {
        let base = &corpus[rng.random_range(0..corpus.len())];
        let body = mutate(&mut rng, base);
        let status = STATUSES[rng.random_range(0..STATUSES.len())];
        let ct = TYPES[rng.random_range(0..TYPES.len())];
        check(&body, status, ct);
    }
}

#[test]
fn duplicate_names_in_a_list_are_all_returned() {
    let body = br#"{"registrations":[{"client_id":"1","client_name":"a"},{"client_id":"2","client_name":"a"}]}"#;
    let list = parse::list(200, Some("application/json"), body).expect("parses");
    assert_eq!(list.len(), 2);
}
