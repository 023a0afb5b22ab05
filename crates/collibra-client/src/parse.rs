//! The client's parsing of Collibra's answers, reachable from outside with
//! raw bytes: for fuzzing (`fuzz/`) and property tests. Each function treats
//! `body` exactly as the client treats a response with that status and
//! content type.

use std::time::Duration;

use bytes::Bytes;

use crate::{ClientInfo, Error, IssuedClient, Operation, transport::Response};

fn response(status: u16, content_type: Option<&str>, body: &[u8]) -> Response {
    Response {
        status,
        content_type: content_type.map(str::to_owned),
        retry_after: None,
        body: Bytes::copy_from_slice(body),
    }
}

/// A `GET /clients` answer: the registrations, or the error it stands for.
pub fn list(
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Vec<ClientInfo>, Error> {
    let r = response(status, content_type, body);
    if !r.is_success() {
        return Err(r.to_error(Operation::List));
    }
    crate::model::parse_list(&r)
}

/// A `GET /clients/{id}` answer.
pub fn client(status: u16, content_type: Option<&str>, body: &[u8]) -> Result<ClientInfo, Error> {
    let r = response(status, content_type, body);
    if !r.is_success() {
        return Err(r.to_error(Operation::Get));
    }
    crate::model::parse_client(Operation::Get, &r)
}

/// A `POST /clients` answer: the issued client with its secret.
pub fn registered(
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<IssuedClient, Error> {
    let r = response(status, content_type, body);
    if !r.is_success() {
        return Err(r.to_error(Operation::Register));
    }
    crate::model::parse_registered(&r)
}

/// A token endpoint answer: the token's lifetime (the token itself stays inside).
pub fn token(body: &[u8]) -> Result<Duration, Error> {
    crate::auth::parse_token_body(body)
}
