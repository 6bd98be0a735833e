//! The server's counters, as `GET /metrics` shows them in Prometheus' text format: requests by
//! endpoint and status, a latency histogram per endpoint, generated tokens and their rate,
//! requests waiting for the model and requests in flight.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 11] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Observations at or below each bound (not cumulative).
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            self.counts[i] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    latency: Mutex<BTreeMap<&'static str, Histogram>>,
    generated_tokens: AtomicU64,
    generation_micros: AtomicU64,
    queued: AtomicUsize,
    in_flight: AtomicUsize,
}

/// Counts a request in flight while it lives.
pub struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// A request answered: its endpoint (one of the routes' names), status and time.
    pub fn record(&self, endpoint: &'static str, status: u16, elapsed: Duration) {
        if let Ok(mut r) = self.requests.lock() {
            *r.entry((endpoint, status)).or_default() += 1;
        }
        if let Ok(mut l) = self.latency.lock() {
            l.entry(endpoint)
                .or_default()
                .observe(elapsed.as_secs_f64());
        }
    }

    /// Requests answered so far, whatever their status.
    pub fn answered(&self) -> u64 {
        self.requests.lock().map_or(0, |r| r.values().sum())
    }

    pub fn in_flight(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// A request handed to the model worker.
    pub fn queued(&self) {
        self.queued.fetch_add(1, Ordering::Relaxed);
    }

    /// `n` requests taken off the queue by the worker.
    pub fn dequeued(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::Relaxed);
    }

    /// A batch generated `tokens` in `elapsed`.
    pub fn generated(&self, tokens: usize, elapsed: Duration) {
        self.generated_tokens
            .fetch_add(tokens as u64, Ordering::Relaxed);
        self.generation_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP lablens_requests_total Requests answered, by endpoint and HTTP status.\n\
             # TYPE lablens_requests_total counter\n",
        );
        if let Ok(r) = self.requests.lock() {
            for ((endpoint, status), n) in r.iter() {
                writeln!(
                    out,
                    "lablens_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
                )
                .ok();
            }
        }
        out.push_str(
            "# HELP lablens_request_duration_seconds Time from a request's arrival to its last byte.\n\
             # TYPE lablens_request_duration_seconds histogram\n",
        );
        if let Ok(l) = self.latency.lock() {
            for (endpoint, h) in l.iter() {
                let mut cumulative = 0;
                for (bound, n) in BUCKETS.iter().zip(h.counts) {
                    cumulative += n;
                    writeln!(
                        out,
                        "lablens_request_duration_seconds_bucket{{endpoint=\"{endpoint}\",le=\"{bound}\"}} {cumulative}"
                    )
                    .ok();
                }
                writeln!(
                    out,
                    "lablens_request_duration_seconds_bucket{{endpoint=\"{endpoint}\",le=\"+Inf\"}} {}\n\
                     lablens_request_duration_seconds_sum{{endpoint=\"{endpoint}\"}} {}\n\
                     lablens_request_duration_seconds_count{{endpoint=\"{endpoint}\"}} {}",
                    h.count, h.sum, h.count
                )
                .ok();
            }
        }
        let tokens = self.generated_tokens.load(Ordering::Relaxed);
        let seconds = self.generation_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let rate = if seconds > 0.0 {
            tokens as f64 / seconds
        } else {
            0.0
        };
        writeln!(
            out,
            "# HELP lablens_generated_tokens_total Tokens generated.\n\
             # TYPE lablens_generated_tokens_total counter\n\
             lablens_generated_tokens_total {tokens}\n\
             # HELP lablens_generation_seconds_total Time the model spent generating.\n\
             # TYPE lablens_generation_seconds_total counter\n\
             lablens_generation_seconds_total {seconds}\n\
             # HELP lablens_generation_tokens_per_second Tokens generated per second of generation.\n\
             # TYPE lablens_generation_tokens_per_second gauge\n\
             lablens_generation_tokens_per_second {rate}\n\
             # HELP lablens_queue_length Requests waiting for the model.\n\
             # TYPE lablens_queue_length gauge\n\
             lablens_queue_length {}\n\
             # HELP lablens_requests_in_flight Requests being answered.\n\
             # TYPE lablens_requests_in_flight gauge\n\
             lablens_requests_in_flight {}",
            self.queued.load(Ordering::Relaxed),
            self.in_flight.load(Ordering::Relaxed),
        )
        .ok();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    }

    #[test]
    fn the_text_format_counts_requests_latency_and_tokens() {
        let m = Metrics::default();
        m.record("chat_completions", 200, Duration::from_millis(30));
        m.record("chat_completions", 200, Duration::from_millis(700));
        m.record("chat_completions", 400, Duration::from_millis(1));
        m.generated(50, Duration::from_millis(500));
        m.queued();
        m.queued();
        m.dequeued(1);
        let guard = m.in_flight();
        let text = m.render();
        let chat = "endpoint=\"chat_completions\"";
        assert_eq!(
            value(
                &text,
                &format!("lablens_requests_total{{{chat},status=\"200\"}}")
            ),
            2.0
        );
        assert_eq!(
            value(
                &text,
                &format!("lablens_requests_total{{{chat},status=\"400\"}}")
            ),
            1.0
        );
        let bucket = |le: &str| {
            value(
                &text,
                &format!("lablens_request_duration_seconds_bucket{{{chat},le=\"{le}\"}}"),
            )
        };
        assert_eq!(
            (bucket("0.01"), bucket("0.05"), bucket("1"), bucket("+Inf")),
            (1.0, 2.0, 3.0, 3.0)
        );
        assert_eq!(
            value(
                &text,
                &format!("lablens_request_duration_seconds_count{{{chat}}}")
            ),
            3.0
        );
        assert_eq!(value(&text, "lablens_generated_tokens_total"), 50.0);
        assert_eq!(value(&text, "lablens_generation_tokens_per_second"), 100.0);
        assert_eq!(value(&text, "lablens_queue_length"), 1.0);
        assert_eq!(value(&text, "lablens_requests_in_flight"), 1.0);
        drop(guard);
        assert_eq!(value(&m.render(), "lablens_requests_in_flight"), 0.0);
        assert!(text.contains("# TYPE lablens_request_duration_seconds histogram"));
    }
}
