//! Streaming, parallel, order-preserving NDJSON processing in constant memory.
//!
//! A reader thread cuts the input into batches of lines, worker threads transform the
//! batches, and the calling thread writes them back in input order. Channels are bounded,
//! so at most a fixed number of batches is in memory whatever the input size.
//!
//! Input and output may be plaintext (the input of `ae encrypt`, the output of
//! `ae decrypt`): every buffer here is wiped before it grows and when it is freed.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use always_encrypted::cipher::ReserveWiping;
use zeroize::{Zeroize, Zeroizing};

/// Lines per batch: large enough to amortize channel traffic, small enough to keep memory
/// flat and the progress bar lively.
const BATCH_LINES: usize = 256;
/// Bytes per batch, whichever comes first.
const BATCH_BYTES: usize = 1 << 20;
/// The longest line read: a hostile stream without newlines cannot exhaust memory. Far
/// above the library's default document limit (16 MiB), which refuses big documents with
/// a clearer error.
const MAX_LINE_BYTES: usize = 64 << 20;

/// A document that could not be processed.
#[derive(Debug)]
pub(crate) struct LineError<E> {
    /// 1-based line number in the input.
    pub(crate) line: u64,
    /// What went wrong.
    pub(crate) error: E,
}

/// Why a run stopped.
#[derive(Debug)]
pub(crate) enum PipelineError<E> {
    /// A document failed (the first one in input order).
    Line(LineError<E>),
    /// The input is not UTF-8 at this line.
    NotUtf8 { line: u64 },
    /// Reading the input failed.
    Read(io::Error),
    /// Writing the output failed.
    Write(io::Error),
}

/// What a finished run did.
#[derive(Debug, Clone, Default)]
pub(crate) struct Summary {
    /// Documents processed (blank lines are not documents).
    pub(crate) documents: u64,
    /// Notes the transform made, in input order, with their line numbers (for example the
    /// properties a lenient decrypt left encrypted).
    pub(crate) notes: Vec<(u64, String)>,
    /// Wall time.
    pub(crate) elapsed: Duration,
}

/// Progress callbacks, called from the writing thread.
pub(crate) trait Progress {
    /// `documents` done so far, `bytes` of input consumed so far.
    fn update(&self, documents: u64, bytes: u64);
}

impl Progress for () {
    fn update(&self, _: u64, _: u64) {}
}

/// Notes with their line numbers.
type Notes = Vec<(u64, String)>;

struct Batch {
    seq: u64,
    /// The lines' text without their newlines, one after the other (wiped when dropped).
    text: Zeroizing<String>,
    /// (line number, where its text ends in `text`); each starts where the previous ends.
    lines: Vec<(u64, usize)>,
    bytes: u64,
}

impl Batch {
    fn new(seq: u64, capacity: usize) -> Self {
        Batch {
            seq,
            text: Zeroizing::new(String::with_capacity(capacity)),
            lines: Vec::with_capacity(BATCH_LINES),
            bytes: 0,
        }
    }
}

struct Done<E> {
    seq: u64,
    result: Result<DoneBatch, PipelineError<E>>,
}

struct DoneBatch {
    /// The transformed lines, which may be decrypted documents: wiped when dropped.
    output: Zeroizing<String>,
    documents: u64,
    bytes: u64,
    notes: Vec<(u64, String)>,
}

/// Transforms every non-blank line of `input` with `transform` on `threads` threads and
/// writes the results, one line each, in input order to `output`.
///
/// `transform(line, out, notes)` appends the transformed document (without newline) to
/// `out` (empty when it is called) and may push notes. The first failure in input order
/// stops the run; lines after it are not written. A UTF-8 byte-order mark at the start is
/// skipped. Output buffers are wiped before they grow or are freed, provided `transform`
/// appends its document in one piece.
pub(crate) fn run<E, F, R, W, P>(
    input: R,
    output: &mut W,
    threads: usize,
    progress: &P,
    transform: F,
) -> Result<Summary, PipelineError<E>>
where
    E: Send,
    F: Fn(&str, &mut String, &mut Vec<String>) -> Result<(), E> + Sync,
    R: BufRead + Send,
    W: Write,
    P: Progress,
{
    let started = Instant::now();
    let threads = threads.max(1);
    let stop = AtomicBool::new(false);
    let (batch_tx, batch_rx) = sync_channel::<Batch>(threads * 2);
    let batch_rx = Arc::new(Mutex::new(batch_rx));
    let (done_tx, done_rx) = sync_channel::<Done<E>>(threads * 2);

    std::thread::scope(|scope| {
        let reader_done = done_tx.clone();
        let stop_ref = &stop;
        scope.spawn(move || read_batches(input, batch_tx, reader_done, stop_ref));
        for _ in 0..threads {
            let rx = Arc::clone(&batch_rx);
            let tx = done_tx.clone();
            let transform = &transform;
            let stop = &stop;
            scope.spawn(move || work(rx, tx, transform, stop));
        }
        // Only the workers hold the batch receiver and only they and the reader hold
        // result senders, so every thread ends once the others are gone.
        drop(batch_rx);
        drop(done_tx);
        let result = write_in_order(done_rx, output, progress);
        // Whatever happened, let the other threads finish.
        stop.store(true, Ordering::Relaxed);
        result
    })
    .map(|(documents, notes)| Summary {
        documents,
        notes,
        elapsed: started.elapsed(),
    })
}

