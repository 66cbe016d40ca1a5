//! The head of an HTTP request to `--metrics-listen`: never a panic; a
//! head accepted is complete (ends in a blank line, within the bound)
//! and a scrape is what its request line says.
#![no_main]
use libfuzzer_sys::fuzz_target;
use p2psip::metrics::{parse_request_head, ScrapeRequest, MAX_REQUEST_HEAD};

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = parse_request_head(data) {
        let end = data
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an accepted head is complete");
        assert!(end <= MAX_REQUEST_HEAD);
        match request {
            ScrapeRequest::Metrics => assert!(data.starts_with(b"GET /metrics")),
            ScrapeRequest::MetricsHead => assert!(data.starts_with(b"HEAD /metrics")),
            ScrapeRequest::NotFound | ScrapeRequest::MethodNotAllowed => {}
        }
    }
});
