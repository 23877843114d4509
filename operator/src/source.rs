//! The manifest directory: every ObservabilityConfig in `*.yaml` / `*.yml` files,
//! with the Procfile that sits beside them.

use std::path::{Path, PathBuf};

use dynoscope_crds::manifest::{parse_documents, ManifestError};
use dynoscope_crds::procfile::{Procfile, ProcfileError};
use dynoscope_crds::ObservabilityConfig;

/// One manifest file as last read.
#[derive(Debug, Clone)]
pub struct ManifestFile {
    /// The file.
    pub path: PathBuf,
    /// Its resources, or why it could not be read.
    pub parsed: Result<Vec<ObservabilityConfig>, ManifestError>,
}

/// Errors reading the directory itself.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The directory is missing or unreadable.
    #[error(
        "cannot read manifest directory {path}: {source}; create it or pass another --manifests"
    )]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A Procfile that does not parse.
    #[error("{path}: {source}")]
    Procfile {
        /// The Procfile.
        path: PathBuf,
        /// What is wrong.
        source: ProcfileError,
    },
}

/// Whether a path is a manifest file (hidden and temporary files are not).
pub fn is_manifest(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.'));
    !hidden
        && path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml")
}

/// Reads a manifest file, or every manifest file of a directory.
pub fn read(path: &Path) -> Result<Vec<ManifestFile>, SourceError> {
    if path.is_file() {
        Ok(vec![read_file(path)])
    } else {
        read_dir(path)
    }
}

/// The directory of a manifest path: the path itself, or a file's parent.
pub fn dir_of(path: &Path) -> &Path {
    if path.is_file() {
        match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        }
    } else {
        path
    }
}

/// Reads every manifest file of `dir`, sorted by name.
pub fn read_dir(dir: &Path) -> Result<Vec<ManifestFile>, SourceError> {
    let entries = std::fs::read_dir(dir).map_err(|source| SourceError::Dir {
        path: dir.to_owned(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && is_manifest(p))
        .collect();
    paths.sort();
    Ok(paths.into_iter().map(|path| read_file(&path)).collect())
}

/// Reads one manifest file.
pub fn read_file(path: &Path) -> ManifestFile {
    let label = path.display().to_string();
    let parsed = match std::fs::read_to_string(path) {
        Ok(text) => parse_documents(&text, &label),
        Err(err) => Err(ManifestError::Syntax {
            file: label,
            message: err.to_string(),
        }),
    };
    ManifestFile {
        path: path.to_owned(),
        parsed,
    }
}

/// Reads a Procfile: `explicit` if given, else `Procfile` in `dir` if it exists.
pub fn read_procfile(explicit: Option<&Path>, dir: &Path) -> Result<Option<Procfile>, SourceError> {
    let path = match explicit {
        Some(path) => path.to_owned(),
        None => {
            let beside = dir.join("Procfile");
            if !beside.is_file() {
                return Ok(None);
            }
            beside
        }
    };
    let text = std::fs::read_to_string(&path).map_err(|source| SourceError::Dir {
        path: path.clone(),
        source,
    })?;
    Procfile::parse(&text)
        .map(Some)
        .map_err(|source| SourceError::Procfile { path, source })
}

/// `<namespace>/<name>` of a resource.
pub fn key(config: &ObservabilityConfig) -> String {
    format!(
        "{}/{}",
        config.metadata.namespace.as_deref().unwrap_or("default"),
        config.metadata.name.as_deref().unwrap_or_default()
    )
}
