//! HTTP/1.1 heads, as far as the metrics endpoint, the relay's status page and the load
//! benchmark need them: bytes are read until `httparse` finds a whole head, within a size
//! limit. [`serve`] answers requests on a listener, one short exchange per connection, a
//! few at a time.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Largest request or response head read.
pub const MAX_HEAD: usize = 8 * 1024;
/// Headers parsed in a head.
pub const MAX_HEADERS: usize = 32;

/// Why no head was read.
#[derive(Debug)]
pub enum HeadError {
    /// Reading failed.
    Io,
    /// The peer closed before the head was whole.
    Closed,
    /// The bytes are not a head, or a head longer than the buffer.
    Malformed,
}

/// Reads from `stream` into `buf` until `parse` finds a whole head in the bytes read so
/// far (`parse` gives `Ok(None)` while the head is incomplete, `Err` for bytes that are no
/// head). Returns what `parse` made of it and how many bytes were read: the body may have
/// started after the head.
pub async fn read_head<S, T>(
    stream: &mut S,
    buf: &mut [u8],
    mut parse: impl FnMut(&[u8]) -> Result<Option<T>, httparse::Error>,
) -> Result<(T, usize), HeadError>
where
    S: AsyncRead + Unpin,
{
    let mut len = 0;
    loop {
        let n = stream
            .read(&mut buf[len..])
            .await
            .map_err(|_| HeadError::Io)?;
        if n == 0 {
            return Err(HeadError::Closed);
        }
        len += n;
        match parse(&buf[..len]) {
            Ok(Some(head)) => return Ok((head, len)),
            Ok(None) if len < buf.len() => {}
            _ => return Err(HeadError::Malformed),
        }
    }
}

/// A request head's method (if it is `GET`) and path.
#[derive(Debug, PartialEq, Eq)]
pub enum RequestHead {
    /// `GET` with this path.
    Get(String),
    /// Another method.
    Other,
}

/// Reads a request head of at most [`MAX_HEAD`] bytes.
pub async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Result<RequestHead, HeadError> {
    Ok(read_request_host(stream).await?.0)
}

/// Reads a request head of at most [`MAX_HEAD`] bytes, and its `Host` header if it has one.
pub async fn read_request_host<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<(RequestHead, Option<String>), HeadError> {
    let mut buf = vec![0u8; MAX_HEAD];
    let (head, _) = read_head(stream, &mut buf, |bytes| {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        if req.parse(bytes)?.is_partial() {
            return Ok(None);
        }
        let host = req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("host"))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(|h| h.trim().to_string());
        let head = match (req.method, req.path) {
            (Some("GET"), Some(path)) => RequestHead::Get(path.to_string()),
            _ => RequestHead::Other,
        };
        Ok(Some((head, host)))
    })
    .await?;
    Ok(head)
}

/// A complete HTTP/1.1 response that closes the connection; `extra` are more header lines,
/// each ending in `\r\n`.
pub fn response(status: &str, content_type: &str, extra: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         {extra}Connection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Answers connections on `listener` forever, at most `at_once` at a time, each within
/// `limit`: `answer` reads one request from the stream and writes its response.
pub async fn serve<F, Fut>(listener: TcpListener, at_once: usize, limit: Duration, answer: F)
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let turns = Arc::new(Semaphore::new(at_once));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "http: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // The semaphore is never closed, so acquiring only waits.
        let Ok(turn) = turns.clone().acquire_owned().await else {
            return;
        };
        let reply = answer(stream);
        tokio::spawn(async move {
            if tokio::time::timeout(limit, reply).await.is_err() {
                tracing::debug!("http: a request timed out");
            }
            drop(turn);
        });
    }
}

/// Writes `reply` to `stream` and closes it; errors only end the connection.
pub async fn reply(mut stream: TcpStream, reply: String) {
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a request from `chunks`, one chunk per read at most.
    async fn read(chunks: &[&'static [u8]]) -> Result<RequestHead, HeadError> {
        let mut reader: Box<dyn AsyncRead + Unpin + Send> = Box::new(tokio::io::empty());
        for c in chunks {
            reader = Box::new(reader.chain(*c));
        }
        read_request(&mut reader).await
    }

    #[tokio::test]
    async fn a_head_in_pieces_is_read_whole() {
        let got = read(&[b"GET /met", b"rics HTTP/1.1\r\nHost: x\r\n", b"\r\n"]).await;
        assert_eq!(got.unwrap(), RequestHead::Get("/metrics".into()));
        let got = read(&[b"POST / HTTP/1.1\r\n\r\n"]).await;
        assert_eq!(got.unwrap(), RequestHead::Other);
    }

    #[tokio::test]
    async fn garbage_a_cut_head_and_an_endless_head_are_refused() {
        assert!(matches!(
            read(&[b"\x00\x01 nonsense\r\n\r\n"]).await,
            Err(HeadError::Malformed)
        ));
        assert!(matches!(
            read(&[b"GET / HTTP/1.1\r\n"]).await,
            Err(HeadError::Closed)
        ));
        let mut head = b"GET /".to_vec();
        head.resize(MAX_HEAD + 1, b'a');
        let head: &'static [u8] = head.leak();
        assert!(matches!(read(&[head]).await, Err(HeadError::Malformed)));
    }
}
