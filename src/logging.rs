//! Logging for the long-running commands: `tracing` events to standard error, through a
//! buffer that a background thread writes out.
//!
//! Every admission decision is logged (the audit trail of what was allowed and why), so the
//! log line is on the request path. Written straight to stderr it costs a `write(2)` per
//! request; here a request only appends its formatted line to a buffer under a mutex, and the
//! writer thread hands the buffer to the kernel every [`FLUSH_INTERVAL`] or once it holds
//! [`FLUSH_BYTES`]. When the output cannot keep up and the buffer reaches [`MAX_BUFFERED`],
//! requests wait for the writer (as they would on a blocking stderr): lines are never dropped.
//! [`LogGuard`] writes what is left when the command ends.

use std::fmt::{self, Write as _};
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, UNIX_EPOCH};

use crate::json_view::{Escaping, write_json_str};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Json, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// How long a line may wait in the buffer.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(20);
/// A buffer this full is written at once.
pub const FLUSH_BYTES: usize = 64 * 1024;
/// Above this, writers wait for the output.
pub const MAX_BUFFERED: usize = 4 * 1024 * 1024;
/// A longer line is cut (its fields come from requests, which may be megabytes): text lines
/// keep their head and say how much was cut; JSON lines become a JSON object holding the
/// head as a string, so that every line still parses.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

static LINES_CUT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static BYTES_CUT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Log lines cut at [`MAX_LINE_BYTES`] since the process started, and the bytes cut from
/// them (the metrics read this; the log is process-wide, like stderr).
pub fn cut() -> (u64, u64) {
    use std::sync::atomic::Ordering::Relaxed;
    (LINES_CUT.load(Relaxed), BYTES_CUT.load(Relaxed))
}

/// `line` as it is written: itself, or when longer than `max`, a line of at most about `max`
/// bytes that keeps its head.
fn bounded_line(line: &[u8], max: usize) -> std::borrow::Cow<'_, [u8]> {
    if line.len() <= max {
        return std::borrow::Cow::Borrowed(line);
    }
    let room = max.saturating_sub(256);
    let json = line.first() == Some(&b'{');
    // A JSON line's head is written escaped: keep what fits escaped.
    let mut keep = 0;
    let mut cost = 0;
    for &byte in line {
        cost += match byte {
            b'"' | b'\\' if json => 2,
            0..0x20 if json => 6,
            _ => 1,
        };
        if cost > room {
            break;
        }
        keep += 1;
    }
    let head = String::from_utf8_lossy(&line[..keep]);
    // A cut inside a character drops its pieces.
    let head = head.trim_end_matches(char::REPLACEMENT_CHARACTER);
    let cut = line.len() - head.len();
    use std::sync::atomic::Ordering::Relaxed;
    LINES_CUT.fetch_add(1, Relaxed);
    BYTES_CUT.fetch_add(cut as u64, Relaxed);
    let mut out = String::with_capacity(max);
    if json {
        out.push_str("{\"cut_bytes\":");
        out.push_str(&cut.to_string());
        out.push_str(",\"line_head\":");
        let _ = write_json_str(&mut out, head);
        out.push_str("}\n");
    } else {
        out.push_str(head);
        out.push_str(&format!(" …[{cut} bytes of this line cut]\n"));
    }
    std::borrow::Cow::Owned(out.into_bytes())
}

/// Installs the global subscriber: `FLUXGATE_LOG` (an `EnvFilter`, default `info`), text or
/// JSON lines (`json`), to standard error through a [`BufferedWriter`]. Keep the guard until
/// the command ends.
pub fn init(json: bool) -> LogGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLUXGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let writer = BufferedWriter::new(std::io::stderr());
    let guard = writer.guard();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_timer(UtcTime)
        .with_writer(writer);
    if json {
        builder
            .json()
            .flatten_event(true)
            .event_format(JsonLines::new(UtcTime))
            .init();
    } else {
        builder.init();
    }
    guard
}

/// The time as tracing's [`SystemTime`] writes it (RFC 3339, UTC, microseconds), with the
/// date and time of day worked out once a second per thread: every decision is logged, and
/// formatting the whole timestamp through `fmt` cost a quarter of the log line.
#[derive(Debug, Clone, Copy, Default)]
pub struct UtcTime;

