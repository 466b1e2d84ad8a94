//! Splits a server-sent-events byte stream into events, however the bytes are chunked, with a
//! cap on how long one line may grow.

/// One event: its `event:` name (if any) and its `data:` lines joined by newlines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    pub name: Option<String>,
    pub data: String,
}

impl SseEvent {
    /// The event as it goes on the wire.
    pub fn to_wire(&self) -> String {
        let mut out = String::with_capacity(self.data.len() + 16);
        if let Some(name) = &self.name {
            out.push_str("event: ");
            out.push_str(name);
            out.push('\n');
        }
        for line in self.data.split('\n') {
            out.push_str("data: ");
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
        out
    }
}

/// A line grew past the cap without ending: garbage, not a stream.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a stream line grew past {0} bytes without ending")]
pub struct LineTooLong(pub usize);

/// Incremental parser; feed it bytes as they come.
#[derive(Debug)]
pub struct SseParser {
    pending: Vec<u8>,
    name: Option<String>,
    data: Vec<String>,
    has_data: bool,
    /// Bytes of data in the event being read.
    data_len: usize,
    max_line: usize,
}

impl SseParser {
    pub fn new(max_line: usize) -> Self {
        Self {
            pending: Vec::new(),
            name: None,
            data: Vec::new(),
            has_data: false,
            data_len: 0,
            max_line,
        }
    }

    /// Parses what `bytes` completes; the rest waits for more. One event's data may not grow
    /// past the line cap either.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, LineTooLong> {
        let mut events = Vec::new();
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(offset) = self.pending[start..].iter().position(|b| *b == b'\n') {
            let end = start + offset;
            let line = &self.pending[start..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let line = String::from_utf8_lossy(line).into_owned();
            start = end + 1;
            if let Some(event) = self.line(&line) {
                events.push(event);
            }
            if self.data_len > self.max_line {
                return Err(LineTooLong(self.max_line));
            }
        }
        self.pending.drain(..start);
        if self.pending.len() > self.max_line {
            return Err(LineTooLong(self.max_line));
        }
        Ok(events)
    }

    /// Ends the stream: a last event without its blank line still counts.
    pub fn finish(&mut self) -> Option<SseEvent> {
        if !self.pending.is_empty() {
            let line = String::from_utf8_lossy(&std::mem::take(&mut self.pending)).into_owned();
            let line = line.trim_end_matches('\r').to_owned();
            if let Some(event) = self.line(&line) {
                return Some(event);
            }
        }
        self.line("")
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            if !self.has_data && self.name.is_none() {
                return None;
            }
            let event = SseEvent {
                name: self.name.take(),
                data: std::mem::take(&mut self.data).join("\n"),
            };
            self.has_data = false;
            self.data_len = 0;
            return Some(event);
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.name = Some(value.to_owned()),
            "data" => {
                self.data_len += value.len() + 1;
                self.data.push(value.to_owned());
                self.has_data = true;
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_come_out_whole() {
        let wire = "event: message_start\ndata: {\"a\":1}\n\n: keep-alive\n\ndata: [DONE]\n\n";
        for cut in 0..wire.len() {
            let mut p = SseParser::new(1024);
            let mut got = p.feed(&wire.as_bytes()[..cut]).expect("short lines");
            got.extend(p.feed(&wire.as_bytes()[cut..]).expect("short lines"));
            assert_eq!(
                got,
                vec![
                    SseEvent {
                        name: Some("message_start".into()),
                        data: "{\"a\":1}".into()
                    },
                    SseEvent {
                        name: None,
                        data: "[DONE]".into()
                    }
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn crlf_and_multi_line_data_are_handled() {
        let mut p = SseParser::new(1024);
        let got = p.feed(b"data: one\r\ndata: two\r\n\r\n").expect("short");
        assert_eq!(got[0].data, "one\ntwo");
        assert_eq!(got[0].to_wire(), "data: one\ndata: two\n\n");
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut p = SseParser::new(16);
        assert_eq!(p.feed(&[b'x'; 17]), Err(LineTooLong(16)));
    }

    #[test]
    fn an_endless_event_of_short_lines_is_refused() {
        let mut p = SseParser::new(64);
        let many = "data: 0123456789\n".repeat(10);
        assert_eq!(p.feed(many.as_bytes()), Err(LineTooLong(64)));
    }

    #[test]
    fn a_last_event_without_blank_line_is_kept() {
        let mut p = SseParser::new(64);
        assert!(p.feed(b"data: [DONE]").expect("short").is_empty());
        assert_eq!(p.finish().map(|e| e.data), Some("[DONE]".to_owned()));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let mut p = SseParser::new(128);
            let _ = p.feed(&bytes);
            let _ = p.finish();
        }
    }
}
