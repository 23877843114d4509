//! Procfiles (`web: command` lines) and formations (`web=2,worker=1`), read as foreman and honcho do.

use std::collections::BTreeMap;

/// Why a Procfile or a formation string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcfileError {
    /// A line that is neither blank, a comment, nor `name: command`.
    #[error("Procfile line {line}: expected `name: command` (name of letters, digits, `_` or `-`), got {text:?}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// The offending line.
        text: String,
    },
    /// The same process type twice.
    #[error(
        "Procfile line {line}: process type `{name}` is already defined on line {first}; keep one"
    )]
    Duplicate {
        /// 1-based line number of the second definition.
        line: usize,
        /// 1-based line number of the first definition.
        first: usize,
        /// The process type.
        name: String,
    },
    /// A formation entry that is not `type=count`.
    #[error("formation entry {entry:?}: expected `type=count` such as `web=2`")]
    BadFormation {
        /// The offending entry.
        entry: String,
    },
}

/// The process types of a Procfile, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Procfile {
    /// `(process type, command)` in the order of the file.
    pub entries: Vec<(String, String)>,
}

impl Procfile {
    /// Parses a Procfile: `name: command` lines; blank lines and `#` comments are skipped.
    pub fn parse(text: &str) -> Result<Self, ProcfileError> {
        let mut entries: Vec<(String, String)> = Vec::new();
        let mut first_line: BTreeMap<String, usize> = BTreeMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let bad = || ProcfileError::BadLine {
                line,
                text: raw.to_owned(),
            };
            let (name, command) = trimmed.split_once(':').ok_or_else(bad)?;
            let name = name.trim();
            let command = command.trim();
            let valid_name = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid_name || command.is_empty() {
                return Err(bad());
            }
            if let Some(&first) = first_line.get(name) {
                return Err(ProcfileError::Duplicate {
                    line,
                    first,
                    name: name.to_owned(),
                });
            }
            first_line.insert(name.to_owned(), line);
            entries.push((name.to_owned(), command.to_owned()));
        }
        Ok(Procfile { entries })
    }

    /// The command of a process type.
    pub fn command(&self, process_type: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(name, _)| name == process_type)
            .map(|(_, cmd)| cmd.as_str())
    }
}

/// Parses a formation such as `web=2,worker=1` (as `heroku local -f` and foreman's `-m`).
pub fn parse_formation(text: &str) -> Result<BTreeMap<String, u32>, ProcfileError> {
    let mut formation = BTreeMap::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = || ProcfileError::BadFormation {
            entry: entry.to_owned(),
        };
        let (name, count) = entry.split_once('=').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let name = name.trim();
        if name.is_empty() {
            return Err(bad());
        }
        formation.insert(name.to_owned(), count);
    }
    Ok(formation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_foreman() {
        let text = "# the shop\nweb: python app.py --port $PORT\n\nworker:python worker.py\n  release: ./migrate.sh  \n";
        let procfile = Procfile::parse(text).unwrap();
        assert_eq!(
            procfile.entries,
            vec![
                ("web".into(), "python app.py --port $PORT".into()),
                ("worker".into(), "python worker.py".into()),
                ("release".into(), "./migrate.sh".into()),
            ]
        );
        assert_eq!(procfile.command("worker"), Some("python worker.py"));
        // A colon inside the command stays in the command.
        let p = Procfile::parse("web: sh -c 'echo a:b'").unwrap();
        assert_eq!(p.command("web"), Some("sh -c 'echo a:b'"));
    }

    #[test]
    fn refuses_bad_lines_with_their_number() {
        let cases = [
            ("web: ok\nnot a process line\n", "line 2"),
            ("web: ok\nweb: again\n", "already defined on line 1"),
            ("web:\n", "line 1"),
            ("we b: x\n", "line 1"),
        ];
        for (text, want) in cases {
            let err = Procfile::parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn formation_strings() {
        let f = parse_formation("web=2, worker=1").unwrap();
        assert_eq!(f.get("web"), Some(&2));
        assert_eq!(f.get("worker"), Some(&1));
        assert!(parse_formation("").unwrap().is_empty());
        for bad in ["web", "web=x", "=2", "web=-1"] {
            assert!(parse_formation(bad).is_err(), "{bad}");
        }
    }
}
