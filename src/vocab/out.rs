//! A command's output to stdout and stderr that never panics when the reader has gone
//! (`flowgate status --json | head -c1`). std's `println!` panics on a broken pipe; these
//! drop the rest of that stream's output instead, so the command finishes its work and
//! exits with its own code. Use the macros: [`outln!`](crate::outln), [`out!`](crate::out),
//! [`errln!`](crate::errln), [`err!`](crate::err).

use std::fmt::Arguments;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write to stdout failed: its reader is gone, the rest is dropped.
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);
/// The same for stderr.
static STDERR_GONE: AtomicBool = AtomicBool::new(false);

/// Writes to stdout (flushed: a prompt without a newline shows at once).
pub fn stdout(args: Arguments<'_>) {
    write_to(&mut std::io::stdout().lock(), &STDOUT_GONE, args);
}

/// Writes to stderr.
pub fn stderr(args: Arguments<'_>) {
    write_to(&mut std::io::stderr().lock(), &STDERR_GONE, args);
}

/// Whether stdout's reader has gone (a long-running command may stop printing).
pub fn stdout_gone() -> bool {
    STDOUT_GONE.load(Ordering::Relaxed)
}

fn write_to(w: &mut impl Write, gone: &AtomicBool, args: Arguments<'_>) {
    if gone.load(Ordering::Relaxed) {
        return;
    }
    if w.write_fmt(args).and_then(|()| w.flush()).is_err() {
        gone.store(true, Ordering::Relaxed);
    }
}

/// `println!` that never panics: see [`crate::out`].
#[macro_export]
macro_rules! outln {
    () => { $crate::out::stdout(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::out::stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` that never panics.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::out::stdout(format_args!($($arg)*)) };
}

/// `eprintln!` that never panics.
#[macro_export]
macro_rules! errln {
    () => { $crate::out::stderr(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::out::stderr(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `eprint!` that never panics.
#[macro_export]
macro_rules! err {
    ($($arg:tt)*) => { $crate::out::stderr(format_args!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose reader has gone.
    struct Closed;
    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_reader_marks_the_stream_gone_and_later_writes_are_dropped() {
        let gone = AtomicBool::new(false);
        write_to(&mut Closed, &gone, format_args!("first\n"));
        assert!(gone.load(Ordering::Relaxed));
        let mut kept = Vec::new();
        write_to(&mut kept, &gone, format_args!("second\n"));
        assert!(kept.is_empty(), "nothing written once the reader has gone");
    }

    #[test]
    fn an_open_reader_gets_every_write() {
        let gone = AtomicBool::new(false);
        let mut kept = Vec::new();
        write_to(&mut kept, &gone, format_args!("a {}\n", 1));
        write_to(&mut kept, &gone, format_args!("b"));
        assert_eq!(kept, b"a 1\nb");
        assert!(!gone.load(Ordering::Relaxed));
    }
}