/// 10000-01-01T00:00:00Z: from here on the year has five digits, which [`SystemTime`] writes.
const YEAR_10000: u64 = 253_402_300_800;

thread_local! {
    /// The second last formatted on this thread, and its `YYYY-MM-DDTHH:MM:SS`.
    static SECOND: std::cell::Cell<(u64, [u8; 19])> = const { std::cell::Cell::new((u64::MAX, [0; 19])) };
}

impl FormatTime for UtcTime {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        let since_epoch = std::time::SystemTime::now().duration_since(UNIX_EPOCH);
        let Some(since_epoch) = since_epoch.ok().filter(|d| d.as_secs() < YEAR_10000) else {
            return SystemTime.format_time(w);
        };
        let seconds = since_epoch.as_secs();
        let cached = SECOND.with(|cached| {
            let (second, text) = cached.get();
            if second == seconds {
                return Some(text);
            }
            let text = date_time(seconds)?;
            cached.set((seconds, text));
            Some(text)
        });
        let Some(day_and_time) = cached else {
            return SystemTime.format_time(w);
        };
        let mut fraction = *b".000000Z";
        put_digits(&mut fraction[1..7], u64::from(since_epoch.subsec_micros()));
        w.write_str(std::str::from_utf8(&day_and_time).map_err(|_| fmt::Error)?)?;
        w.write_str(std::str::from_utf8(&fraction).map_err(|_| fmt::Error)?)
    }
}

/// `YYYY-MM-DDTHH:MM:SS` of a time `seconds` after the epoch, before the year 10000.
fn date_time(seconds: u64) -> Option<[u8; 19]> {
    let t = time::OffsetDateTime::from_unix_timestamp(i64::try_from(seconds).ok()?).ok()?;
    let mut text = *b"0000-00-00T00:00:00";
    put_digits(&mut text[0..4], u64::try_from(t.year()).ok()?);
    put_digits(&mut text[5..7], u64::from(u8::from(t.month())));
    put_digits(&mut text[8..10], u64::from(t.day()));
    put_digits(&mut text[11..13], u64::from(t.hour()));
    put_digits(&mut text[14..16], u64::from(t.minute()));
    put_digits(&mut text[17..19], u64::from(t.second()));
    Some(text)
}

