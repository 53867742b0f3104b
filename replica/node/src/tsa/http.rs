//! The little HTTP/1.1 the time-stamping endpoint needs: one `POST` per
//! connection (as RFC 3161 §3.4 clients send it), parsed by `httparse`, with
//! a limit on the head, the body and the time; and the same, as a client, to
//! ask peers for signature shares.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest request or response head.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Most headers read.
const MAX_HEADERS: usize = 32;

/// A request read from a client.
#[derive(Debug)]
pub struct Request {
    /// `POST`, …
    pub method: String,
    /// The path.
    pub path: String,
    /// The content type, lower case, without parameters.
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
}

/// Why a request could not be read; each maps to a status.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The connection failed or closed early.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// Not HTTP/1.x, or a head over the limit.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// A body over the limit (413).
    #[error("body of {0} bytes is over the limit")]
    TooLarge(usize),
    /// No Content-Length (411).
    #[error("Content-Length required")]
    NoLength,
}

/// Reads one request whose body is at most `max_body` bytes.
pub async fn read_request(stream: &mut TcpStream, max_body: usize) -> Result<Request, ReadError> {
    let (head_len, mut buf) = read_head(stream).await?;
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let parsed = req
        .parse(&buf)
        .map_err(|e| ReadError::Malformed(e.to_string()))?;
    if parsed.is_partial() {
        return Err(ReadError::Malformed("incomplete head".into()));
    }
    let method = req.method.unwrap_or_default().to_string();
    let path = req.path.unwrap_or_default().to_string();
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    let content_type = header("content-type")
        .map(|t| t.split(';').next().unwrap_or_default().trim().to_string())
        .unwrap_or_default();
    if header("transfer-encoding").is_some() {
        return Err(ReadError::Malformed(
            "chunked bodies are not read; send Content-Length".into(),
        ));
    }
    let length = match header("content-length") {
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| ReadError::Malformed("Content-Length".into()))?,
        None if method == "POST" => return Err(ReadError::NoLength),
        None => 0,
    };
    if length > max_body {
        return Err(ReadError::TooLarge(length));
    }
    let mut body = buf.split_off(head_len);
    if body.len() > length {
        return Err(ReadError::Malformed(
            "more bytes than Content-Length".into(),
        ));
    }
    let have = body.len();
    body.resize(length, 0);
    stream.read_exact(&mut body[have..]).await?;
    Ok(Request {
        method,
        path,
        content_type,
        body,
    })
}

/// Reads up to the end of the head; returns its length and every byte read.
async fn read_head(stream: &mut TcpStream) -> Result<(usize, Vec<u8>), ReadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let k = stream.read(&mut chunk).await?;
        if k == 0 {
            return Err(ReadError::Malformed(
                "closed before the end of the head".into(),
            ));
        }
        let scan_from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..k]);
        if let Some(end) = buf[scan_from..].windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok((scan_from + end + 4, buf));
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Err(ReadError::Malformed(format!(
                "head over {MAX_HEAD_BYTES} bytes"
            )));
        }
    }
}

/// Writes a whole response and closes the connection.
pub async fn respond(stream: &mut TcpStream, status: u16, content_type: &str, body: &[u8]) {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body).await;
    let _ = stream.shutdown().await;
}

/// `POST`s `body` to `addr` and returns the status and body of the answer
/// (at most `max_body` bytes), within `timeout`.
pub async fn post(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: &[u8],
    max_body: usize,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        stream
            .write_all(head.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        stream.write_all(body).await.map_err(|e| e.to_string())?;
        let (head_len, mut buf) = read_head(&mut stream).await.map_err(|e| e.to_string())?;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        resp.parse(&buf).map_err(|e| e.to_string())?;
        let status = resp.code.unwrap_or(0);
        let length = resp
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| {
                std::str::from_utf8(h.value)
                    .ok()?
                    .trim()
                    .parse::<usize>()
                    .ok()
            })
            .ok_or("answer without Content-Length")?;
        if length > max_body {
            return Err(format!("answer of {length} bytes is over the limit"));
        }
        let mut body = buf.split_off(head_len);
        let have = body.len().min(length);
        body.resize(length, 0);
        stream
            .read_exact(&mut body[have..])
            .await
            .map_err(|e| e.to_string())?;
        Ok((status, body))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
}
