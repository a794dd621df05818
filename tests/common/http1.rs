//! HTTP/1.1 spoken by hand, for the peers that must see a request as it came on the wire (the
//! proxy, the TLS receiver): a head read up to its blank line, a body of Content-Length bytes.
//! Chunked request bodies are not read: reqwest sends a body it holds whole with a length.
#![allow(dead_code)]

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

/// A head longer than this is a broken peer, not a test.
const MAX_HEAD: usize = 64 * 1024;

#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// As sent: `/path?q`, `http://host:port/path?q` to a proxy, or `host:port` for CONNECT.
    pub target: String,
    /// In the order sent, names as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads up to the blank line that ends a head: the head without it, and the bytes that came
/// after it. `None` when the peer closed before a whole head.
pub async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> io::Result<Option<(String, Vec<u8>)>> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            return Ok(Some((head, buffer[end + 4..].to_vec())));
        }
        if buffer.len() > MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "head too long"));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// Reads one request, its body included. A client sends nothing after a CONNECT until it is
/// answered, so no tunnelled byte can be read here by mistake.
pub async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<Option<Request>> {
    let Some((head, mut body)) = read_head(stream).await? else {
        return Ok(None);
    };
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_string();
    let target = first.next().unwrap_or_default().to_string();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    let mut request = Request {
        method,
        target,
        headers,
        body: Vec::new(),
    };
    let length = request
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if body.len() < length {
        let read = body.len();
        body.resize(length, 0);
        stream.read_exact(&mut body[read..]).await?;
    }
    body.truncate(length);
    request.body = body;
    Ok(Some(request))
}

/// An answer with a text body, after which the connection closes.
pub fn answer(status: &str, extra_headers: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\n{extra_headers}Content-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