fn read_batches<E, R: BufRead>(
    mut input: R,
    tx: SyncSender<Batch>,
    errors: SyncSender<Done<E>>,
    stop: &AtomicBool,
) {
    let mut seq = 0u64;
    let mut line_no = 0u64;
    // The first capacity of a batch's text: what the previous one took, and a little more.
    let mut capacity = 64 << 10;
    let mut batch = Batch::new(seq, capacity);
    // One line, reused.
    let mut buf = Zeroizing::new(Vec::new());
    loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        buf.clear();
        let n = match read_line(&mut input, &mut buf, MAX_LINE_BYTES) {
            Ok(n) if n == MAX_LINE_BYTES && buf.last() != Some(&b'\n') => {
                let error = io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("line {} is longer than {MAX_LINE_BYTES} bytes", line_no + 1),
                );
                send_then_fail(batch, &tx, &errors, PipelineError::Read(error));
                return;
            }
            Ok(n) => n,
            Err(e) => {
                let _ = errors.send(Done {
                    seq,
                    result: Err(PipelineError::Read(e)),
                });
                return;
            }
        };
        if n == 0 {
            break;
        }
        line_no += 1;
        batch.bytes += n as u64;
        let mut text = &buf[..];
        if line_no == 1 {
            text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
        }
        let text = text.strip_suffix(b"\n").unwrap_or(text);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        let Ok(text) = std::str::from_utf8(text) else {
            send_then_fail(
                batch,
                &tx,
                &errors,
                PipelineError::NotUtf8 { line: line_no },
            );
            return;
        };
        if !text.trim().is_empty() {
            batch.text.reserve_wiping(text.len());
            batch.text.push_str(text);
            batch.lines.push((line_no, batch.text.len()));
        }
        if batch.lines.len() >= BATCH_LINES || batch.text.len() >= BATCH_BYTES {
            seq += 1;
            capacity = batch.text.len() + batch.text.len() / 8;
            let full = std::mem::replace(&mut batch, Batch::new(seq, capacity));
            if tx.send(full).is_err() {
                return;
            }
        }
    }
    let _ = tx.send(batch);
}

/// Appends the next line of `input` (up to and with its newline, or to the end of the
/// input), at most `max` bytes, to `buf`, which is empty; returns its length. `buf` grows
/// only through [`ReserveWiping`]: each `read_until` reads at most its spare capacity.
fn read_line<R: BufRead>(input: &mut R, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    while buf.len() < max {
        if buf.len() == buf.capacity() {
            buf.reserve_wiping(4096);
        }
        let room = (buf.capacity() - buf.len()).min(max - buf.len());
        let n = Read::take(&mut *input, room as u64).read_until(b'\n', buf)?;
        if n == 0 || buf.last() == Some(&b'\n') {
            break;
        }
    }
    Ok(buf.len())
}

/// A [`BufRead`] like [`io::BufReader`] whose buffer is wiped when it is freed: the input
/// may be plaintext.
pub(crate) struct WipingBufReader<R> {
    inner: R,
    buf: Zeroizing<Vec<u8>>,
    /// `buf[pos..filled]` is read from `inner` and not consumed yet.
    pos: usize,
    filled: usize,
}

impl<R: Read> WipingBufReader<R> {
    /// Reads `inner` through a buffer of `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize, inner: R) -> Self {
        WipingBufReader {
            inner,
            buf: Zeroizing::new(vec![0; capacity.max(1)]),
            pos: 0,
            filled: 0,
        }
    }
}

