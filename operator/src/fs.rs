//! Atomic file writes: readers (sidecars, watchers) never see half a file.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` through a temporary file in the same directory
/// and a rename, with permissions `mode`. Parent directories are created.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Removes the temporary files that a writer killed mid-write (`kill -9`, a
/// power cut) left in `dir`: `.<name>.tmp-<pid>` whose `<pid>` is not a live
/// process, or is this one (a previous life of a restarted container).
/// Returns the files removed; a directory that cannot be listed has none.
pub fn remove_stale_temps(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return removed;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temp_owner) else {
            continue;
        };
        let alive = pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists();
        if !alive && std::fs::remove_file(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed
}

/// The writer's pid in a temporary file's name as [`write_atomic`] makes it.
fn temp_owner(name: &str) -> Option<u32> {
    let (stem, pid) = name.strip_prefix('.')?.rsplit_once(".tmp-")?;
    if stem.is_empty() {
        return None;
    }
    pid.parse().ok()
}

/// Writes like [`write_atomic`] unless the file already holds exactly `bytes`,
/// so that watchers downstream see no event. Returns whether it wrote.
pub fn write_if_changed(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<bool> {
    match std::fs::read(path) {
        Ok(existing) if existing == bytes => Ok(false),
        _ => write_atomic(path, bytes, mode).map(|()| true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_temp_files_of_dead_writers_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let live_other = std::os::unix::process::parent_id();
        let files = [
            (".web.1.yaml.tmp-999999999".to_owned(), true), // no such process
            (format!(".web.2.yaml.tmp-{}", std::process::id()), true), // ours, from a past life
            (format!(".web.3.yaml.tmp-{live_other}"), false), // a live writer's
            ("web.1.yaml".to_owned(), false),
            (".tmp-12".to_owned(), false),
            (".status.yaml.tmp-x".to_owned(), false),
        ];
        for (name, _) in &files {
            std::fs::write(dir.path().join(name), b"half").unwrap();
        }
        let mut removed = remove_stale_temps(dir.path());
        removed.sort();
        let mut want: Vec<PathBuf> = files
            .iter()
            .filter(|(_, stale)| *stale)
            .map(|(name, _)| dir.path().join(name))
            .collect();
        want.sort();
        assert_eq!(removed, want);
        for (name, stale) in &files {
            assert_eq!(dir.path().join(name).exists(), !stale, "{name}");
        }
    }

    #[test]
    fn writes_atomically_with_mode_and_skips_identical_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/web.1.yaml");
        assert!(write_if_changed(&path, b"one", 0o600).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let before = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert!(!write_if_changed(&path, b"one", 0o600).unwrap());
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            before
        );
        assert!(write_if_changed(&path, b"two", 0o600).unwrap());
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
}
