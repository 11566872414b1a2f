//! A scripted HTTP server for the clients' unit tests: real sockets, canned answers.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The requests a [`server`] received: the head (request line and headers) and the body of
/// each.
#[derive(Clone, Default)]
pub struct Requests(Arc<Mutex<Vec<(String, String)>>>);

impl Requests {
    /// How many requests arrived.
    pub fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// The request lines (`POST /path?query HTTP/1.1`), in order.
    pub fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(head, _)| head.lines().next().unwrap_or_default().to_string())
            .collect()
    }

    /// The head of request `i`.
    pub fn head(&self, i: usize) -> String {
        self.0.lock().unwrap()[i].0.clone()
    }

    /// The body of request `i`.
    pub fn body(&self, i: usize) -> String {
        self.0.lock().unwrap()[i].1.clone()
    }
}

/// A one-shot HTTP server: answers each connection with the next canned response (`None`
/// closes the connection without answering), and records the requests.
pub async fn server<B: Into<String> + Send + 'static>(
    responses: Vec<Option<(u16, B)>>,
) -> (String, Requests) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Requests::default();
    let seen = requests.clone();
    tokio::spawn(async move {
        for response in responses {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 1 << 20];
            let mut len = 0;
            // Read the head, then as much body as Content-Length says.
            while let Ok(n) = sock.read(&mut buf[len..]).await {
                len += n;
                let text = String::from_utf8_lossy(&buf[..len]).to_string();
                if let Some(head_end) = text.find("\r\n\r\n") {
                    let want = text[..head_end]
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if len >= head_end + 4 + want || n == 0 {
                        break;
                    }
                } else if n == 0 {
                    break;
                }
            }
            let text = String::from_utf8_lossy(&buf[..len]).to_string();
            let (head, body) = text
                .split_once("\r\n\r\n")
                .map(|(h, b)| (h.to_string(), b.to_string()))
                .unwrap_or((text.clone(), String::new()));
            seen.0.lock().unwrap().push((head, body));
            match response {
                None => drop(sock),
                Some((status, body)) => {
                    let body: String = body.into();
                    let text = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(text.as_bytes()).await;
                }
            }
        }
    });
    (format!("http://{addr}"), requests)
}
