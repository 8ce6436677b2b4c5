//! What a refused config file gets back: every problem, each naming the file, the field and,
//! where the parser saw it, the line.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {}{message}{}", file.display(), if field.is_empty() { String::new() } else { format!("{field}: ") }, line.map(|l| format!(" (line {l})")).unwrap_or_default())]
pub struct ConfigError {
    pub(crate) file: PathBuf,
    /// Dotted path of the field at fault (`listen.public`, `routes[1].origin`); empty when
    /// the whole file is at fault.
    pub(crate) field: String,
    /// 1-based line, when the parser knows it.
    pub(crate) line: Option<usize>,
    pub(crate) message: String,
}

/// Every problem found in one config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The file as a whole is at fault (it cannot be read, say).
    pub(super) fn whole_file(file: &Path, message: String) -> ConfigErrors {
        ConfigErrors(vec![ConfigError { file: file.to_owned(), field: String::new(), line: None, message }])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
