//! Writing to stdout and stderr without panicking: `println!` panics when the reader has gone
//! (`opsconsole logs | head`), and `eprintln!` when stderr is a pipe nobody reads any more,
//! which must not stop a principal, an agent or the watchdog.

/// `println!` for a command's output: when the reader has gone (`opsconsole logs | head`)
/// the command ends quietly with success instead of panicking; another write error ends it
/// with a message.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::out::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprintln!` that never panics: a long-running part (the principal, an agent, the
/// watchdog) whose stderr reader went away must go on with its work.
#[macro_export]
macro_rules! tell {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `print!` to match [`say!`].
#[macro_export]
macro_rules! say_raw {
    ($($arg:tt)*) => {
        $crate::out::write_out(format_args!($($arg)*))
    };
}

/// Writes command output (see [`say!`]).
pub fn write_out(text: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(text).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write the output: {e}");
        std::process::exit(i32::from(crate::exit::EXIT_FAILED));
    }
}
