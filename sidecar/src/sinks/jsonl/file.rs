//! The jsonl sink's file: opened with `O_APPEND`, reopened when renamed or
//! deleted under it, rotated by size. Only the writer thread touches it.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A stable name of an I/O error's kind, for the counters.
pub(super) fn error_kind(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NotFound => "not_found",
        ErrorKind::PermissionDenied => "permission_denied",
        ErrorKind::StorageFull => "storage_full",
        ErrorKind::ReadOnlyFilesystem => "read_only_filesystem",
        ErrorKind::FileTooLarge => "file_too_large",
        ErrorKind::IsADirectory => "is_a_directory",
        ErrorKind::NotADirectory => "not_a_directory",
        ErrorKind::WriteZero => "write_zero",
        ErrorKind::InvalidInput => "invalid_input",
        _ => "other",
    }
}

/// The writer's side of the file: the open file, reopened and rotated as needed.
#[derive(Debug)]
pub(super) struct Output {
    pub(super) path: PathBuf,
    /// Opened with `O_APPEND`; `None` until opened, and after a failure.
    pub(super) file: Option<File>,
    /// Rotate before the file would pass this size.
    pub(super) max_bytes: u64,
    /// Rotated files kept: `<path>.1` … `<path>.<max_files>`.
    pub(super) max_files: u32,
}

/// What failed (`open`, `rotate`, `write`…) and how.
pub(super) type OutputError = (&'static str, std::io::Error);

impl Output {
    /// The open file, (re)opened when `path` does not name it any more.
    pub(super) fn current(&mut self) -> Result<&mut File, OutputError> {
        if let Some(file) = &self.file {
            let same = match (std::fs::metadata(&self.path), file.metadata()) {
                (Ok(named), Ok(open)) => named.dev() == open.dev() && named.ino() == open.ino(),
                (Err(err), _) if err.kind() == ErrorKind::NotFound => false,
                (Err(err), _) | (_, Err(err)) => return Err(("stat", err)),
            };
            if !same {
                self.file = None;
            }
        }
        match &mut self.file {
            Some(file) => Ok(file),
            none => {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
                    .map_err(|err| ("open", err))?;
                Ok(none.insert(file))
            }
        }
    }

    /// Appends `bytes` (whole lines) from `*done` on, advancing `*done`; a
    /// batch not yet begun that would take the file past `max_bytes` goes to
    /// a fresh file. On error the file is closed, to be reopened on the next try.
    pub(super) fn append(&mut self, bytes: &[u8], done: &mut usize) -> Result<(), OutputError> {
        let result = self.try_append(bytes, done);
        if result.is_err() {
            self.file = None;
        }
        result
    }

    fn try_append(&mut self, bytes: &[u8], done: &mut usize) -> Result<(), OutputError> {
        if *done == 0 {
            let size = self
                .current()?
                .metadata()
                .map_err(|err| ("stat", err))?
                .len();
            if size > 0 && size + bytes.len() as u64 > self.max_bytes {
                self.rotate().map_err(|err| ("rotate", err))?;
            }
        }
        let file = self.current()?;
        while *done < bytes.len() {
            match file.write(&bytes[*done..]) {
                Ok(0) => return Err(("write", ErrorKind::WriteZero.into())),
                Ok(n) => *done += n,
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(err) => return Err(("write", err)),
            }
        }
        Ok(())
    }

    /// `path.N` is removed, `path.i` becomes `path.i+1`, `path` becomes `path.1`.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        let ignore_missing = |result: std::io::Result<()>| match result {
            Err(err) if err.kind() != ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        };
        ignore_missing(std::fs::remove_file(rotated(&self.path, self.max_files)))?;
        for i in (1..self.max_files).rev() {
            ignore_missing(std::fs::rename(
                rotated(&self.path, i),
                rotated(&self.path, i + 1),
            ))?;
        }
        // Missing when another dyno sharing the file rotated it just now.
        ignore_missing(std::fs::rename(&self.path, rotated(&self.path, 1)))
    }
}

/// `path.n`, the `n`th newest rotated file.
pub(super) fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}
