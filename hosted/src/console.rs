//! What the process writes to its terminal: log lines that all name the role, and plain
//! lines on stdout, where a closed pipe ends the process quietly.
//!
//! Every log line, whichever crate or task it comes from (the SOCKS5 library logs through
//! `log`, captured by `tracing`), reads `TIME LEVEL ROLE: message`, so the interleaved
//! output of a supervisor's children stays readable. The role starts as the subcommand's
//! name and becomes the node's id once its key file is loaded ([`set_role`]).
//!
//! Rust ignores SIGPIPE, so writing to a pipe whose reader went away (`dissent client 2>&1
//! | head -3`) fails with `EPIPE`; `println!` and `eprintln!` then panic. Here such a write
//! ends the process the way a classic Unix tool ends: killed by SIGPIPE, without a word
//! ([`signals::end_on_closed_pipe`]).

use std::io::{self, Write};
use std::sync::RwLock;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::platform::signals;

/// The log target of the SOCKS5 library.
const SOCKS5_LIBRARY: &str = "fast_socks5";

/// The name printed on every log line.
static ROLE: RwLock<String> = RwLock::new(String::new());

/// Sets the name printed on every log line from now on (`relay`, `client-3`, ...).
pub fn set_role(role: &str) {
    let mut current = ROLE.write().unwrap_or_else(|e| e.into_inner());
    current.clear();
    current.push_str(role);
}

/// Installs the global `tracing` subscriber: `RUST_LOG` (default `info`), role-prefixed
/// lines on stderr, colours only on a terminal.
///
/// The SOCKS5 library's debug lines name destinations, which an exit should not keep: it
/// logs at `info` at most unless `RUST_LOG` names it (`fast_socks5=debug`).
pub fn init_logging(role: &str) {
    set_role(role);
    let asked = std::env::var("RUST_LOG").unwrap_or_default();
    let default = || tracing_subscriber::EnvFilter::new("info");
    let mut filter = match asked.trim() {
        "" => default(),
        directives => {
            tracing_subscriber::EnvFilter::try_new(directives).unwrap_or_else(|_| default())
        }
    };
    if !asked.contains(SOCKS5_LIBRARY) {
        if let Ok(cap) = format!("{SOCKS5_LIBRARY}=info").parse() {
            filter = filter.add_directive(cap);
        }
    }
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(QuietStderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&io::stderr()))
        .event_format(RoleFormat)
        // Its own report of a failed write would go to the same stderr, with a panic.
        .log_internal_errors(false);
    tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .init();
}

/// Prints one line on stdout; a closed stdout ends the process quietly.
pub fn say(line: std::fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    let written = out
        .write_fmt(format_args!("{line}\n"))
        .and_then(|()| out.flush());
    if let Err(e) = written {
        if e.kind() == io::ErrorKind::BrokenPipe {
            signals::end_on_closed_pipe();
        }
    }
}

/// `n` and `noun`, the noun in the plural unless `n` is one: `count(1, "client")` is
/// "1 client", `count(3, "client")` "3 clients".
pub fn count(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `word` as one shell word: unchanged when plain, else in single quotes, so a printed
/// command pastes as it is (paths with spaces or quotes included).
pub fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+,:@%=".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// `words` as one shell command line (see [`shell_word`]).
pub fn shell_line<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|w| shell_word(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Prints one line on stderr; a closed stderr ends the process quietly.
pub fn complain(line: std::fmt::Arguments<'_>) {
    let mut err = io::stderr().lock();
    if let Err(e) = err.write_fmt(format_args!("{line}\n")) {
        if e.kind() == io::ErrorKind::BrokenPipe {
            signals::end_on_closed_pipe();
        }
    }
}

/// Stderr for the log, ending the process quietly when the reader is gone.
struct QuietStderr;

/// One log line's writer.
struct QuietStderrWriter;

impl Write for QuietStderrWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match io::stderr().write(buf) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => signals::end_on_closed_pipe(),
            other => other,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for QuietStderr {
    type Writer = QuietStderrWriter;

    fn make_writer(&'a self) -> Self::Writer {
        QuietStderrWriter
    }
}

/// `TIME LEVEL ROLE: span{fields}: message fields`.
struct RoleFormat;

impl<S, N> FormatEvent<S, N> for RoleFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        SystemTime.format_time(&mut writer)?;
        let level = *event.metadata().level();
        if writer.has_ansi_escapes() {
            let colour = match level {
                Level::ERROR => "31",
                Level::WARN => "33",
                Level::INFO => "32",
                Level::DEBUG => "34",
                Level::TRACE => "35",
            };
            write!(writer, " \x1b[{colour}m{level:>5}\x1b[0m ")?;
        } else {
            write!(writer, " {level:>5} ")?;
        }
        {
            let role = ROLE.read().unwrap_or_else(|e| e.into_inner());
            write!(writer, "{role}: ")?;
        }
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                writer.write_str(span.name())?;
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>() {
                    if !fields.is_empty() {
                        write!(writer, "{{{fields}}}")?;
                    }
                }
                writer.write_str(": ")?;
            }
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_right_in_the_singular() {
        assert_eq!(count(1u32, "client"), "1 client");
        assert_eq!(count(0u32, "client"), "0 clients");
        assert_eq!(count(16u16, "trustee"), "16 trustees");
    }

    #[test]
    fn shell_words_quote_what_a_shell_would_split() {
        assert_eq!(shell_word("/tmp/a b/x.json"), "'/tmp/a b/x.json'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word("/tmp/dc/relay.json"), "/tmp/dc/relay.json");
        assert_eq!(shell_word(""), "''");
        assert_eq!(shell_word("$HOME"), "'$HOME'");
        assert_eq!(
            shell_line(&["dissent", "client", "/tmp/my dc"]),
            "dissent client '/tmp/my dc'"
        );
    }
}
