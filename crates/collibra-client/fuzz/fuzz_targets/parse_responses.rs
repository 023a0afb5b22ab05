//! Every answer parser of the client, fed raw bytes: the first byte picks
//! the status and content type, the rest is the body. Parsing must never
//! panic, and no error message may quote a client secret or a token.
#![no_main]

use collibra_client::parse;
use libfuzzer_sys::fuzz_target;

const STATUSES: [u16; 8] = [200, 201, 400, 401, 404, 429, 500, 502];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let status = STATUSES[usize::from(selector) % STATUSES.len()];
    let ct = if selector & 0x80 == 0 {
        Some("application/json")
    } else {
        Some("text/html")
    };
    let secret = find_value(body, b"\"client_secret\":\"");
    let token = find_value(body, b"\"access_token\":\"");
    let errors = [
        parse::list(status, ct, body).err().map(|e| e.to_string()),
        parse::client(status, ct, body).err().map(|e| e.to_string()),
        parse::registered(status, ct, body).err().map(|e| e.to_string()),
        parse::token(body).err().map(|e| e.to_string()),
    ];
    for message in errors.into_iter().flatten() {
        assert!(message.len() < 4096);
        for credential in [&secret, &token].into_iter().flatten() {
            assert!(!message.contains(credential.as_str()), "credential quoted in {message}");
        }
    }
});

/// The string value after `key` when it is at least 16 plain characters:
/// shorter values can be ordinary words of an error message (a fuzzed
/// `"client_secret":"edentials"` is found in "...holds credentials..."),
/// and real secrets and tokens are longer.
fn find_value(body: &[u8], key: &[u8]) -> Option<String> {
    let start = body.windows(key.len()).position(|w| w == key)? + key.len();
    let rest = &body[start..];
    let end = rest.iter().position(|&b| b == b'"')?;
    let value = std::str::from_utf8(&rest[..end]).ok()?;
    (value.len() >= 16 && value.chars().all(|c| c.is_ascii_alphanumeric())).then(|| value.to_owned())
}