impl<R: Read> Read for WipingBufReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.filled && out.len() >= self.buf.len() {
            return self.inner.read(out);
        }
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read> BufRead for WipingBufReader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.filled {
            self.filled = self.inner.read(&mut self.buf[..])?;
            self.pos = 0;
        }
        Ok(&self.buf[self.pos..self.filled])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.filled);
    }
}
/// Sends the lines read so far, then `error` in the place of the next batch, so that the
/// writer writes everything before the failing line and then reports it.
fn send_then_fail<E>(
    batch: Batch,
    tx: &SyncSender<Batch>,
    errors: &SyncSender<Done<E>>,
    error: PipelineError<E>,
) {
    let seq = batch.seq + 1;
    let _ = tx.send(batch);
    let _ = errors.send(Done {
        seq,
        result: Err(error),
    });
}

fn work<E, F>(
    rx: Arc<Mutex<Receiver<Batch>>>,
    tx: SyncSender<Done<E>>,
    transform: &F,
    stop: &AtomicBool,
) where
    F: Fn(&str, &mut String, &mut Vec<String>) -> Result<(), E>,
{
    let mut notes_buf = Vec::new();
    // One document's output, reused: every byte of its allocation beyond what the current
    // line wrote is zero (each line's output is wiped once copied), so when the transform's
    // one append makes it grow, the allocation it leaves holds no plaintext.
    let mut doc = Zeroizing::new(String::new());
    loop {
        let batch = {
            let Ok(guard) = rx.lock() else { return };
            match guard.recv() {
                Ok(b) => b,
                Err(_) => return,
            }
        };
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let mut out = DoneBatch {
            output: Zeroizing::new(String::with_capacity(batch.text.len() * 2)),
            documents: 0,
            bytes: batch.bytes,
            notes: Vec::new(),
        };
        let mut failed = None;
        let mut start = 0;
        for &(line, end) in &batch.lines {
            let text = batch.text.get(start..end).unwrap_or_default();
            start = end;
            notes_buf.clear();
            let result = transform(text, &mut doc, &mut notes_buf);
            if result.is_ok() {
                // Growing the batch output must not free the documents before unwiped.
                out.output.reserve_wiping(doc.len() + 1);
                out.output.push_str(&doc);
                out.output.push('\n');
            }
            doc.as_mut_str().zeroize();
            doc.clear();
            match result {
                Ok(()) => {
                    out.documents += 1;
                    out.notes.extend(notes_buf.drain(..).map(|n| (line, n)));
                }
                Err(error) => {
                    failed = Some(PipelineError::Line(LineError { line, error }));
                    break;
                }
            }
        }
        let result = match failed {
            None => Ok(out),
            Some(e) => Err(e),
        };
        if tx
            .send(Done {
                seq: batch.seq,
                result,
            })
            .is_err()
        {
            return;
        }
    }
}

