//! A client for the JSON and HTML of an aiwatch server under test (`serve`, in process or as a
//! child): one plain HTTP/1.1 request per connection, and waiting until a JSON view says what a
//! test expects.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long [`ApiClient::wait_for`] waits before it fails the test with the last value.
const WAIT: Duration = Duration::from_secs(20);

/// Requests to the server at `addr`.
#[derive(Clone, Copy, Debug)]
pub struct ApiClient {
    pub addr: SocketAddr,
}

impl ApiClient {
    /// GET `path`: (status, body); (0, "") when nothing answers.
    pub async fn get(&self, path: &str) -> (u16, String) {
        self.get_with(path, &[]).await
    }

    /// GET `path` with extra request headers.
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let Ok(mut stream) = tokio::net::TcpStream::connect(self.addr).await else {
            return (0, String::new());
        };
        let extra: String = headers
            .iter()
            .map(|(n, v)| format!("{n}: {v}\r\n"))
            .collect();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: aiwatch\r\nConnection: close\r\n{extra}\r\n");
        if stream.write_all(request.as_bytes()).await.is_err() {
            return (0, String::new());
        }
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw).await;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    /// GET `path`, which must answer 200 with JSON.
    pub async fn json(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path} is not JSON ({e}): {body}"))
    }

    /// Waits until `check` holds on the JSON at `path`, or fails with the last value.
    pub async fn wait_for(&self, path: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let value = self.json(path).await;
            if check(&value) {
                return value;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; last {path}:\n{value:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
