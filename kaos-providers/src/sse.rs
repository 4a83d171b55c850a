//! Server-sent events: a small incremental parser and a stream adapter over response bytes.
//!
//! The parser follows the WHATWG event-stream rules that matter for model vendors: lines end
//! in LF, CRLF or CR (also when split across chunks), `data:` lines of one event are joined
//! with `\n`, one space after the colon is dropped, `:` lines are comments, and an event is
//! dispatched at a blank line. Bytes are buffered until a line is complete, so a UTF-8
//! character split across chunks is never cut; a line that is not UTF-8 is an error.

use std::collections::VecDeque;

use futures::{Stream, StreamExt, stream};

use crate::ProviderError;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event:` field, if any.
    pub(crate) event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub(crate) data: String,
}

/// An incremental event-stream parser.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    line: Vec<u8>,
    /// The previous chunk ended in CR: a LF starting the next chunk belongs to it.
    after_cr: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
}

impl SseParser {
    /// Feeds a chunk; returns the events it completes.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, ProviderError> {
        let mut events = Vec::new();
        for &byte in chunk {
            let after_cr = std::mem::take(&mut self.after_cr);
            match byte {
                b'\n' if after_cr => {}
                b'\n' | b'\r' => {
                    self.after_cr = byte == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(event) = self.line_done(&line)? {
                        events.push(event);
                    }
                }
                _ => self.line.push(byte),
            }
        }
        Ok(events)
    }

    /// Ends the stream: a last event not followed by a blank line is still dispatched (some
    /// servers omit it); whether the stream was complete is for the vendor protocol to judge.
    pub(crate) fn finish(&mut self) -> Result<Option<SseEvent>, ProviderError> {
        let line = std::mem::take(&mut self.line);
        if let Some(event) = self.line_done(&line)? {
            return Ok(Some(event));
        }
        Ok(self.dispatch())
    }

    fn line_done(&mut self, line: &[u8]) -> Result<Option<SseEvent>, ProviderError> {
        if line.is_empty() {
            return Ok(self.dispatch());
        }
        let line = std::str::from_utf8(line).map_err(|e| ProviderError::MalformedResponse {
            message: format!("event stream line is not UTF-8: {e}"),
        })?;
        if line.starts_with(':') {
            return Ok(None);
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_owned()),
            _ => {} // `id`, `retry` and unknown fields do not matter here
        }
        Ok(None)
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        Some(SseEvent { event, data: std::mem::take(&mut self.data) })
    }
}

/// The events of a byte stream. A transport failure mid-stream becomes
/// [`ProviderError::Transport`]; the stream ends after the first error.
pub(crate) fn events<S, B, E>(bytes: S) -> impl Stream<Item = Result<SseEvent, ProviderError>> + Send
where
    S: Stream<Item = Result<B, E>> + Send + Unpin,
    B: AsRef<[u8]>,
    E: std::fmt::Display,
{
    struct State<S> {
        bytes: S,
        parser: SseParser,
        ready: VecDeque<SseEvent>,
        done: bool,
    }
    let state = State { bytes, parser: SseParser::default(), ready: VecDeque::new(), done: false };
    stream::unfold(state, |mut state| async move {
        loop {
            if let Some(event) = state.ready.pop_front() {
                return Some((Ok(event), state));
            }
            if state.done {
                return None;
            }
            match state.bytes.next().await {
                Some(Ok(chunk)) => match state.parser.push(chunk.as_ref()) {
                    Ok(events) => state.ready.extend(events),
                    Err(e) => {
                        state.done = true;
                        return Some((Err(e), state));
                    }
                },
                Some(Err(e)) => {
                    state.done = true;
                    let error = ProviderError::Transport { message: format!("event stream broke: {e}") };
                    return Some((Err(error), state));
                }
                None => {
                    state.done = true;
                    match state.parser.finish() {
                        Ok(last) => state.ready.extend(last),
                        Err(e) => return Some((Err(e), state)),
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent { event: event.map(str::to_owned), data: data.to_owned() }
    }

    fn parse_chunks(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::default();
        let mut out = Vec::new();
        for chunk in chunks {
            out.extend(parser.push(chunk).unwrap_or_else(|e| unreachable!("{e}")));
        }
        out.extend(parser.finish().unwrap_or_else(|e| unreachable!("{e}")));
        out
    }

    #[test]
    fn events_fields_comments_and_multiline_data() {
        let text = b": keep-alive\nevent: message_start\ndata: {\"a\":1}\n\ndata:first\ndata: second\nid: 7\nretry: 10\n\n\n";
        assert_eq!(
            parse_chunks(&[text]),
            vec![event(Some("message_start"), "{\"a\":1}"), event(None, "first\nsecond")]
        );
    }

    #[test]
    fn crlf_and_cr_line_endings_even_split_across_chunks() {
        assert_eq!(
            parse_chunks(&[b"data: a\r", b"\n\r", b"\ndata: b\r\rdata: c\r\n\r\n"]),
            vec![event(None, "a"), event(None, "b"), event(None, "c")]
        );
    }

    #[test]
    fn utf8_split_across_chunks_is_kept_whole() {
        let text = "data: héllo ✓\n\n".as_bytes();
        let chunks: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(parse_chunks(&chunks), vec![event(None, "héllo ✓")]);
    }

    #[test]
    fn a_last_event_without_blank_line_is_dispatched_and_empty_events_are_not() {
        assert_eq!(parse_chunks(&[b"event: ping\n\ndata: [DONE]"]), vec![event(None, "[DONE]")]);
    }

    #[test]
    fn invalid_utf8_is_a_typed_error() {
        let mut parser = SseParser::default();
        assert!(matches!(parser.push(b"data: \xff\xfe\n"), Err(ProviderError::MalformedResponse { .. })));
    }

    #[tokio::test]
    async fn a_broken_byte_stream_is_a_transport_error() {
        let chunks: Vec<Result<&[u8], &str>> = vec![Ok(b"data: 1\n\n"), Err("connection reset")];
        let got: Vec<_> = events(stream::iter(chunks)).collect().await;
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].as_ref().ok(), Some(&event(None, "1")));
        assert!(
            matches!(&got[1], Err(ProviderError::Transport { message }) if message.contains("connection reset"))
        );
    }
}