/// Writes `value` in decimal into `out`, zero-padded to its length (the lowest digits if it
/// does not fit).
fn put_digits(out: &mut [u8], mut value: u64) {
    for digit in out.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

struct Buffer {
    bytes: Vec<u8>,
    closed: bool,
}

struct Shared {
    buffer: Mutex<Buffer>,
    /// Wakes the writer thread (the buffer is full enough, or closed).
    filled: Condvar,
    /// Wakes producers waiting for room.
    drained: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Buffer> {
        // A panic while appending leaves at worst a partial line; the buffer is still usable.
        self.buffer.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A [`MakeWriter`] whose lines are written to `output` by a background thread.
#[derive(Clone)]
pub struct BufferedWriter {
    shared: Arc<Shared>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl BufferedWriter {
    pub fn new<W: Write + Send + 'static>(output: W) -> Self {
        let shared = Arc::new(Shared {
            buffer: Mutex::new(Buffer {
                bytes: Vec::with_capacity(FLUSH_BYTES),
                closed: false,
            }),
            filled: Condvar::new(),
            drained: Condvar::new(),
        });
        let for_thread = shared.clone();
        let thread = std::thread::Builder::new()
            .name("fluxgate-log".into())
            .spawn(move || write_out(&for_thread, output))
            .ok();
        if thread.is_none() {
            // No thread, no writer: lines are written by the request that logs them.
            shared.lock().closed = true;
        }
        BufferedWriter {
            shared,
            thread: Arc::new(Mutex::new(thread)),
        }
    }

    /// Writes what is buffered and stops the writer thread when dropped.
    pub fn guard(&self) -> LogGuard {
        LogGuard {
            writer: self.clone(),
        }
    }
}

/// Flushes the log and stops its writer thread when dropped.
pub struct LogGuard {
    writer: BufferedWriter,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.writer.shared.lock().closed = true;
        self.writer.shared.filled.notify_all();
        let thread = self
            .writer
            .thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

fn write_out<W: Write>(shared: &Shared, mut output: W) {
    let mut spare = Vec::with_capacity(FLUSH_BYTES);
    loop {
        let mut buffer = shared.lock();
        if buffer.bytes.len() < FLUSH_BYTES && !buffer.closed {
            buffer = shared
                .filled
                .wait_timeout(buffer, FLUSH_INTERVAL)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        std::mem::swap(&mut buffer.bytes, &mut spare);
        let closed = buffer.closed;
        drop(buffer);
        shared.drained.notify_all();
        if !spare.is_empty() {
            // Nowhere to report a failed write to stderr; the next batch tries again.
            let _ = output.write_all(&spare).and_then(|()| output.flush());
            spare.clear();
            if spare.capacity() > 4 * FLUSH_BYTES {
                spare.shrink_to(FLUSH_BYTES);
            }
        }
        if closed {
            // Lines logged after the close were written by their callers.
            return;
        }
    }
}

/// One event's line: appended to the buffer in a single `write_all` by tracing's formatter.
pub struct LineWriter<'a> {
    shared: &'a Shared,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let written = line.len();
        let bytes = &*bounded_line(line, MAX_LINE_BYTES);
        let mut buffer = self.shared.lock();
        if buffer.closed {
            drop(buffer);
            return std::io::stderr().write_all(bytes).map(|()| written);
        }
        while buffer.bytes.len() >= MAX_BUFFERED && !buffer.closed {
            buffer = self
                .shared
                .drained
                .wait(buffer)
                .unwrap_or_else(|p| p.into_inner());
        }
        buffer.bytes.extend_from_slice(bytes);
        if buffer.bytes.len() >= FLUSH_BYTES {
            self.shared.filled.notify_one();
        }
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BufferedWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            shared: &self.shared,
        }
    }
}

/// tracing-subscriber's JSON lines (`json().flatten_event(true)`), byte for byte, written
/// straight into the line buffer. Its own formatter goes through serde_json, checks UTF-8 at
/// every write and formats each `%` field twice; for the decision line that is most of the
/// cost of a review. Events inside a span, whose lines also carry the span, are left to it.
pub struct JsonLines<T> {
    timer: T,
    spans: Format<Json, T>,
}

impl<T: FormatTime + Clone> JsonLines<T> {
    pub fn new(timer: T) -> Self {
        JsonLines {
            spans: tracing_subscriber::fmt::format()
                .json()
                .flatten_event(true)
                .with_timer(timer.clone()),
            timer,
        }
    }
}

impl<S, N, T> FormatEvent<S, N> for JsonLines<T>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
    T: FormatTime,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let in_span =
            event.parent().is_some() || (event.is_contextual() && ctx.lookup_current().is_some());
        if in_span {
            return self.spans.format_event(ctx, writer, event);
        }
        // The line is put together in a reused buffer and handed over in one write: the
        // writer dispatches every piece dynamically.
        LINE.with(|buffer| match buffer.try_borrow_mut() {
            Ok(mut line) => {
                line.clear();
                self.line(&mut line, event)?;
                writer.write_str(&line)
            }
            // A field whose formatting logs: this line gets its own buffer.
            Err(_) => {
                let mut line = String::new();
                self.line(&mut line, event)?;
                writer.write_str(&line)
            }
        })
    }
}

thread_local! {
    static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

impl<T: FormatTime> JsonLines<T> {
    fn line(&self, line: &mut String, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        line.push_str("{\"timestamp\":\"");
        self.timer.format_time(&mut Writer::new(line))?;
        line.push_str("\",\"level\":\"");
        line.push_str(meta.level().as_str());
        line.push('"');
        let mut fields = JsonFields {
            out: line,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        line.push_str(",\"target\":");
        write_json_str(line, meta.target())?;
        line.push_str("}\n");
        Ok(())
    }
}

/// Writes each field as `,"name":value`, as serde_json writes it.
struct JsonFields<'a> {
    out: &'a mut String,
    result: fmt::Result,
}

impl JsonFields<'_> {
    fn entry(&mut self, field: &Field, value: impl FnOnce(&mut String) -> fmt::Result) {
        if self.result.is_ok() {
            self.out.push(',');
            self.result = write_json_str(self.out, field.name()).and_then(|()| {
                self.out.push(':');
                value(self.out)
            });
        }
    }
}

