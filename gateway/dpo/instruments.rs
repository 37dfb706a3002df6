//! The approved instruments (SPEC 2.6) in the DPO's tools: the section of the workers'
//! page that lists them (validation reference, expiry, quality bounds, what each may
//! send), and the sentences `accord diff` writes when they change.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::render::{esc, Lang};
use crate::agreement::instruments::{Bound, Instrument};
use crate::agreement::Agreement;

fn t(l: Lang, en: &'static str, nl: &'static str) -> &'static str {
    match l {
        Lang::En => en,
        Lang::Nl => nl,
    }
}

fn day(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d").to_string()
}

fn bound(b: &Bound, l: Lang) -> String {
    match (b.min, b.max, l) {
        (Some(a), Some(z), Lang::En) => format!("from {a} to {z}"),
        (Some(a), Some(z), Lang::Nl) => format!("van {a} tot en met {z}"),
        (Some(a), None, Lang::En) => format!("at least {a}"),
        (Some(a), None, Lang::Nl) => format!("minstens {a}"),
        (None, Some(z), Lang::En) => format!("at most {z}"),
        (None, Some(z), Lang::Nl) => format!("hoogstens {z}"),
        (None, None, _) => String::new(),
    }
}

/// The workers' page section; empty when the agreement lists no instruments.
pub fn section(a: &Agreement, l: Lang) -> String {
    let Some(list) = &a.instruments else { return String::new() };
    let mut h = String::new();
    let _ = write!(
        h,
        "<section>\n<h2>{}</h2>\n<p>{}</p>\n",
        t(l, "Approved instruments", "Goedgekeurde meetinstrumenten"),
        esc(t(
            l,
            "Only these validated instruments may feed data. Data from any other instrument, from an instrument whose validation has expired, or below the agreed quality is not passed on.",
            "Alleen deze gevalideerde instrumenten mogen gegevens leveren. Gegevens van een ander instrument, van een instrument waarvan de validatie is verlopen, of onder de afgesproken kwaliteit worden niet doorgegeven."
        ))
    );
    if list.is_empty() {
        let _ = writeln!(h, "<p>{}</p>", esc(t(l, "No instrument is approved, so no data is passed on.", "Er is geen instrument goedgekeurd, dus er worden geen gegevens doorgegeven.")));
    } else {
        let _ = write!(
            h,
            "<table>\n<thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead>\n<tbody>\n",
            t(l, "Instrument", "Instrument"),
            t(l, "Sensor", "Sensor"),
            t(l, "Validation", "Validatie"),
            t(l, "Approved until", "Goedgekeurd tot"),
            t(l, "Quality required", "Vereiste kwaliteit"),
            t(l, "May send", "Mag doorgeven"),
        );
        for i in list {
            let devices = if i.devices.is_empty() { String::new() } else { format!("<br><small>{}</small>", esc(&i.devices.join(", "))) };
            let quality: Vec<String> = i.quality.iter().map(|b| format!("<code>{}</code> {}", esc(&b.path), esc(&bound(b, l)))).collect();
            let quality = if quality.is_empty() { t(l, "none agreed", "niets afgesproken").to_string() } else { quality.join("<br>") };
            let sends = match &i.fields {
                None => t(l, "any reading (no limit agreed)", "elke meting (geen grens afgesproken)").to_string(),
                Some(_) if i.fields_list().is_empty() => t(l, "nothing but the event itself", "niets dan de gebeurtenis zelf").to_string(),
                Some(_) => i.fields_list().iter().map(|f| format!("<code>{}</code>", esc(f))).collect::<Vec<_>>().join(", "),
            };
            let _ = writeln!(
                h,
                "<tr><td><strong>{}</strong>{devices}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{quality}</td><td>{sends}</td></tr>",
                esc(&i.name),
                esc(&i.source),
                esc(&i.reference),
                day(i.valid_until),
            );
        }
        h.push_str("</tbody>\n</table>\n");
    }
    h.push_str("</section>\n");
    h
}

/// What changes between two agreements' instruments, as sentences.
pub fn changes(old: &Agreement, new: &Agreement) -> Vec<String> {
    let mut out = Vec::new();
    let (o, n) = (old.instruments.as_deref(), new.instruments.as_deref());
    match (o, n) {
        (None, None) => return out,
        (None, Some(_)) => out.push("Only approved instruments may now feed data: events from any instrument not listed are dropped (`unapproved_instrument`).".to_string()),
        (Some(_), None) => out.push("The list of approved instruments is removed: events from every instrument are admitted again.".to_string()),
        (Some(_), Some(_)) => {}
    }
    let (o, n) = (o.unwrap_or(&[]), n.unwrap_or(&[]));
    for ni in n {
        let Some(oi) = o.iter().find(|x| x.name == ni.name) else {
            out.push(format!("New approved instrument `{}`: {}.", ni.name, describe(ni)));
            continue;
        };
        if oi.source != ni.source {
            out.push(format!("Instrument `{}` is now for source `{}` instead of `{}`.", ni.name, ni.source, oi.source));
        }
        if oi.devices != ni.devices {
            out.push(format!("Instrument `{}` now covers devices {} (before: {}).", ni.name, globs(ni), globs(oi)));
        }
        if oi.reference != ni.reference {
            out.push(format!("Instrument `{}` is now validated by \"{}\" (before: \"{}\").", ni.name, ni.reference, oi.reference));
        }
        if oi.valid_until != ni.valid_until {
            out.push(format!("Instrument `{}` is now approved until {} instead of {}.", ni.name, day(ni.valid_until), day(oi.valid_until)));
        }
        if oi.fields_list() != ni.fields_list() || oi.fields.is_some() != ni.fields.is_some() {
            out.push(format!("Instrument `{}` may now send {} (before: {}).", ni.name, sends(ni), sends(oi)));
        }
        let q = |i: &Instrument| i.quality.iter().map(|b| format!("`{}` {}", b.path, b.describe())).collect::<Vec<_>>();
        if q(oi) != q(ni) {
            out.push(format!("The quality required of instrument `{}` is now {} (before: {}).", ni.name, list_or_none(&q(ni)), list_or_none(&q(oi))));
        }
    }
    for oi in o {
        if !n.iter().any(|x| x.name == oi.name) {
            out.push(format!("Instrument `{}` ({}) is no longer approved: its events are dropped.", oi.name, describe(oi)));
        }
    }
    let order = |l: &[Instrument]| l.iter().map(|i| i.name.clone()).collect::<Vec<_>>();
    let (oo, no): (Vec<_>, Vec<_>) = (order(o).into_iter().filter(|x| n.iter().any(|i| &i.name == x)).collect(), order(n).into_iter().filter(|x| o.iter().any(|i| &i.name == x)).collect());
    if oo != no {
        out.push(format!("The instruments are in a new order (the first that matches an event decides): {}.", no.join(", ")));
    }
    out
}

fn describe(i: &Instrument) -> String {
    format!("source `{}`, devices {}, validated by \"{}\" until {}, may send {}", i.source, globs(i), i.reference, day(i.valid_until), sends(i))
}

fn globs(i: &Instrument) -> String {
    if i.devices.is_empty() {
        "any".to_string()
    } else {
        i.devices.iter().map(|g| format!("`{g}`")).collect::<Vec<_>>().join(", ")
    }
}

fn sends(i: &Instrument) -> String {
    match &i.fields {
        None => "any attribute".to_string(),
        Some(_) => list_or_none(&i.fields_list().iter().map(|f| format!("`{f}`")).collect::<Vec<_>>()),
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "nothing".to_string()
    } else {
        items.join(", ")
    }
}
