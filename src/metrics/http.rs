//! The head of a scraper's HTTP/1.x request, parsed strictly and bounded:
//! only what serving `/metrics` needs (the method and the path), every
//! line checked for its shape, nothing allocated from its lengths.

/// The longest request head read ([`parse_request_head`] refuses a
/// longer one): a scraper sends a few hundred bytes.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// The most header lines a head may have.
const MAX_HEADER_LINES: usize = 64;

/// What a scraper asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScrapeRequest {
    /// `GET /metrics` (a query string is ignored).
    Metrics,
    /// `HEAD /metrics`: the headers only.
    MetricsHead,
    /// GET or HEAD of another path: 404.
    NotFound,
    /// Another method: 405.
    MethodNotAllowed,
}

/// Why a request head was refused (answered 400, or 431 when too long).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// No blank line ends the head within [`MAX_REQUEST_HEAD`] bytes.
    #[error("the request head is longer than {MAX_REQUEST_HEAD} bytes")]
    TooLong,
    /// The head is not complete yet (read more).
    #[error("the request head is incomplete")]
    Incomplete,
    /// The request line is not `METHOD SP TARGET SP HTTP/1.x`.
    #[error("malformed request line")]
    RequestLine,
    /// A header line is not `name: value`, or has control characters.
    #[error("malformed header line")]
    HeaderLine,
    /// More than 64 header lines.
    #[error("too many header lines")]
    TooManyHeaders,
}

/// Parses the head of `bytes` (the request read so far). `Incomplete`
/// means read more, up to [`MAX_REQUEST_HEAD`] bytes.
pub fn parse_request_head(bytes: &[u8]) -> Result<ScrapeRequest, HeadError> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n");
    let head = match end {
        Some(end) => bytes.get(..end).ok_or(HeadError::Incomplete)?,
        None if bytes.len() >= MAX_REQUEST_HEAD => return Err(HeadError::TooLong),
        None => return Err(HeadError::Incomplete),
    };
    if head.len() > MAX_REQUEST_HEAD {
        return Err(HeadError::TooLong);
    }
    let head = std::str::from_utf8(head).map_err(|_| HeadError::RequestLine)?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().ok_or(HeadError::RequestLine)?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::RequestLine);
    };
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphabetic());
    let visible = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
    if !token(method) || !visible(target) || !matches!(version, "HTTP/1.0" | "HTTP/1.1") {
        return Err(HeadError::RequestLine);
    }
    let mut count = 0;
    for line in lines {
        count += 1;
        if count > MAX_HEADER_LINES {
            return Err(HeadError::TooManyHeaders);
        }
        let (name, value) = line.split_once(':').ok_or(HeadError::HeaderLine)?;
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.!#$%&'*+^`|~".contains(&b));
        let value_ok = value
            .bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b));
        if !name_ok || !value_ok {
            return Err(HeadError::HeaderLine);
        }
    }
    let path = target.split('?').next().unwrap_or_default();
    Ok(match (method, path) {
        ("GET", "/metrics") => ScrapeRequest::Metrics,
        ("HEAD", "/metrics") => ScrapeRequest::MetricsHead,
        ("GET" | "HEAD", _) => ScrapeRequest::NotFound,
        _ => ScrapeRequest::MethodNotAllowed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_is_understood_and_anything_else_named() {
        let prometheus = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9100\r\n\
            User-Agent: Prometheus/2.42.0\r\nAccept: text/plain;version=0.0.4;q=1,*/*;q=0.1\r\n\
            Accept-Encoding: gzip\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n";
        assert_eq!(parse_request_head(prometheus), Ok(ScrapeRequest::Metrics));
        for (head, want) in [
            (
                &b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"[..],
                Ok(ScrapeRequest::MetricsHead),
            ),
            (b"GET / HTTP/1.1\r\n\r\n", Ok(ScrapeRequest::NotFound)),
            (
                b"POST /metrics HTTP/1.1\r\n\r\n",
                Ok(ScrapeRequest::MethodNotAllowed),
            ),
            (
                b"GET /metrics HTTP/1.1\r\nHost: x\r\n",
                Err(HeadError::Incomplete),
            ),
            (b"GET /metrics HTTP/2\r\n\r\n", Err(HeadError::RequestLine)),
            (
                b"GET  /metrics HTTP/1.1\r\n\r\n",
                Err(HeadError::RequestLine),
            ),
            (
                b"GET /metrics HTTP/1.1 x\r\n\r\n",
                Err(HeadError::RequestLine),
            ),
            (
                b"GET /metrics HTTP/1.1\r\nno colon\r\n\r\n",
                Err(HeadError::HeaderLine),
            ),
            (
                b"GET /metrics HTTP/1.1\r\nA: b\x1b[2J\r\n\r\n",
                Err(HeadError::HeaderLine),
            ),
            (
                b"\xff\xfe /metrics HTTP/1.1\r\n\r\n",
                Err(HeadError::RequestLine),
            ),
        ] {
            assert_eq!(
                parse_request_head(head),
                want,
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
        let long = vec![b'a'; MAX_REQUEST_HEAD];
        assert_eq!(parse_request_head(&long), Err(HeadError::TooLong));
        let many = format!("GET /metrics HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(65));
        assert_eq!(
            parse_request_head(many.as_bytes()),
            Err(HeadError::TooManyHeaders)
        );
    }
}
