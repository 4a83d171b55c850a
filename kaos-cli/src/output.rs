//! The command's output on stdout. A reader that stops reading (`kaos … | head`) closes the
//! pipe: the rest of the output is dropped quietly and the command still finishes (a turn
//! still commits, a lease is still released), where `println!` would panic. Any other write
//! error (a full disk under `> file`) is reported when the command ends, and fails it.

use std::fmt;
use std::io::{self, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once stdout's reader has gone: nothing more is written.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// The first write error that was not a closed pipe.
static FAILED: Mutex<Option<String>> = Mutex::new(None);

/// `println!` for the command's output (see the module docs).
macro_rules! outln {
    () => {
        $crate::output::print(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::output::print(format_args!($($arg)*), true)
    };
}

/// The process's stdout, where a closed pipe swallows the write instead of failing it.
pub(crate) struct Stdout;

/// The command's stdout (see [`Stdout`]).
pub(crate) fn stdout() -> Stdout {
    Stdout
}

impl Stdout {
    fn guard<T>(result: io::Result<T>, closed: T) -> io::Result<T> {
        match result {
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {
                CLOSED.store(true, Ordering::Relaxed);
                Ok(closed)
            }
            other => other,
        }
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if CLOSED.load(Ordering::Relaxed) {
            return Ok(buf.len());
        }
        Self::guard(io::stdout().lock().write(buf), buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if CLOSED.load(Ordering::Relaxed) {
            return Ok(());
        }
        Self::guard(io::stdout().lock().flush(), ())
    }
}

/// Writes formatted output (and a newline); a write error other than a closed pipe is kept
/// for [`failure`].
pub(crate) fn print(args: fmt::Arguments<'_>, newline: bool) {
    let mut out = Stdout;
    let result = out.write_fmt(args).and_then(|()| if newline { out.write_all(b"\n") } else { Ok(()) });
    if let Err(error) = result {
        let mut failed = FAILED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        failed.get_or_insert_with(|| error.to_string());
    }
}

/// The first error writing the command's output, if any (after flushing what is buffered).
pub(crate) fn failure() -> Option<String> {
    if let Err(error) = Stdout.flush() {
        return Some(error.to_string());
    }
    FAILED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
}
