//! TOML text → the [`Config`] serde reads from it, with every mistake serde finds reported.
//!
//! serde stops at its first error and one run should report them all, so each top-level
//! section is read on its own, as a document of one key (every field of `Config` has a
//! default, so nothing else is missed). An unknown field is reported and dropped and the
//! section read again, so that a stray key does not hide a bad value beside it. A table of
//! tables (`[origins.NAME]`) or an array of tables (`[[routes]]`) that fails is read again
//! entry by entry, so that one bad entry does not hide the others. What cannot be read is
//! left out, its default standing in, and marked unread in the [`Report`] so the checks
//! skip it. Last, the sections read are read together into one `Config`.

use std::ops::Range;
use std::path::Path;

use serde_path_to_error::Segment;
use serde_spanned::Spanned;
use toml::de::{DeArray, DeString, DeTable, DeValue, ValueDeserializer};

use super::Config;
use super::error::ConfigErrors;
use super::report::Report;

/// Rounds spent on one section (each drops one unknown field) before giving up on it.
const MAX_ROUNDS: usize = 64;

type Key<'i> = Spanned<DeString<'i>>;
type Value<'i> = Spanned<DeValue<'i>>;

/// A mistake serde found: the field's dotted path, where the parser saw it, and why.
struct Fault {
    field: String,
    span: Option<Range<usize>>,
    message: String,
}

/// Parses `text` and reads it into a `Config`, the report carrying what was wrong. Only a
/// file that is not TOML at all is refused here.
pub(super) fn read<'a>(file: &'a Path, text: &'a str) -> Result<(Config, Report<'a>), ConfigErrors> {
    let mut report = Report::new(file, text);
    let doc = match DeTable::parse(text) {
        Ok(doc) => doc.into_inner(),
        Err(e) => {
            report.fault(String::new(), e.span(), e.message().trim().to_owned());
            return Err(report.into_errors());
        }
    };
    report.index(&doc);
    let mut sections = DeTable::new();
    for (key, value) in doc {
        if let Some(value) = read_section(&mut report, &key, value) {
            sections.insert(key, value);
        }
    }
    match assemble(&mut report, sections) {
        Some(config) => Ok((config, report)),
        None => Err(report.into_errors()),
    }
}

/// Reads one top-level section: the value as read (unknown fields dropped), or `None`.
fn read_section<'i>(report: &mut Report<'_>, key: &Key<'i>, value: Value<'i>) -> Option<Value<'i>> {
    let (whole, faults) = attempt(key, value.clone());
    if whole.is_none()
        && let Some(entries) = by_entry(key, &value)
    {
        record(report, entries.faults);
        for entry in entries.unread {
            report.mark_unread(entry);
        }
        return Some(entries.read);
    }
    record(report, faults);
    if whole.is_none() {
        report.mark_unread(key.get_ref().to_string());
    }
    whole
}

/// Reads `key = value` as a document of its own, dropping each unknown field serde meets:
/// the value as read, or `None` when a mistake remains; and every mistake met.
fn attempt<'i>(key: &Key<'i>, mut value: Value<'i>) -> (Option<Value<'i>>, Vec<Fault>) {
    let mut faults = Vec::new();
    for _ in 0..MAX_ROUNDS {
        let (path, fault) = match deserialize(DeTable::from_iter([(key.clone(), value.clone())])) {
            Ok(_) => return (Some(value), faults),
            Err(e) => e,
        };
        let unknown = fault.message.starts_with("unknown field");
        faults.push(fault);
        if !(unknown && drop_field(&mut value, &path)) {
            break;
        }
    }
    (None, faults)
}

/// What reading a collection entry by entry kept and found.
struct Entries<'i> {
    read: Value<'i>,
    faults: Vec<Fault>,
    /// Paths of the entries left out.
    unread: Vec<String>,
}

/// Reads a table of tables or an array of tables entry by entry. `None` when the value is
/// not shaped so, when no entry fails alone, or when an entry alone is refused at the
/// section itself (it is one struct whose fields are tables, not a collection): then the
/// section failed as a whole.
fn by_entry<'i>(key: &Key<'i>, value: &Value<'i>) -> Option<Entries<'i>> {
    let section = key.get_ref().as_ref();
    let entries = match value.get_ref() {
        DeValue::Table(table) if is_table_of_tables(table) => table_by_entry(key, value.span(), table),
        DeValue::Array(items) => array_by_item(key, value.span(), items),
        _ => return None,
    };
    let fits = !entries.unread.is_empty() && entries.faults.iter().all(|f| f.field != section);
    fits.then_some(entries)
}

