//! JSON text → [`Table`]: serde with unknown fields refused, and every error named by
//! the JSON path at fault, so that a refused push says which field to fix.

use super::{Table, TableError};

impl Table {
    /// Parses JSON, naming the JSON path of any type error or unknown field.
    pub fn parse(text: &[u8]) -> Result<Table, TableError> {
        // serde would also take a JSON array as the fields in order (`[7]`: version 7).
        if text.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|b| *b == b'[') {
            return Err(TableError::new("", "the table must be a JSON object, not an array"));
        }
        // The path tracking costs on every value; a table that parses (nearly every push)
        // does without it, and only a refused one is parsed again to name its path. Both
        // parses accept exactly the same documents: the tracker only watches.
        if let Ok(t) = serde_json::from_slice::<Table>(text) {
            return Ok(t);
        }
        let de = &mut serde_json::Deserializer::from_slice(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let mut field = if path == "." || path == "?" { String::new() } else { path };
            let inner = e.into_inner();
            let message = inner.to_string();
            // A missing field is reported at its parent; name the field itself.
            if let Some(name) = message.strip_prefix("missing field `").and_then(|m| m.split('`').next()) {
                field = if field.is_empty() { name.to_owned() } else { format!("{field}.{name}") };
            }
            TableError::new(field, message)
        })
    }
}
