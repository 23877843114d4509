//! Foreman-style output: every line prefixed `HH:MM:SS web.1 | `, one colour
//! per process type when stdout is a terminal.

use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::sync::{Arc, Mutex};

const COLOURS: &[&str] = &["36", "33", "32", "35", "34", "31"];

/// The shared, line-atomic writer of `up`.
#[derive(Debug, Clone)]
pub struct Output {
    width: usize,
    colour: bool,
    lock: Arc<Mutex<()>>,
    types: Arc<Mutex<Vec<String>>>,
}

impl Output {
    /// `width`: the prefix column width (time and name).
    pub fn new(width: usize) -> Self {
        Output {
            width,
            colour: std::io::stdout().is_terminal(),
            lock: Arc::new(Mutex::new(())),
            types: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Prints one line from `source` (`web.1`, `heroku[web.1]`, `dynoscope`).
    pub fn line(&self, source: &str, text: &str) {
        let time = jiff::Zoned::now().strftime("%H:%M:%S").to_string();
        let prefix = format!("{time} {source}");
        let prefix = format!("{prefix:<width$} |", width = self.width);
        let _guard = self.lock.lock();
        let mut out = std::io::stdout().lock();
        let _ = if self.colour {
            writeln!(
                out,
                "\x1b[{}m{prefix}\x1b[0m {text}",
                self.colour_of(source)
            )
        } else {
            writeln!(out, "{prefix} {text}")
        };
        let _ = out.flush();
    }

    /// Prints a message of `up` itself or of the dyno manager.
    pub fn system(&self, source: &str, text: &str) {
        self.line(source, text);
    }

    /// Prints every line a dyno writes, on threads of their own.
    pub fn follow(
        &self,
        dyno: &str,
        stdout: Option<impl Read + Send + 'static>,
        stderr: Option<impl Read + Send + 'static>,
    ) {
        if let Some(stream) = stdout {
            self.spawn_reader(dyno, stream);
        }
        if let Some(stream) = stderr {
            self.spawn_reader(dyno, stream);
        }
    }

    fn spawn_reader(&self, dyno: &str, stream: impl Read + Send + 'static) {
        let output = self.clone();
        let dyno = dyno.to_owned();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line);
                        output.line(&dyno, text.trim_end_matches(['\n', '\r']));
                    }
                }
            }
        });
    }

    fn colour_of(&self, source: &str) -> &'static str {
        let name = source.trim_start_matches("heroku[").trim_end_matches(']');
        let kind = name.split('.').next().unwrap_or(name).to_owned();
        let Ok(mut types) = self.types.lock() else {
            return COLOURS[0];
        };
        let index = types.iter().position(|t| *t == kind).unwrap_or_else(|| {
            types.push(kind);
            types.len() - 1
        });
        COLOURS[index % COLOURS.len()]
    }
}