fn table_by_entry<'i>(key: &Key<'i>, span: Range<usize>, table: &DeTable<'i>) -> Entries<'i> {
    let mut kept = DeTable::new();
    let (mut faults, mut unread) = (Vec::new(), Vec::new());
    for (name, entry) in table {
        let one = DeTable::from_iter([(name.clone(), entry.clone())]);
        let (read, found) = attempt(key, Spanned::new(span.clone(), DeValue::Table(one)));
        faults.extend(found);
        match read.map(Spanned::into_inner) {
            Some(DeValue::Table(read)) => kept.extend(read),
            _ => unread.push(format!("{}.{}", key.get_ref(), name.get_ref())),
        }
    }
    Entries { read: Spanned::new(span, DeValue::Table(kept)), faults, unread }
}

/// Each item is read as the only one, so its mistakes are renamed from `[0]` to its place.
fn array_by_item<'i>(key: &Key<'i>, span: Range<usize>, items: &[Value<'i>]) -> Entries<'i> {
    let mut kept = Vec::new();
    let (mut faults, mut unread) = (Vec::new(), Vec::new());
    let first = format!("{}[0]", key.get_ref());
    for (i, item) in items.iter().enumerate() {
        let (read, found) =
            attempt(key, Spanned::new(span.clone(), DeValue::Array(DeArray::from_iter([item.clone()]))));
        let this = format!("{}[{i}]", key.get_ref());
        faults.extend(found.into_iter().map(|f| Fault { field: f.field.replacen(&first, &this, 1), ..f }));
        match read.map(Spanned::into_inner) {
            Some(DeValue::Array(read)) => kept.extend(read),
            _ => unread.push(this),
        }
    }
    Entries { read: Spanned::new(span, DeValue::Array(DeArray::from_iter(kept))), faults, unread }
}

fn is_table_of_tables(table: &DeTable<'_>) -> bool {
    !table.is_empty() && table.values().all(|v| matches!(v.get_ref(), DeValue::Table(_)))
}

/// Reads the sections read alone into one `Config`. That fails only where leaving out an
/// unread entry broke its section (a struct read entry by entry); then the section is left
/// out as a whole. `None`, with the reason reported, when even that does not help.
fn assemble(report: &mut Report<'_>, mut read: DeTable<'_>) -> Option<Config> {
    loop {
        let (path, fault) = match deserialize(read.clone()) {
            Ok(config) => return Some(config),
            Err(e) => e,
        };
        let section = match path.iter().next() {
            Some(Segment::Map { key }) => key.clone(),
            _ => String::new(),
        };
        if !report.has_unread(&section) {
            // Not the shadow of a mistake already reported: never drop it silently.
            report.fault(fault.field, fault.span, fault.message);
        }
        read.remove(section.as_str())?;
        report.mark_unread(section);
    }
}

/// Reads a document as a `Config`; on failure, the path serde was at and what it found.
fn deserialize(doc: DeTable<'_>) -> Result<Config, (serde_path_to_error::Path, Fault)> {
    let de = ValueDeserializer::from(Spanned::new(0..0, DeValue::Table(doc)));
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().clone();
        let source = err.into_inner();
        let field = Some(path.to_string()).filter(|p| p != ".").unwrap_or_default();
        (path, Fault { field, span: source.span(), message: source.message().trim().to_owned() })
    })
}

/// Removes the field `path` names (its first segment being the section) from `value`.
fn drop_field(value: &mut Value<'_>, path: &serde_path_to_error::Path) -> bool {
    let segments: Vec<&Segment> = path.iter().skip(1).collect();
    let Some((Segment::Map { key: name }, parents)) = segments.split_last() else {
        return false;
    };
    let mut at = value;
    for segment in parents {
        let next = match (segment, at.get_mut()) {
            (Segment::Map { key }, DeValue::Table(table)) => table.get_mut(key.as_str()),
            (Segment::Seq { index }, DeValue::Array(items)) => items.get_mut(*index),
            _ => None,
        };
        let Some(next) = next else { return false };
        at = next;
    }
    match at.get_mut() {
        DeValue::Table(table) => table.remove(name.as_str()).is_some(),
        _ => false,
    }
}

fn record(report: &mut Report<'_>, faults: Vec<Fault>) {
    for f in faults {
        report.fault(f.field, f.span, f.message);
    }
}
