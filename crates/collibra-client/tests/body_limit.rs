//! The body cap holds for answers without a Content-Length (chunked), which
//! the simulator does not produce: a hand-written HTTP server sends them.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use collibra_client::{Auth, Error};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Answers every request with a chunked 200 made of `parts`; counts the
/// chunks it managed to write.
async fn chunked_server(parts: Vec<String>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let written = Arc::new(AtomicUsize::new(0));
    let counter = written.clone();
    let parts = Arc::new(parts);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let parts = parts.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                            Transfer-Encoding: chunked\r\n\r\n";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for part in parts.iter() {
                    let frame = format!("{:x}\r\n{part}\r\n", part.len());
                    if stream.write_all(frame.as_bytes()).await.is_err() {
                        // The client stopped reading: what the cap is for.
                        return;
                    }
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                let _ = stream.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    (format!("http://{addr}"), written)
}

/// `{"registrations":[...]}` with `n` clients, one chunk per client.
fn registrations(n: usize) -> Vec<String> {
    let mut parts = vec![r#"{"registrations":["#.to_owned()];
    for i in 0..n {
        let sep = if i + 1 == n { "" } else { "," };
        parts.push(format!(
            r#"{{"client_id":"urn:x:i:{i}","client_name":"client-{i}"}}{sep}"#
        ));
    }
    parts.push("]}".to_owned());
    parts
}

fn bearer() -> Auth {
    Auth::Bearer {
        token: value("token"),
    }
}

#[tokio::test]
async fn chunked_body_over_the_limit_is_refused() {
    // About 5 MB against a 64 KiB limit.
    let total = 100_000;
    let (url, written) = chunked_server(registrations(total)).await;
    let mut config = config_for(&url, bearer());
    config.max_body_bytes = 64 * 1024;
    let (client, _) = client_with(config);

    let err = client.list_clients().await.expect_err("too large");
    let Error::InvalidResponse { message, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(
        message.contains("larger than the limit of 65536 bytes"),
        "{message}"
    );
    // The client hung up long before the end (socket buffers hold some).
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let sent = written.load(Ordering::Relaxed);
    assert!(sent < total, "server wrote all {sent} chunks");
}

#[tokio::test]
async fn chunked_body_within_the_limit_is_read_whole() {
    let (url, _) = chunked_server(registrations(300)).await;
    let (client, _) = client_with(config_for(&url, bearer()));
    let list = client.list_clients().await.expect("list");
    assert_eq!(list.len(), 300);
    assert_eq!(list[299].client_name, "client-299");
}
