//! The contract's rules for a table, checked against what a proxy knows ([`Known`]):
//! the first problem found is returned, named by its JSON path.

use super::{Known, MAX_WEIGHT, Row, Table, TableError};

impl Table {
    /// Checks every rule of the contract; the first problem found is returned.
    pub fn validate(&self, known: &Known<'_>) -> Result<(), TableError> {
        if self.version == 0 {
            return Err(TableError::new("version", "must be a positive integer"));
        }
        // The JSON path is built only for the error: a push of a valid table (the usual
        // case) formats no path at all.
        let region = |path: &dyn Fn() -> String, name: &str| -> Result<(), TableError> {
            if known.regions.contains(&name) {
                Ok(())
            } else {
                Err(TableError::new(
                    path(),
                    format!(
                        "unknown region `{name}` (known: {}); a proxy knows its own region and its config's peers: add [peers.{name}] to the config, or leave `{name}` out of the table",
                        known.regions.join(", ")
                    ),
                ))
            }
        };
        for (src, row) in &self.weights {
            let path = || format!("weights.{src}");
            region(&path, src)?;
            check_row(&path, row, &region)?;
        }
        for (origin, rows) in &self.origins {
            if !known.origins.contains(&origin.as_str()) {
                return Err(TableError::new(
                    format!("origins.{origin}"),
                    format!("unknown origin `{origin}` (known: {})", known.origins.join(", ")),
                ));
            }
            for (src, row) in rows {
                let path = || format!("origins.{origin}.{src}");
                region(&path, src)?;
                check_row(&path, row, &region)?;
            }
        }
        if let Some(routes) = &self.routes {
            for (i, r) in routes.iter().enumerate() {
                if !known.origins.contains(&r.origin.as_str()) {
                    return Err(TableError::new(
                        format!("routes[{i}].origin"),
                        format!("unknown origin `{}`", r.origin),
                    ));
                }
                if !r.path_prefix.starts_with('/') {
                    return Err(TableError::new(format!("routes[{i}].path_prefix"), "must start with `/`"));
                }
                crate::config::check_host_pattern(&r.host)
                    .map_err(|m| TableError::new(format!("routes[{i}].host"), m))?;
            }
        }
        for name in self.peer_modes.keys() {
            region(&|| format!("peer_modes.{name}"), name)?;
        }
        if let Some(s) = self.max_shift
            && !(s.is_finite() && (0.0..=1.0).contains(&s))
        {
            return Err(TableError::new("max_shift", "must be between 0 and 1"));
        }
        Ok(())
    }

    /// Every region and origin the table names, for checking a table on its own (without a
    /// config): only the rules that need no outside knowledge can fail then.
    pub fn self_known(&self) -> Known<'_> {
        let mut regions: Vec<&str> = Vec::new();
        let rows = self.weights.iter().chain(self.origins.values().flat_map(|r| r.iter()));
        for (src, row) in rows {
            regions.push(src);
            regions.extend(row.keys().map(String::as_str));
        }
        regions.extend(self.peer_modes.keys().map(String::as_str));
        regions.sort_unstable();
        regions.dedup();
        let mut origins: Vec<&str> = self.origins.keys().map(String::as_str).collect();
        if let Some(routes) = &self.routes {
            origins.extend(routes.iter().map(|r| r.origin.as_str()));
        }
        Known { regions, origins }
    }
}

fn check_row(
    path: &dyn Fn() -> String,
    row: &Row,
    region: &impl Fn(&dyn Fn() -> String, &str) -> Result<(), TableError>,
) -> Result<(), TableError> {
    let mut sum: u64 = 0;
    for (target, w) in row {
        let at = || format!("{}.{target}", path());
        region(&at, target)?;
        if *w > MAX_WEIGHT {
            return Err(TableError::new(at(), format!("weight above {MAX_WEIGHT}")));
        }
        sum += w;
    }
    if sum == 0 {
        return Err(TableError::new(path(), "weights sum to 0: the row would send traffic nowhere"));
    }
    Ok(())
}