impl Visit for JsonFields<'_> {
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, |out| {
            out.push_str(if value { "true" } else { "false" });
            Ok(())
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, |out| write!(out, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, |out| write!(out, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // serde_json's number text (and `null` for what JSON cannot hold).
        self.entry(field, |out| {
            out.push_str(&serde_json::to_string(&value).unwrap_or_else(|_| "null".into()));
            Ok(())
        });
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.entry(field, |out| write_json_str(out, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.entry(field, |out| {
            out.push('"');
            write!(Escaping(out), "{value:?}")?;
            out.push('"');
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_and_json_lines_still_parse() {
        let (lines_before, _) = cut();
        let long = format!(
            "{{\"level\":\"INFO\",\"user\":\"{}\"}}\n",
            "é\\\"".repeat(20_000)
        );
        let written = bounded_line(long.as_bytes(), MAX_LINE_BYTES);
        assert!(written.len() <= MAX_LINE_BYTES + 64, "{}", written.len());
        let parsed: serde_json::Value =
            serde_json::from_slice(&written).expect("a cut JSON line is JSON");
        assert!(parsed["cut_bytes"].as_u64().is_some_and(|n| n > 60_000));
        assert!(
            parsed["line_head"]
                .as_str()
                .is_some_and(|h| h.starts_with("{\"level\""))
        );

        let text = format!(
            "2026-01-01T00:00:00Z INFO decision user={}\n",
            "x".repeat(40_000)
        );
        let written = String::from_utf8(bounded_line(text.as_bytes(), MAX_LINE_BYTES).into_owned())
            .expect("utf-8");
        assert!(
            written.ends_with("bytes of this line cut]\n"),
            "{}",
            &written[written.len() - 60..]
        );
        assert!(written.len() <= MAX_LINE_BYTES);
        assert!(cut().0 >= lines_before + 2);

        let short = b"short line\n";
        assert_eq!(&*bounded_line(short, MAX_LINE_BYTES), short);
    }

    /// An output the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn log_lines(writer: &BufferedWriter, lines: usize) {
        for i in 0..lines {
            let mut line = writer.make_writer();
            line.write_all(format!("line {i}\n").as_bytes())
                .expect("appends");
        }
    }

    #[derive(Clone)]
    struct FixedTime;

    impl FormatTime for FixedTime {
        fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
            w.write_str("2026-11-21T20:42:47.385656Z")
        }
    }

    /// Events of every field type, in and out of spans, as `emit` logs them.
    fn emit() {
        let error = std::io::Error::other("disk \"full\"");
        tracing::info!(
            target: "fluxgate::decision",
            endpoint = "validate",
            uid = %"c0ffee-\u{1}-\u{1f}",
            user = %"system:serviceaccount:ns:\"sa\"\\",
            dry_run = false,
            patched = true,
            count = 42u64,
            delta = -7i64,
            ratio = 0.25f64,
            nan = f64::NAN,
            big = 1u128 << 100,
            action = ?Some("exempted\n"),
            error = &error as &(dyn std::error::Error + 'static),
            "decision"
        );
        tracing::warn!(
            note = "tab\tcr\rff\u{c}bs\u{8}é€😀\u{7f}",
            "a {} message",
            "formatted"
        );
        let span = tracing::info_span!("reflector", kind = "Role");
        let _entered = span.enter();
        tracing::info!(objects = 3u64, "inside a span");
    }

    fn lines<E>(format: E) -> String
    where
        E: for<'a> FormatEvent<
                tracing_subscriber::Registry,
                tracing_subscriber::fmt::format::JsonFields,
            > + Send
            + Sync
            + 'static,
    {
        let output = Captured::default();
        let sink = output.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_timer(FixedTime)
            .event_format(format)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        String::from_utf8(output.0.lock().expect("lock").clone()).expect("utf-8")
    }

    #[test]
    fn dates_are_those_of_the_calendar() {
        let cases = [
            (0, "1970-01-01T00:00:00"),
            (951_782_399, "2000-02-28T23:59:59"),
            (951_782_400, "2000-02-29T00:00:00"),
            (951_868_800, "2000-03-01T00:00:00"),
            (4_107_542_400, "2100-03-01T00:00:00"),
            (1_795_377_767, "2026-11-22T20:02:47"),
            (YEAR_10000 - 1, "9999-12-31T23:59:59"),
        ];
        for (seconds, expected) in cases {
            let text = date_time(seconds).expect("a date before the year 10000");
            assert_eq!(std::str::from_utf8(&text), Ok(expected), "{seconds}");
        }
    }

    #[test]
    fn the_cached_time_reads_as_tracing_writes_it() {
        fn format(timer: &dyn FormatTime) -> String {
            let mut text = String::new();
            timer
                .format_time(&mut Writer::new(&mut text))
                .expect("formatted");
            text
        }
        // Equal to the second, which a tick between the two readings may change: retried.
        let same_second = (0..5).any(|_| {
            let (ours, theirs) = (format(&UtcTime), format(&SystemTime));
            ours.len() == theirs.len() && ours[..19] == theirs[..19]
        });
        assert!(
            same_second,
            "{} vs {}",
            format(&UtcTime),
            format(&SystemTime)
        );
        let text = format(&UtcTime);
        assert_eq!(text.len(), "2026-11-21T20:42:47.385656Z".len(), "{text}");
        assert!(text.ends_with('Z') && text.as_bytes()[19] == b'.', "{text}");
    }

    #[test]
    fn json_lines_are_those_of_tracing_subscriber_byte_for_byte() {
        let theirs = lines(
            tracing_subscriber::fmt::format()
                .json()
                .flatten_event(true)
                .with_timer(FixedTime),
        );
        let ours = lines(JsonLines::new(FixedTime));
        assert_eq!(ours, theirs);
        assert_eq!(ours.lines().count(), 3, "{ours}");
        assert!(
            ours.contains(r#""span":{"kind":"Role","name":"reflector"}"#),
            "{ours}"
        );
    }

    #[test]
    fn escaping_is_serde_jsons() {
        let all: String = (0u8..=0x7f).map(char::from).chain("é€😀".chars()).collect();
        let mut ours = String::new();
        write_json_str(&mut ours, &all).expect("writes");
        assert_eq!(ours, serde_json::to_string(&all).expect("serializes"));
        // Each escaped byte at every offset of the eight-byte steps.
        for special in ["\"", "\\", "\u{0}", "\u{1f}", "\n", "é"] {
            for at in 0..20 {
                let text = format!("{}{special}{}", "x".repeat(at), "y".repeat(20 - at));
                let mut ours = String::new();
                write_json_str(&mut ours, &text).expect("writes");
                assert_eq!(ours, serde_json::to_string(&text).expect("serializes"));
            }
        }
    }

    #[test]
    fn every_line_is_written_in_order_by_the_time_the_guard_is_dropped() {
        let output = Captured::default();
        let writer = BufferedWriter::new(output.clone());
        let guard = writer.guard();
        log_lines(&writer, 10_000);
        drop(guard);
        let text = String::from_utf8(output.0.lock().expect("lock").clone()).expect("utf-8");
        let expected: String = (0..10_000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(text, expected);
    }

    #[test]
    fn lines_from_many_threads_stay_whole() {
        let output = Captured::default();
        let writer = BufferedWriter::new(output.clone());
        let guard = writer.guard();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| log_lines(&writer, 2_000));
            }
        });
        drop(guard);
        let text = String::from_utf8(output.0.lock().expect("lock").clone()).expect("utf-8");
        assert_eq!(text.lines().count(), 8_000);
        assert!(text.lines().all(|l| l.starts_with("line ")), "{text}");
    }

    #[test]
    fn a_line_is_written_while_the_guard_is_still_held() {
        let output = Captured::default();
        let writer = BufferedWriter::new(output.clone());
        let _guard = writer.guard();
        log_lines(&writer, 1);
        // Polled rather than timed: the writer thread gets there on a loaded machine too.
        while output.0.lock().expect("lock").is_empty() {
            std::thread::sleep(FLUSH_INTERVAL);
        }
        assert_eq!(output.0.lock().expect("lock").as_slice(), b"line 0\n");
    }
}
