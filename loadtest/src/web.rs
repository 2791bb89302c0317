//! A gRPC-web client over HTTP/1.1, as a browser speaks it (`application/grpc-web+proto`):
//! each message framed as 1 flag byte + 4-byte big-endian length + protobuf; the trailers come
//! as a last frame with flag `0x80` holding `name: value\r\n` lines (or, for an error without a
//! body, as plain HTTP headers). Errors become a `tonic::Status` with the same details a
//! native client sees, so recording and checks are shared.

use std::future::Future;
use std::time::Duration;

use http::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use prost::Message;
use tonic::{Code, Status};

const CONTENT: &str = "application/grpc-web+proto";
const TRAILERS: u8 = 0x80;

#[derive(Clone)]
pub struct WebClient {
    http: reqwest::Client,
    origin: String,
}

impl WebClient {
    pub fn new(origin: &str, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().http1_only().timeout(timeout).no_proxy().build()?;
        Ok(WebClient { http, origin: origin.trim_end_matches('/').to_owned() })
    }

    /// Calls `path` (`/{service}/{method}`) with `metadata` (e.g. `authorization`). The HTTP
    /// request is built before this returns, so the future borrows nothing.
    pub fn unary<Req: Message, Resp: Message + Default>(
        &self,
        path: &str,
        request: &Req,
        metadata: &[(&'static str, &str)],
    ) -> impl Future<Output = Result<Resp, Status>> + Send + use<Req, Resp> {
        let mut call = self
            .http
            .post(format!("{}{path}", self.origin))
            .header(CONTENT_TYPE, CONTENT)
            .header("accept", CONTENT)
            .header("x-grpc-web", "1")
            .body(frame(0, &request.encode_to_vec()));
        for (k, v) in metadata {
            call = call.header(*k, *v);
        }
        async move {
            let response = call.send().await.map_err(|e| transport("send", &e))?;
            let http_status = response.status();
            let headers = response.headers().clone();
            // Trailers-only response: the status is in the HTTP headers.
            if let Some(status) = Status::from_header_map(&headers)
                && status.code() != Code::Ok
            {
                return Err(status);
            }
            if !http_status.is_success() {
                return Err(Status::new(from_http(http_status.as_u16()), format!("HTTP {http_status}")));
            }
            let body = response.bytes().await.map_err(|e| transport("read", &e))?;
            let (message, trailers) = split_frames(&body)?;
            let status = Status::from_header_map(&trailers)
                .or_else(|| Status::from_header_map(&headers))
                .ok_or_else(|| Status::internal("gRPC-web response without grpc-status"))?;
            if status.code() != Code::Ok {
                return Err(status);
            }
            let message = message.ok_or_else(|| Status::internal("gRPC-web OK response without a message"))?;
            Resp::decode(message).map_err(|e| Status::internal(format!("undecodable response: {e}")))
        }
    }
}

fn transport(what: &str, e: &reqwest::Error) -> Status {
    let code = if e.is_timeout() { Code::DeadlineExceeded } else { Code::Unavailable };
    Status::new(code, format!("gRPC-web {what}: {e}"))
}

/// The gRPC code an HTTP status maps to when no `grpc-status` came (the gRPC HTTP mapping).
fn from_http(status: u16) -> Code {
    match status {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

pub fn frame(flag: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(flag);
    out.extend_from_slice(&u32::try_from(payload.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The first data frame and the trailers of a gRPC-web body.
pub fn split_frames(mut body: &[u8]) -> Result<(Option<&[u8]>, HeaderMap), Status> {
    let mut message = None;
    let mut trailers = HeaderMap::new();
    while !body.is_empty() {
        let (flag, len) = match body {
            [flag, a, b, c, d, ..] => (*flag, u32::from_be_bytes([*a, *b, *c, *d]) as usize),
            _ => return Err(Status::internal("truncated gRPC-web frame header")),
        };
        let payload = body.get(5..5 + len).ok_or_else(|| Status::internal("truncated gRPC-web frame"))?;
        body = &body[5 + len..];
        if flag & TRAILERS != 0 {
            parse_trailers(payload, &mut trailers)?;
        } else if message.is_none() {
            message = Some(payload);
        }
    }
    Ok((message, trailers))
}

fn parse_trailers(block: &[u8], into: &mut HeaderMap) -> Result<(), Status> {
    let text = std::str::from_utf8(block).map_err(|_| Status::internal("trailers are not UTF-8"))?;
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or_else(|| Status::internal("malformed trailer line"))?;
        let name = HeaderName::from_bytes(name.trim().to_ascii_lowercase().as_bytes())
            .map_err(|_| Status::internal("malformed trailer name"))?;
        let value = HeaderValue::from_str(value.trim()).map_err(|_| Status::internal("malformed trailer value"))?;
        into.append(name, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut body = frame(0, b"hello");
        body.extend(frame(TRAILERS, b"grpc-status: 0\r\ngrpc-message: \r\n"));
        let (msg, trailers) = split_frames(&body).unwrap();
        assert_eq!(msg, Some(&b"hello"[..]));
        assert_eq!(Status::from_header_map(&trailers).unwrap().code(), Code::Ok);
    }

    #[test]
    fn error_trailers_become_a_status() {
        let body = frame(TRAILERS, b"grpc-status:6\r\ngrpc-message:handle%20is%20already%20taken\r\n");
        let (msg, trailers) = split_frames(&body).unwrap();
        assert!(msg.is_none());
        let s = Status::from_header_map(&trailers).unwrap();
        assert_eq!(s.code(), Code::AlreadyExists);
        assert_eq!(s.message(), "handle is already taken");
    }

    #[test]
    fn truncated_bodies_are_errors_not_panics() {
        assert!(split_frames(&[0, 0, 0]).is_err());
        assert!(split_frames(&[0, 0, 0, 0, 9, 1]).is_err());
    }
}
