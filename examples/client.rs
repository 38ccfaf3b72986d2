//! A client for food-api that does not fail on a blip, the same policy as
//! the Python package in clients/python: a per-try timeout; retries with exponential backoff and full
//! jitter on connection errors, timeouts, 429, 502, 503 and 504 (a prediction changes nothing,
//! so trying it again is safe); Retry-After honoured; one overall deadline no retry outlives; and
//! a warm-up that waits until the server is ready, then sends one real prediction.
//!
//!     cargo run --example client -- http://127.0.0.1:8000 sample/fruits.jpg "a pile of oranges"
//!
//! Copy `Client` into your project (reqwest with the "multipart" feature, tokio, fastrand, httpdate).
use std::time::{Duration, Instant, SystemTime};

use reqwest::{multipart, StatusCode};

pub struct Client {
    base_url: String,
    http: reqwest::Client,
    /// One try, connect and read.
    pub timeout: Duration,
    /// A whole call, retries and waits included.
    pub deadline: Duration,
    /// Tries after the first.
    pub retries: u32,
    /// The first backoff's ceiling, doubled each retry up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

#[derive(Debug)]
pub struct Error {
    /// The HTTP status, when an answer came.
    pub status: Option<StatusCode>,
    pub message: String,
    pub attempts: u32,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (after {} tries)", self.message, self.attempts)
    }
}

fn retried(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

/// Retry-After as a wait: delta-seconds or an HTTP date (RFC 9110, 10.2.3).
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or_default())
}

impl Client {
    pub fn new(base_url: &str) -> Self {
        Client {
            base_url: base_url.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            timeout: Duration::from_secs(10),
            deadline: Duration::from_secs(30),
            retries: 5,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }

    /// Full jitter (AWS architecture blog, "Exponential Backoff And Jitter").
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self.backoff.saturating_mul(2u32.saturating_pow(attempt)).min(self.max_backoff);
        ceiling.mul_f64(fastrand::f64())
    }

    /// POST /predict with the photo (and a text); the answer's JSON.
    pub async fn predict(&self, image: &[u8], text: Option<&str>) -> Result<serde_json::Value, Error> {
        let give_up = Instant::now() + self.deadline;
        let mut last = Error { status: None, message: "no try was made".into(), attempts: 0 };
        for attempt in 0..=self.retries {
            let left = give_up.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            // A form is consumed by its request: a new one for every try.
            let mut form =
                multipart::Form::new().part("image", multipart::Part::bytes(image.to_vec()).file_name("image.jpg"));
            if let Some(text) = text {
                form = form.text("text", text.to_string());
            }
            let sent = self
                .http
                .post(format!("{}/predict", self.base_url))
                .multipart(form)
                .timeout(self.timeout.min(left))
                .send()
                .await;
            let mut wait = None;
            match sent {
                Ok(response) if response.status().is_success() => {
                    return response.json().await.map_err(|e| Error {
                        status: None,
                        message: e.to_string(),
                        attempts: attempt + 1,
                    });
                }
                Ok(response) => {
                    let status = response.status();
                    wait = retry_after(&response);
                    let body = response.text().await.unwrap_or_default();
                    last = Error { status: Some(status), message: format!("{status}: {body}"), attempts: attempt + 1 };
                    if !retried(status) {
                        return Err(last);
                    }
                }
                // Refused, reset, or no answer within the try's timeout.
                Err(e) => last = Error { status: None, message: e.to_string(), attempts: attempt + 1 },
            }
            if attempt == self.retries {
                break;
            }
            // The server's Retry-After (with jitter on top, so that callers turned away together
            // do not come back together), else the backoff.
            let wait = wait.map_or_else(|| self.backoff(attempt), |w| w + self.backoff.mul_f64(fastrand::f64()));
            if Instant::now() + wait >= give_up {
                break;
            }
            eprintln!("retrying in {:.2} s after: {}", wait.as_secs_f64(), last.message);
            tokio::time::sleep(wait).await;
        }
        last.message = format!("gave up within {:.1} s: {}", self.deadline.as_secs_f64(), last.message);
        Err(last)
    }

    /// Whether the server is ready now (GET /v2/health/ready), one look.
    pub async fn ready(&self) -> bool {
        let response = self.http.get(format!("{}/v2/health/ready", self.base_url)).timeout(self.timeout).send().await;
        response.is_ok_and(|r| r.status().is_success())
    }

    /// Waits (with backoff) until the server is ready, then sends one real prediction.
    pub async fn warm_up(&self, image: &[u8], ready_within: Duration) -> Result<serde_json::Value, Error> {
        let give_up = Instant::now() + ready_within;
        let mut attempt = 0;
        while !self.ready().await {
            let wait = self.backoff(attempt);
            if Instant::now() + wait > give_up {
                let message = format!("{} was not ready within {:.0} s", self.base_url, ready_within.as_secs_f64());
                return Err(Error { status: None, message, attempts: attempt + 1 });
            }
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
        self.predict(image, None).await
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(url), Some(photo)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: client BASE_URL PHOTO [TEXT]");
        std::process::exit(2);
    };
    let image = std::fs::read(photo).unwrap_or_else(|e| {
        eprintln!("{photo}: {e}");
        std::process::exit(2);
    });
    let client = Client::new(url);
    let result = async {
        let warm = client.warm_up(&image, Duration::from_secs(120)).await?;
        eprintln!("warm: {}", warm["label"]);
        client.predict(&image, args.get(3).map(String::as_str)).await
    };
    match result.await {
        Ok(answer) => println!("{answer}"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
