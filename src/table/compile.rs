//! The compiled table: what the request path reads. Built off the request path from a
//! validated [`Table`] and this proxy's region, then swapped in whole.

use std::sync::Arc;

use rand::{Rng, RngExt};

use super::route::{OriginId, Router};
use super::{PeerMode, Row, Table};
use crate::config::Route;

/// Where a request is served: this region's origin, or a peer region (by peer index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    Local,
    Peer(usize),
}

impl Target {
    /// The target's region index (see [`Regions`]): 0 for this region, then the peers.
    pub(crate) fn index(self) -> usize {
        match self {
            Target::Local => 0,
            Target::Peer(i) => i + 1,
        }
    }
}

/// The regions this proxy knows, in a fixed order: index 0 is its own, then the peers in
/// config order. Region indices are what compiled rows hold.
#[derive(Debug, Clone)]
pub struct Regions {
    pub names: Vec<Arc<str>>,
}

impl Regions {
    pub(crate) fn target(&self, name: &str) -> Option<Target> {
        let i = self.names.iter().position(|n| &**n == name)?;
        Some(if i == 0 { Target::Local } else { Target::Peer(i - 1) })
    }

    pub(crate) fn name(&self, t: Target) -> &str {
        match t {
            Target::Local => &self.names[0],
            Target::Peer(i) => self.names.get(i + 1).map(|n| &**n).unwrap_or("?"),
        }
    }
}

/// One compiled row: targets with integer weights, zero weights dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct Picker {
    entries: Vec<(Target, u64)>,
}

impl Picker {
    fn from_row(row: &Row, regions: &Regions) -> Picker {
        let entries =
            row.iter().filter(|(_, w)| **w > 0).filter_map(|(n, w)| Some((regions.target(n)?, *w))).collect();
        Picker { entries }
    }

    fn local() -> Picker {
        Picker { entries: vec![(Target::Local, 1)] }
    }

    pub fn entries(&self) -> &[(Target, u64)] {
        &self.entries
    }

    /// Weighted random choice among targets for which `factor` is above 0 and `skip` is
    /// false. `factor` in (0, 1] scales a weight (slow start); 0 means unhealthy. An
    /// unhealthy target's share goes to the others in proportion to their weights, because
    /// it simply drops out of the sum. `None` when no weighted target is usable.
    pub fn pick<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        factor: impl Fn(Target) -> f64,
        skip: impl Fn(Target) -> bool,
    ) -> Option<Target> {
        let mut total = 0.0;
        // Rows are short (one entry per region): two passes beat any allocation.
        for (t, w) in &self.entries {
            if !skip(*t) {
                total += *w as f64 * factor(*t).clamp(0.0, 1.0);
            }
        }
        if total <= 0.0 {
            return None;
        }
        let mut x = rng.random::<f64>() * total;
        let mut last = None;
        for (t, w) in &self.entries {
            if skip(*t) {
                continue;
            }
            let share = *w as f64 * factor(*t).clamp(0.0, 1.0);
            if share <= 0.0 {
                continue;
            }
            last = Some(*t);
            if x < share {
                return Some(*t);
            }
            x -= share;
        }
        last
    }
}

/// The immutable, per-request view of a table for one proxy.
#[derive(Debug)]
pub struct CompiledTable {
    /// The table as applied, for `GET /v1/table` and the next push's checks.
    pub(crate) table: Arc<Table>,
    pub router: Router,
    /// One picker per origin, by `OriginId`.
    pub(crate) rows: Vec<Picker>,
    /// One mode per peer, by peer index.
    pub(crate) peer_modes: Vec<PeerMode>,
    /// [`Table::digest`], computed once here (health answers carry it).
    pub(crate) digest: String,
}

