//! What an exercise proved, in one line: the report's verdict and the command's last
//! words. An exercise on an idle fleet passes every gate and proves nothing about
//! clients, so it says so instead of "pass"; a failure that names every proxy with the
//! same answer says the answer once, with how many more gave it.

use std::fmt;

use crate::fleet::evacuate::journal::Journal;

/// The verdict of one exercise.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Evacuated, held and restored under client traffic, every gate green.
    Pass,
    /// Every move went through, but no client request was seen at any moment.
    NoTraffic,
    /// Stopped: why (already summarized).
    Fail(String),
}

impl Verdict {
    /// `failure` is why the run stopped, if it did.
    pub fn judge(failure: Option<&str>, journal: &Journal) -> Verdict {
        match failure {
            Some(why) => Verdict::Fail(summarize(why)),
            None if !journal.saw_traffic() => Verdict::NoTraffic,
            None => Verdict::Pass,
        }
    }

    /// The class of a verdict's text (`pass`, `idle` or `fail`), for the report's color.
    pub(super) fn class_of(text: &str) -> &'static str {
        if text.starts_with("pass") {
            "pass"
        } else if text.starts_with("no traffic") {
            "idle"
        } else {
            "fail"
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Pass => f.write_str("pass: evacuated, held and restored with every gate green"),
            Verdict::NoTraffic => f.write_str(
                "no traffic: the exercise saw no client requests, so it proves nothing about clients \
                 (the table moves went through every gate)",
            ),
            Verdict::Fail(why) => write!(f, "fail: {why}"),
        }
    }
}

/// What a `PROXY (REGION): ANSWER` item says, without who said it.
fn answer_of(item: &str) -> Option<&str> {
    let close = item.find("): ")?;
    let open = item[..close].rfind(" (").map(|i| i + 1).or_else(|| item[..close].rfind('('))?;
    let who = item[..open].trim_end();
    let addr = who.rsplit(' ').next().unwrap_or(who);
    (!addr.is_empty() && !item[open..close].contains(' ')).then(|| &item[close + 3..])
}

/// `a (r): 401 x; b (r): 401 x; c (r): 401 x` → `a (r): 401 x (the same from 2 more)`:
/// a list of proxies (items joined by `; `) that answered alike reads as its first item
/// once and a count; everything else is kept as it is.
pub(crate) fn summarize(text: &str) -> String {
    let mut kept: Vec<(&str, Option<&str>, usize)> = Vec::new();
    for item in text.split("; ") {
        let answer = answer_of(item);
        if let Some(a) = answer
            && let Some(k) = kept.iter_mut().find(|k| k.1 == Some(a))
        {
            k.2 += 1;
            continue;
        }
        kept.push((item, answer, 0));
    }
    let parts: Vec<String> = kept
        .into_iter()
        .map(|(item, _, more)| match more {
            0 => item.to_owned(),
            n => format!("{item} (the same from {n} more)"),
        })
        .collect();
    parts.join("; ")
}
