//! What the checks of one config file know about it and what they found wrong.
//!
//! The parser keeps the span of every key and array item; they are indexed here by the
//! field's dotted path (`origins.api.endpoints[1]`), the same path every error names, so a
//! check made long after parsing still points at the line of the very field at fault, even
//! when the same key appears in several sections.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::{ConfigError, ConfigErrors};

/// The problems found in one file so far, and where its fields are.
pub(super) struct Report<'a> {
    file: &'a Path,
    text: &'a str,
    /// Where each field the file spells out sits in `text`, by dotted path.
    spans: BTreeMap<String, Range<usize>>,
    /// Sections and entries the file gives but serde could not read: their defaults stand
    /// in, and the checks skip them rather than report the stand-ins.
    unread: BTreeSet<String>,
    errors: Vec<ConfigError>,
}

impl<'a> Report<'a> {
    pub(super) fn new(file: &'a Path, text: &'a str) -> Report<'a> {
        Report { file, text, spans: BTreeMap::new(), unread: BTreeSet::new(), errors: Vec::new() }
    }

    /// Indexes the span of every key and array item of the parsed file.
    pub(super) fn index(&mut self, doc: &DeTable<'_>) {
        index_table(&mut self.spans, "", doc);
    }

    pub(super) fn file(&self) -> &Path {
        self.file
    }

    /// The folder relative paths in the file are relative to.
    pub(super) fn base(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new(""))
    }

    /// Makes a path from the file absolute.
    pub(super) fn resolve(&self, path: &mut Option<PathBuf>) {
        if let Some(p) = path {
            *p = self.absolute(p);
        }
    }

    pub(super) fn absolute(&self, path: &Path) -> PathBuf {
        if path.is_absolute() { path.to_owned() } else { self.base().join(path) }
    }

    /// Whether the file spells out this field (or section, or entry).
    pub(super) fn given(&self, path: &str) -> bool {
        self.spans.contains_key(path)
    }

    /// Whether the file gives this field and serde could read it.
    pub(super) fn was_read(&self, path: &str) -> bool {
        self.given(path) && !self.unread.contains(path)
    }

    pub(super) fn mark_unread(&mut self, path: String) {
        self.unread.insert(path);
    }

    /// Whether anything at or under `path` could not be read.
    pub(super) fn has_unread(&self, path: &str) -> bool {
        self.unread.iter().any(|u| under(u, path))
    }

    /// The positions in the file of the items of an array of tables that were read: the
    /// section holds those items, in this order.
    pub(super) fn read_items(&self, array: &str) -> Vec<usize> {
        let item = |i: usize| format!("{array}[{i}]");
        (0..).take_while(|&i| self.given(&item(i))).filter(|&i| !self.unread.contains(&item(i))).collect()
    }

    /// A problem with `field`, on the line of that field or, when the file does not spell
    /// it out, of the nearest section or entry holding it.
    pub(super) fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        let field = field.into();
        let span = self.span_of(&field);
        self.push(field, span, message.into());
    }

    /// A problem with `field` caused by another one, `at`, whose line it is shown on (a file
    /// that is required because `at` is set).
    fn error_at(&mut self, field: impl Into<String>, at: &str, message: impl Into<String>) {
        let span = self.span_of(at);
        self.push(field.into(), span, message.into());
    }

    /// A problem the parser or serde found, where they found it.
    pub(super) fn fault(&mut self, field: String, span: Option<Range<usize>>, message: String) {
        let span = span.or_else(|| self.span_of(&field));
        self.push(field, span, message);
    }

    pub(super) fn into_errors(self) -> ConfigErrors {
        ConfigErrors(self.errors)
    }

    /// `Ok` when nothing was found wrong.
    pub(super) fn finish(self) -> Result<(), ConfigErrors> {
        if self.errors.is_empty() { Ok(()) } else { Err(self.into_errors()) }
    }

    fn push(&mut self, field: String, span: Option<Range<usize>>, message: String) {
        let line = span.map(|s| line_of(self.text, s.start));
        self.errors.push(ConfigError { file: self.file.to_owned(), field, line, message });
    }

    fn span_of(&self, field: &str) -> Option<Range<usize>> {
        let mut path = field;
        loop {
            if let Some(span) = self.spans.get(path) {
                return Some(span.clone());
            }
            path = &path[..path.rfind(['.', '['])?];
        }
    }
}

// === the rules several sections share ===

impl Report<'_> {
    pub(super) fn positive(&mut self, field: &str, value: Duration) {
        if value.is_zero() {
            self.error(field, "must be greater than 0");
        }
    }

    pub(super) fn at_least_one(&mut self, field: &str, value: u64) {
        if value == 0 {
            self.error(field, "must be at least 1");
        }
    }

    pub(super) fn between(&mut self, field: &str, value: f64, lo: f64, hi: f64) {
        if !(value.is_finite() && (lo..=hi).contains(&value)) {
            self.error(field, format!("must be between {lo} and {hi}"));
        }
    }

    pub(super) fn percentage(&mut self, field: &str, value: u32) {
        if value > 100 {
            self.error(field, "must be a percentage (0 to 100)");
        }
    }

    /// Each file named must be given (the field `because` is set) and readable.
    pub(super) fn require_files(&mut self, because: &str, files: &[(&str, &Option<PathBuf>)]) {
        let key = because.rsplit('.').next().unwrap_or(because);
        for (field, path) in files {
            match path {
                None => self.error_at(*field, because, format!("required when `{key}` is set")),
                Some(p) => {
                    if let Err(e) = std::fs::metadata(p) {
                        self.error(*field, format!("{}: {e}", p.display()));
                    }
                }
            }
        }
    }
}

fn index_table(spans: &mut BTreeMap<String, Range<usize>>, parent: &str, table: &DeTable<'_>) {
    for (key, value) in table {
        let path =
            if parent.is_empty() { key.get_ref().to_string() } else { format!("{parent}.{}", key.get_ref()) };
        spans.insert(path.clone(), key.span());
        index_value(spans, &path, value);
    }
}

fn index_value(spans: &mut BTreeMap<String, Range<usize>>, path: &str, value: &Spanned<DeValue<'_>>) {
    match value.get_ref() {
        DeValue::Table(table) => index_table(spans, path, table),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                spans.insert(item_path.clone(), item.span());
                index_value(spans, &item_path, item);
            }
        }
        _ => {}
    }
}

/// Whether `path` is `section` or lies under it.
fn under(path: &str, section: &str) -> bool {
    path.strip_prefix(section).is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
}