impl CompiledTable {
    /// Compiles for the proxy of `regions.names[0]`. `origins` are the origin names by id;
    /// `config_routes` apply when the table has none. The table must be validated.
    pub fn compile(
        table: Table,
        regions: &Regions,
        origins: &[Arc<str>],
        config_routes: &[Route],
    ) -> CompiledTable {
        let me = &*regions.names[0];
        let routes = table.routes.as_deref().unwrap_or(config_routes);
        let router = Router::new(routes, |n| origins.iter().position(|o| &**o == n));
        let default = table.weights.get(me).map(|r| Picker::from_row(r, regions));
        let rows = origins
            .iter()
            .map(|name| {
                let specific = table.origins.get(&**name).and_then(|rows| rows.get(me));
                match (specific, &default) {
                    (Some(row), _) => Picker::from_row(row, regions),
                    (None, Some(p)) => p.clone(),
                    (None, None) => Picker::local(),
                }
            })
            .map(|p| if p.entries.is_empty() { Picker::local() } else { p })
            .collect();
        let peer_modes = regions.names[1..]
            .iter()
            .map(|n| table.peer_modes.get(&**n).copied().unwrap_or_default())
            .collect();
        let digest = table.digest();
        CompiledTable { table: Arc::new(table), router, rows, peer_modes, digest }
    }

    pub(crate) fn version(&self) -> u64 {
        self.table.version
    }

    pub fn row(&self, origin: OriginId) -> Option<&Picker> {
        self.rows.get(origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions() -> Regions {
        Regions { names: vec!["a".into(), "b".into(), "c".into()] }
    }

    fn row(pairs: &[(&str, u64)]) -> Row {
        pairs.iter().map(|(n, w)| (n.to_string(), *w)).collect()
    }

    fn shares(p: &Picker, factor: impl Fn(Target) -> f64 + Copy) -> [f64; 3] {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut counts = [0u32; 3];
        let n = 100_000;
        for _ in 0..n {
            match p.pick(&mut rng, factor, |_| false) {
                Some(Target::Local) => counts[0] += 1,
                Some(Target::Peer(i)) => counts[i + 1] += 1,
                None => panic!("no target"),
            }
        }
        counts.map(|c| c as f64 / n as f64)
    }

    use rand::SeedableRng;

    #[test]
    fn weights_are_followed() {
        let p = Picker::from_row(&row(&[("a", 60), ("b", 40)]), &regions());
        let s = shares(&p, |_| 1.0);
        assert!((s[0] - 0.6).abs() < 0.01 && (s[1] - 0.4).abs() < 0.01, "{s:?}");
        assert_eq!(s[2], 0.0);
    }

    #[test]
    fn unhealthy_share_is_redistributed_in_proportion() {
        let p = Picker::from_row(&row(&[("a", 50), ("b", 30), ("c", 20)]), &regions());
        let s = shares(&p, |t| if t == Target::Local { 0.0 } else { 1.0 });
        assert_eq!(s[0], 0.0);
        assert!((s[1] - 0.6).abs() < 0.01 && (s[2] - 0.4).abs() < 0.01, "{s:?}");
    }

    #[test]
    fn nothing_usable_is_none_and_skip_is_honoured() {
        let p = Picker::from_row(&row(&[("a", 1), ("b", 1)]), &regions());
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_eq!(p.pick(&mut rng, |_| 0.0, |_| false), None);
        for _ in 0..100 {
            assert_eq!(p.pick(&mut rng, |_| 1.0, |t| t == Target::Local), Some(Target::Peer(0)));
        }
    }

    #[test]
    fn compile_reads_own_row_and_origin_overrides() {
        let mut t = Table::local_only();
        t.version = 1;
        t.weights.insert("a".into(), row(&[("b", 100)]));
        t.weights.insert("b".into(), row(&[("a", 100)]));
        t.origins.insert("video".into(), [("a".to_string(), row(&[("a", 1)]))].into());
        let origins: Vec<Arc<str>> = vec!["api".into(), "video".into()];
        let c = CompiledTable::compile(t, &regions(), &origins, &[]);
        assert_eq!(c.rows[0].entries(), &[(Target::Peer(0), 100)]);
        assert_eq!(c.rows[1].entries(), &[(Target::Local, 1)]);
        assert_eq!(c.peer_modes, vec![PeerMode::Auto, PeerMode::Auto]);
        let empty = CompiledTable::compile(Table::local_only(), &regions(), &origins, &[]);
        assert_eq!(empty.rows[0].entries(), &[(Target::Local, 1)], "no row: serve locally");
    }
}
