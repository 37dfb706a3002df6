//! `accord audit report`: the auditor's summary of a period, from the trail alone.
//!
//! Which agreements were in force and when they changed; events forwarded per purpose;
//! dropped per reason and category; each per day. As text, JSON, or one self-contained
//! HTML page with inline SVG charts that a works council can read.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{Kind, Record};
use crate::dpo::render::esc;

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub from: Option<String>,
    pub until: Option<String>,
    pub records: usize,
    pub agreements: Vec<AgreementChange>,
    pub refusals: Vec<Refusal>,
    pub gateway_starts: usize,
    pub received: u64,
    pub forwarded: BTreeMap<String, u64>,
    pub dropped: Vec<Dropped>,
    pub days: Vec<Day>,
    pub pseudonym_lookups: Vec<Value>,
}

#[derive(Debug, Serialize)]
pub struct AgreementChange {
    pub time: String,
    pub agreement: String,
    pub version: u64,
    pub sha256: String,
    pub parties: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Refusal {
    pub time: String,
    pub content: Value,
}

#[derive(Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dropped {
    pub reason: String,
    pub category: String,
    pub count: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Day {
    pub date: String,
    pub received: u64,
    pub forwarded: u64,
    pub dropped: u64,
}

/// Summarises the records whose time is in `[from, until)`.
pub fn build(records: &[Record], from: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> Report {
    let mut r = Report { from: from.map(|t| t.to_rfc3339()), until: until.map(|t| t.to_rfc3339()), ..Report::default() };
    let mut dropped: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut days: BTreeMap<String, Day> = BTreeMap::new();
    for rec in records {
        let Ok(time) = DateTime::parse_from_rfc3339(&rec.time) else { continue };
        if from.is_some_and(|f| time < f) || until.is_some_and(|u| time >= u) {
            continue;
        }
        r.records += 1;
        let c = &rec.content;
        match rec.kind {
            Kind::AgreementLoaded => r.agreements.push(AgreementChange {
                time: rec.time.clone(),
                agreement: text(&c["agreement"]),
                version: c["version"].as_u64().unwrap_or_default(),
                sha256: text(&c["sha256"]),
                parties: c["parties"].as_array().map(|a| a.iter().map(text).collect()).unwrap_or_default(),
            }),
            Kind::AgreementRefused => r.refusals.push(Refusal { time: rec.time.clone(), content: c.clone() }),
            Kind::GatewayStarted => r.gateway_starts += 1,
            Kind::PseudonymLookup => r.pseudonym_lookups.push(serde_json::json!({"time": rec.time, "purpose": c["purpose"], "period": c["period"], "reason": c["reason"]})),
            Kind::Counters => {
                let date = rec.time.get(..10).unwrap_or_default().to_string();
                let day = days.entry(date.clone()).or_insert_with(|| Day { date, ..Day::default() });
                let received = c["received"].as_u64().unwrap_or_default();
                r.received += received;
                day.received += received;
                for f in c["forwarded"].as_array().into_iter().flatten() {
                    let n = f["count"].as_u64().unwrap_or_default();
                    *r.forwarded.entry(text(&f["purpose"])).or_default() += n;
                    day.forwarded += n;
                }
                for d in c["dropped"].as_array().into_iter().flatten() {
                    let n = d["count"].as_u64().unwrap_or_default();
                    *dropped.entry((text(&d["reason"]), text(&d["category"]))).or_default() += n;
                    day.dropped += n;
                }
            }
            Kind::GatewayStopped => {}
        }
    }
    r.dropped = dropped.into_iter().map(|((reason, category), count)| Dropped { reason, category, count }).collect();
    r.days = days.into_values().collect();
    r
}

fn text(v: &Value) -> String {
    v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())
}

/// The report for a terminal.
pub fn to_text(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Audit report{}", period(r));
    let _ = writeln!(s, "{} records read.\n", r.records);
    let _ = writeln!(s, "Agreements put in force:");
    if r.agreements.is_empty() {
        let _ = writeln!(s, "  none in this period");
    }
    for a in &r.agreements {
        let _ = writeln!(s, "  {}  {} version {}  (sha256 {}; parties: {})", a.time, a.agreement, a.version, &a.sha256[..a.sha256.len().min(12)], a.parties.join("; "));
    }
    if !r.refusals.is_empty() {
        let _ = writeln!(s, "Agreements refused (the one in force stayed in force): {}", r.refusals.len());
        for f in &r.refusals {
            let _ = writeln!(s, "  {}  {}", f.time, f.content["sha256"].as_str().unwrap_or("?"));
        }
    }
    let forwarded: u64 = r.forwarded.values().sum();
    let dropped: u64 = r.dropped.iter().map(|d| d.count).sum();
    let _ = writeln!(s, "\nEvents received {}, outputs forwarded {forwarded}, events dropped {dropped}.", r.received);
    let _ = writeln!(s, "\nForwarded per purpose:");
    for (p, n) in &r.forwarded {
        let _ = writeln!(s, "  {p:<24} {n:>10}");
    }
    let _ = writeln!(s, "\nDropped per reason and category:");
    for d in &r.dropped {
        let _ = writeln!(s, "  {:<24} {:<20} {:>10}", d.reason, d.category, d.count);
    }
    let _ = writeln!(s, "\nPer day (UTC):        received  forwarded    dropped");
    for d in &r.days {
        let _ = writeln!(s, "  {:<18} {:>10} {:>10} {:>10}", d.date, d.received, d.forwarded, d.dropped);
    }
    let _ = writeln!(s, "\nPseudonym look-ups (access requests): {}", r.pseudonym_lookups.len());
    for l in &r.pseudonym_lookups {
        let _ = writeln!(s, "  {}  purpose {}, period {}, reason: {}", text(&l["time"]), text(&l["purpose"]), text(&l["period"]), text(&l["reason"]));
    }
    s
}

fn period(r: &Report) -> String {
    match (&r.from, &r.until) {
        (None, None) => String::new(),
        (f, u) => format!(" from {} until {}", f.as_deref().unwrap_or("the start"), u.as_deref().unwrap_or("the end")),
    }
}

/// Horizontal bars, one per (label, value), as inline SVG.
fn bars(items: &[(String, u64)], color: &str) -> String {
    let max = items.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let (row, label_w, bar_w) = (26, 260, 420);
    let mut s = format!(r#"<svg role="img" width="{}" height="{}" xmlns="http://www.w3.org/2000/svg">"#, label_w + bar_w + 90, items.len().max(1) * row + 4);
    for (i, (label, v)) in items.iter().enumerate() {
        let y = i * row;
        let w = (*v as f64 / max as f64 * bar_w as f64).round().max(if *v > 0 { 2.0 } else { 0.0 });
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end" font-size="13">{}</text><rect x="{}" y="{}" width="{w}" height="18" rx="3" fill="{color}"><title>{}: {v}</title></rect><text x="{}" y="{}" font-size="13">{v}</text>"#,
            label_w - 8,
            y + 15,
            esc(label),
            label_w,
            y + 2,
            esc(label),
            label_w as f64 + w + 6.0,
            y + 15
        );
    }
    s.push_str("</svg>");
    s
}

/// Stacked columns per day: forwarded and dropped.
fn daily(days: &[Day]) -> String {
    let max = days.iter().map(|d| d.forwarded + d.dropped).max().unwrap_or(0).max(1);
    let (col, h) = (56, 180);
    let mut s = format!(r#"<svg role="img" width="{}" height="{}" xmlns="http://www.w3.org/2000/svg">"#, days.len().max(1) * col + 20, h + 50);
    for (i, d) in days.iter().enumerate() {
        let x = 10 + i * col;
        let fh = d.forwarded as f64 / max as f64 * h as f64;
        let dh = d.dropped as f64 / max as f64 * h as f64;
        let _ = write!(
            s,
            r##"<rect x="{x}" y="{:.1}" width="36" height="{fh:.1}" fill="#2e7d32"><title>{} forwarded {}</title></rect><rect x="{x}" y="{:.1}" width="36" height="{dh:.1}" fill="#c62828"><title>{} dropped {}</title></rect><text x="{}" y="{}" font-size="11" text-anchor="middle">{}</text>"##,
            h as f64 - fh,
            d.date,
            d.forwarded,
            h as f64 - fh - dh,
            d.date,
            d.dropped,
            x + 18,
            h + 16,
            d.date.get(5..).unwrap_or(&d.date)
        );
    }
    s.push_str("</svg>");
    s
}

/// One self-contained page: inline CSS and SVG, no scripts, no external resources.
pub fn to_html(r: &Report) -> String {
    let forwarded: Vec<(String, u64)> = r.forwarded.iter().map(|(k, v)| (k.clone(), *v)).collect();
    let mut by_reason: BTreeMap<&str, u64> = BTreeMap::new();
    for d in &r.dropped {
        *by_reason.entry(&d.reason).or_default() += d.count;
    }
    let reasons: Vec<(String, u64)> = by_reason.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    let total_fwd: u64 = r.forwarded.values().sum();
    let total_drop: u64 = r.dropped.iter().map(|d| d.count).sum();
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Accord audit report</title><style>
body{{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222;line-height:1.45}}
h1{{font-size:1.6em}} h2{{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}}
table{{border-collapse:collapse}} td,th{{padding:4px 10px;border-bottom:1px solid #eee;text-align:left}}
.n{{text-align:right;font-variant-numeric:tabular-nums}} .box{{display:inline-block;padding:10px 16px;margin:4px;background:#f4f6f8;border-radius:6px}}
.legend span{{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px}}
</style></head><body>
<h1>Accord audit report</h1><p>What the gateway enforced{}, read from its hash-chained audit trail ({} records). It shows counts only: no worker, identifier or reading appears here.</p>
<div><span class="box">Events received<br><b>{}</b></span><span class="box">Outputs forwarded<br><b>{total_fwd}</b></span><span class="box">Events dropped<br><b>{total_drop}</b></span><span class="box">Pseudonym look-ups<br><b>{}</b></span></div>
<h2>Agreements in force</h2>"#,
        esc(&period(r)),
        r.records,
        r.received,
        r.pseudonym_lookups.len()
    );
    if r.agreements.is_empty() {
        s.push_str("<p>No agreement was (re)loaded in this period.</p>");
    } else {
        s.push_str("<table><tr><th>From</th><th>Agreement</th><th>Version</th><th>Parties</th><th>SHA-256</th></tr>");
        for a in &r.agreements {
            let _ = write!(s, "<tr><td>{}</td><td>{}</td><td class=n>{}</td><td>{}</td><td><code>{}</code></td></tr>", esc(&a.time), esc(&a.agreement), a.version, esc(&a.parties.join("; ")), esc(&a.sha256[..a.sha256.len().min(16)]));
        }
        s.push_str("</table>");
    }
    if !r.refusals.is_empty() {
        let _ = write!(s, "<p>{} changed agreement(s) were refused; the agreement in force stayed in force.</p>", r.refusals.len());
    }
    let _ = write!(s, "<h2>Forwarded per purpose</h2>{}", bars(&forwarded, "#2e7d32"));
    let _ = write!(s, "<h2>Dropped per reason</h2>{}", bars(&reasons, "#c62828"));
    s.push_str("<table><tr><th>Reason</th><th>Category</th><th class=n>Events</th></tr>");
    for d in &r.dropped {
        let _ = write!(s, "<tr><td>{}</td><td>{}</td><td class=n>{}</td></tr>", esc(&d.reason), esc(&d.category), d.count);
    }
    s.push_str("</table>");
    let _ = write!(
        s,
        r##"<h2>Per day (UTC)</h2><div class="legend"><span style="background:#2e7d32"></span>forwarded<span style="background:#c62828"></span>dropped</div>{}"##,
        daily(&r.days)
    );
    s.push_str("<table><tr><th>Day</th><th class=n>Received</th><th class=n>Forwarded</th><th class=n>Dropped</th></tr>");
    for d in &r.days {
        let _ = write!(s, "<tr><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td></tr>", esc(&d.date), d.received, d.forwarded, d.dropped);
    }
    s.push_str("</table><h2>Pseudonym look-ups</h2>");
    if r.pseudonym_lookups.is_empty() {
        s.push_str("<p>None.</p>");
    } else {
        s.push_str("<table><tr><th>When</th><th>Purpose</th><th>Period</th><th>Reason given</th></tr>");
        for l in &r.pseudonym_lookups {
            let _ = write!(s, "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", esc(&text(&l["time"])), esc(&text(&l["purpose"])), esc(&text(&l["period"])), esc(&text(&l["reason"])));
        }
        s.push_str("</table>");
    }
    s.push_str("</body></html>\n");
    s
}