fn write_in_order<E, W: Write, P: Progress>(
    rx: Receiver<Done<E>>,
    output: &mut W,
    progress: &P,
) -> Result<(u64, Notes), PipelineError<E>> {
    let mut next = 0u64;
    let mut pending: BTreeMap<u64, Result<DoneBatch, PipelineError<E>>> = BTreeMap::new();
    let mut documents = 0u64;
    let mut bytes = 0u64;
    let mut notes = Vec::new();
    for done in rx {
        pending.insert(done.seq, done.result);
        while let Some(result) = pending.remove(&next) {
            let batch = result?;
            output
                .write_all(batch.output.as_bytes())
                .map_err(PipelineError::Write)?;
            documents += batch.documents;
            bytes += batch.bytes;
            notes.extend(batch.notes);
            progress.update(documents, bytes);
            next += 1;
        }
    }
    // Channels closed: anything still pending sits behind a gap, which only an error
    // leaves; report the earliest error.
    if let Some((_, result)) = pending.into_iter().next() {
        result?;
    }
    output.flush().map_err(PipelineError::Write)?;
    Ok((documents, notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upper(line: &str, out: &mut String, notes: &mut Vec<String>) -> Result<(), String> {
        if line.contains("bad") {
            return Err(format!("bad document: {line}"));
        }
        if line.contains("note") {
            notes.push("noted".into());
        }
        out.push_str(&line.to_uppercase());
        Ok(())
    }

    fn run_str(input: &str, threads: usize) -> (Result<Summary, PipelineError<String>>, String) {
        let mut out = Vec::new();
        let r = run(input.as_bytes(), &mut out, threads, &(), upper);
        (r, String::from_utf8(out).unwrap())
    }

    #[test]
    fn keeps_order_across_threads_and_batches() {
        let input: String = (0..5000).map(|i| format!("doc{i}\n")).collect();
        for threads in [1, 2, 4, 7] {
            let (r, out) = run_str(&input, threads);
            assert_eq!(r.unwrap().documents, 5000);
            assert_eq!(out, input.to_uppercase());
        }
    }

    #[test]
    fn skips_blank_lines_bom_and_crlf() {
        let (r, out) = run_str("\u{feff}a\r\n\n   \nb", 2);
        assert_eq!(r.unwrap().documents, 2);
        assert_eq!(out, "A\nB\n");
    }

    #[test]
    fn first_error_in_input_order_wins_with_its_line_number() {
        let mut input: String = (0..2000).map(|i| format!("doc{i}\n")).collect();
        input.push_str("bad one\n");
        input.push_str(
            &(0..2000)
                .map(|i| format!("more{i}\nbad{i}\n"))
                .collect::<String>(),
        );
        let (r, out) = run_str(&input, 4);
        match r {
            Err(PipelineError::Line(e)) => {
                assert_eq!(e.line, 2001);
                assert_eq!(e.error, "bad document: bad one");
            }
            other => panic!("{other:?}"),
        }
        // Nothing at or after the failing line was written.
        assert!(!out.contains("BAD") && !out.contains("MORE"));
    }

    #[test]
    fn notes_carry_line_numbers() {
        let (r, _) = run_str("a\nnote\n\nnote too\n", 2);
        let s = r.unwrap();
        assert_eq!(
            s.notes,
            vec![(2, "noted".to_owned()), (4, "noted".to_owned())]
        );
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let mut input = b"a\nb\n".to_vec();
        input.extend_from_slice(b"\xff\xfe\n");
        input.extend_from_slice(b"c\n");
        let mut out = Vec::new();
        let r = run(&input[..], &mut out, 2, &(), upper);
        assert!(
            matches!(r, Err(PipelineError::NotUtf8 { line: 3 })),
            "{r:?}"
        );
        assert_eq!(out, b"A\nB\n");
    }

    #[test]
    fn an_endless_line_is_refused_with_its_number() {
        use std::io::BufReader;
        let head = &b"a\nb\n"[..];
        let endless = io::repeat(b'x').take(MAX_LINE_BYTES as u64 + 10);
        let input = BufReader::new(head.chain(endless));
        let mut out = Vec::new();
        let r = run(input, &mut out, 2, &(), upper);
        match r {
            Err(PipelineError::Read(e)) => {
                assert_eq!(
                    e.to_string(),
                    format!("line 3 is longer than {MAX_LINE_BYTES} bytes")
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(out, b"A\nB\n");
    }

    #[test]
    fn empty_input() {
        let (r, out) = run_str("", 2);
        assert_eq!(r.unwrap().documents, 0);
        assert_eq!(out, "");
    }

    #[test]
    fn write_errors_stop_the_run() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let input: String = (0..3000).map(|i| format!("doc{i}\n")).collect();
        let r = run(input.as_bytes(), &mut Broken, 2, &(), upper);
        assert!(matches!(r, Err(PipelineError::Write(_))));
    }

    // The unit tests of `ae` run on an allocator that checks freed memory for a needle
    // while a test has armed it (only the test below does).
    #[global_allocator]
    static ALLOC: test_probes::FreedMemoryProbe = test_probes::FreedMemoryProbe;

    #[test]
    fn worker_output_buffers_are_wiped_before_they_grow_or_are_freed() {
        // Each document's output (the needle first) is far longer than its input line, so
        // the batch output grows past its first capacity many times; after writing, the
        // batch is freed.
        const NEEDLE: &str = "pipeline-output-needle-6e1d";
        let doc = format!("{NEEDLE}{}", "x".repeat(5000));
        let input: String = (0..600).map(|i| format!("{i}\n")).collect();
        for threads in [1, 2] {
            let mut sink = Zeroizing::new(Vec::with_capacity(4 << 20));
            let armed = test_probes::FreedMemoryProbe::arm(NEEDLE.as_bytes());
            let r = run(input.as_bytes(), &mut *sink, threads, &(), |_, out, _| {
                out.push_str(&doc);
                Ok::<(), ()>(())
            });
            assert_eq!(r.unwrap().documents, 600);
            assert_eq!(sink.len(), 600 * (doc.len() + 1));
            drop(sink);
            assert!(armed.checked() > 0);
            assert_eq!(armed.hits(), 0, "{threads} thread(s)");
        }
    }
}
