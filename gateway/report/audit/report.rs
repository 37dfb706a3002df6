//! `accord audit report`: the auditor's summary of a period, from the trail alone.
//!
//! Which agreements were in force and when they changed; events forwarded per purpose;
//! dropped per reason and category; each per day. As text, JSON, or one self-contained
//! HTML page with inline SVG charts that a works council can read, in English or Dutch
//! (like the workers' page, [`crate::dpo::render`]). Text and HTML say in words why
//! events were dropped; the raw reason codes appear only in JSON, for machines. A
//! report is only made of a trail that verified ([`super::verify`]): what it found is
//! the report's first section.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{Head, Kind, Record, Verified};
use crate::dpo::render::{category_name, esc, Lang};

#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// What the verification found (the trail is reported on only if it verified).
    pub verification: Verification,
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
    /// Suppressions written or lifted (reason, purposes, window; never the subject).
    pub suppressions: Vec<Value>,
}

/// The trail's verification, as the report states it.
#[derive(Debug, Default, Serialize)]
pub struct Verification {
    pub records: u64,
    /// `SEQ:HASH` of the last record.
    pub head: Option<String>,
    pub checkpoints: u64,
    /// The last record is a signed checkpoint.
    pub closed: bool,
    /// Records after the last checkpoint, not yet vouched for by a signature.
    pub unsigned: u64,
    /// Fingerprint of the audit key that signed the checkpoints.
    pub key: String,
}

impl Verification {
    pub fn new(v: &Verified, key: &str) -> Verification {
        Verification { records: v.records, head: v.head.as_ref().map(Head::to_string), checkpoints: v.checkpoints, closed: v.closed(), unsigned: v.unsigned, key: key.to_string() }
    }
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
pub fn build(verification: Verification, records: &[Record], from: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> Report {
    let mut r = Report { verification, from: from.map(|t| t.to_rfc3339()), until: until.map(|t| t.to_rfc3339()), ..Report::default() };
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
            Kind::Suppression => r.suppressions.push(serde_json::json!({"time": rec.time, "act": c["act"], "reason": c["reason"], "purposes": c["purposes"], "from": c["from"], "until": c["until"]})),
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
            Kind::GatewayStopped | Kind::Checkpoint => {}
        }
    }
    r.dropped = dropped.into_iter().map(|((reason, category), count)| Dropped { reason, category, count }).collect();
    r.days = days.into_values().collect();
    r
}

fn text(v: &Value) -> String {
    v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())
}

/// Why events were dropped, in words a works council reads.
pub fn reason_words(code: &str, l: Lang) -> String {
    let (en, nl) = match code {
        "malformed" => ("unreadable or incomplete events", "onleesbare of onvolledige gegevens"),
        "agreement_not_in_force" => ("from outside the period the agreement is in force", "van buiten de looptijd van de afspraak"),
        "prohibited_category" => ("data the law or the agreement forbids", "gegevens die de wet of de afspraak verbiedt"),
        "special_category" => ("special data (such as health) without an agreed exception", "bijzondere gegevens (zoals gezondheid) zonder afgesproken uitzondering"),
        "unapproved_instrument" => ("from a sensor that is not approved", "van een sensor die niet is goedgekeurd"),
        "below_quality" => ("readings below the agreed quality", "metingen onder de afgesproken kwaliteit"),
        "no_matching_rule" => ("no rule of the agreement allows them", "geen regel van de afspraak staat ze toe"),
        "outside_schedule" => ("outside the agreed times", "buiten de afgesproken tijden"),
        "suppressed" => ("a worker objected or switched tracking off", "een werknemer maakte bezwaar of zette het volgen uit"),
        other => return other.replace(['_', '-'], " "),
    };
    l.t(en, nl).to_string()
}

fn category_words(category: &str, l: Lang) -> String {
    if category == "other" { l.t("other", "overig").to_string() } else { category_name(category, l) }
}

/// The verification, in one or two sentences.
fn verification_words(v: &Verification, l: Lang) -> String {
    let head = v.head.as_deref().unwrap_or("-");
    let mut s = match l {
        Lang::En => format!(
            "The audit trail was verified: its {} records are linked in order, and {} checkpoint(s) signed with the audit key {} vouch that none was changed, added or removed up to the last of them. Its head is {head}.",
            v.records, v.checkpoints, v.key
        ),
        Lang::Nl => format!(
            "Het auditlogboek is gecontroleerd: de {} regels sluiten in volgorde op elkaar aan, en {} controlepunt(en), ondertekend met de auditsleutel {}, staan ervoor in dat tot het laatste ervan niets is gewijzigd, toegevoegd of verwijderd. Het eindpunt is {head}.",
            v.records, v.checkpoints, v.key
        ),
    };
    if !v.closed {
        s.push(' ');
        s.push_str(&match l {
            Lang::En => format!("The trail is still open: the last {} record(s) come after the last signed checkpoint, so no signature vouches for them yet.", v.unsigned),
            Lang::Nl => format!("Het logboek is nog open: de laatste {} regel(s) staan na het laatste ondertekende controlepunt; daar staat nog geen handtekening voor in.", v.unsigned),
        });
    }
    s
}

/// The report for a terminal.
pub fn to_text(r: &Report, l: Lang) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}{}", l.t("Audit report", "Auditrapport"), period(r, l));
    let _ = writeln!(s, "{}\n", verification_words(&r.verification, l));
    let _ = writeln!(s, "{} {}.\n", r.records, l.t("records in this period", "regels in deze periode"));
    let _ = writeln!(s, "{}", l.t("Agreements put in force:", "Afspraken in werking gesteld:"));
    if r.agreements.is_empty() {
        let _ = writeln!(s, "  {}", l.t("none in this period", "geen in deze periode"));
    }
    for a in &r.agreements {
        let _ = writeln!(s, "  {}  {} {} {}  (sha256 {}; {}: {})", a.time, a.agreement, l.t("version", "versie"), a.version, &a.sha256[..a.sha256.len().min(12)], l.t("parties", "partijen"), a.parties.join("; "));
    }
    if !r.refusals.is_empty() {
        let _ = writeln!(s, "{}: {}", l.t("Agreements refused (the one in force stayed in force)", "Afspraken geweigerd (de geldende afspraak bleef van kracht)"), r.refusals.len());
        for f in &r.refusals {
            let _ = writeln!(s, "  {}  {}", f.time, f.content["sha256"].as_str().unwrap_or("?"));
        }
    }
    let forwarded: u64 = r.forwarded.values().sum();
    let dropped: u64 = r.dropped.iter().map(|d| d.count).sum();
    let _ = match l {
        Lang::En => writeln!(s, "\nEvents received {}, passed on {forwarded} times, events stopped {dropped}.", r.received),
        Lang::Nl => writeln!(s, "\nGegevens ontvangen {}, {forwarded} keer doorgegeven, gegevens tegengehouden {dropped}.", r.received),
    };
    let _ = writeln!(s, "\n{}", l.t("Passed on per purpose:", "Doorgegeven per doel:"));
    for (p, n) in &r.forwarded {
        let _ = writeln!(s, "  {p:<24} {n:>10}");
    }
    let _ = writeln!(s, "\n{}", l.t("Stopped, and why:", "Tegengehouden, en waarom:"));
    for d in &r.dropped {
        let _ = writeln!(s, "  {:>10}  {} ({})", d.count, reason_words(&d.reason, l), category_words(&d.category, l));
    }
    let _ = writeln!(s, "\n{}", l.t("Per day (UTC):        received  passed on    stopped", "Per dag (UTC):       ontvangen doorgegeven tegengehouden"));
    for d in &r.days {
        let _ = writeln!(s, "  {:<18} {:>10} {:>10} {:>10}", d.date, d.received, d.forwarded, d.dropped);
    }
    let _ = writeln!(s, "\n{}: {}", l.t("Pseudonym look-ups (access requests)", "Opzoekingen van pseudoniemen (inzageverzoeken)"), r.pseudonym_lookups.len());
    for lk in &r.pseudonym_lookups {
        let _ = match l {
            Lang::En => writeln!(s, "  {}  purpose {}, period {}, reason: {}", text(&lk["time"]), text(&lk["purpose"]), text(&lk["period"]), text(&lk["reason"])),
            Lang::Nl => writeln!(s, "  {}  doel {}, periode {}, reden: {}", text(&lk["time"]), text(&lk["purpose"]), text(&lk["period"]), text(&lk["reason"])),
        };
    }
    if !r.suppressions.is_empty() {
        let _ = writeln!(s, "\nSuppressions written or lifted (objections, restrictions, privacy switches): {}", r.suppressions.len());
        for l in &r.suppressions {
            let _ = writeln!(s, "  {}  {} {}, purposes {}, from {} until {}", text(&l["time"]), text(&l["act"]), text(&l["reason"]), l["purposes"], text(&l["from"]), text(&l["until"]));
        }
    }
    s
}

fn period(r: &Report, l: Lang) -> String {
    match (&r.from, &r.until) {
        (None, None) => String::new(),
        (f, u) => format!(
            " {} {} {} {}",
            l.t("from", "van"),
            f.as_deref().unwrap_or(l.t("the start", "het begin")),
            l.t("until", "tot"),
            u.as_deref().unwrap_or(l.t("the end", "het eind"))
        ),
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
pub fn to_html(r: &Report, l: Lang) -> String {
    let forwarded: Vec<(String, u64)> = r.forwarded.iter().map(|(k, v)| (k.clone(), *v)).collect();
    let mut by_reason: BTreeMap<&str, u64> = BTreeMap::new();
    for d in &r.dropped {
        *by_reason.entry(&d.reason).or_default() += d.count;
    }
    let reasons: Vec<(String, u64)> = by_reason.into_iter().map(|(k, v)| (reason_words(k, l), v)).collect();
    let total_fwd: u64 = r.forwarded.values().sum();
    let total_drop: u64 = r.dropped.iter().map(|d| d.count).sum();
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<!DOCTYPE html><html lang="{}"><head><meta charset="utf-8"><title>{}</title><style>
body{{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222;line-height:1.45}}
h1{{font-size:1.6em}} h2{{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}}
table{{border-collapse:collapse}} td,th{{padding:4px 10px;border-bottom:1px solid #eee;text-align:left}}
.n{{text-align:right;font-variant-numeric:tabular-nums}} .box{{display:inline-block;padding:10px 16px;margin:4px;background:#f4f6f8;border-radius:6px}}
.legend span{{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px}} .verified{{background:#e8f5e9;padding:10px 14px;border-radius:6px}}
</style></head><body>
<h1>{}</h1><p>{}{}{} ({} {}). {}</p><p class="verified">{}</p>
<div><span class="box">{}<br><b>{}</b></span><span class="box">{}<br><b>{total_fwd}</b></span><span class="box">{}<br><b>{total_drop}</b></span><span class="box">{}<br><b>{}</b></span></div>
<h2>{}</h2>"#,
        l.t("en", "nl"),
        l.t("Accord audit report", "Accord auditrapport"),
        l.t("Accord audit report", "Accord auditrapport"),
        l.t("What the gateway enforced", "Wat de gateway heeft afgedwongen"),
        esc(&period(r, l)),
        l.t(", read from its hash-chained, signed audit trail", ", gelezen uit het aaneengeschakelde, ondertekende auditlogboek"),
        r.records,
        l.t("records", "regels"),
        l.t("It shows counts only: no worker, identifier or reading appears here.", "Het toont alleen aantallen: geen werknemer, kenmerk of meetwaarde staat hierin."),
        esc(&verification_words(&r.verification, l)),
        l.t("Events received", "Gegevens ontvangen"),
        r.received,
        l.t("Passed on", "Doorgegeven"),
        l.t("Stopped", "Tegengehouden"),
        l.t("Pseudonym look-ups", "Opzoekingen van pseudoniemen"),
        r.pseudonym_lookups.len(),
        l.t("Agreements in force", "Afspraken van kracht")
    );
    if r.agreements.is_empty() {
        let _ = write!(s, "<p>{}</p>", l.t("No agreement was (re)loaded in this period.", "In deze periode is geen afspraak (opnieuw) geladen."));
    } else {
        let _ = write!(s, "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>SHA-256</th></tr>", l.t("From", "Vanaf"), l.t("Agreement", "Afspraak"), l.t("Version", "Versie"), l.t("Parties", "Partijen"));
        for a in &r.agreements {
            let _ = write!(s, "<tr><td>{}</td><td>{}</td><td class=n>{}</td><td>{}</td><td><code>{}</code></td></tr>", esc(&a.time), esc(&a.agreement), a.version, esc(&a.parties.join("; ")), esc(&a.sha256[..a.sha256.len().min(16)]));
        }
        s.push_str("</table>");
    }
    if !r.refusals.is_empty() {
        let _ = write!(s, "<p>{} {}</p>", r.refusals.len(), l.t("changed agreement(s) were refused; the agreement in force stayed in force.", "gewijzigde afspraak/afspraken geweigerd; de geldende afspraak bleef van kracht."));
    }
    let _ = write!(s, "<h2>{}</h2>{}", l.t("Passed on per purpose", "Doorgegeven per doel"), bars(&forwarded, "#2e7d32"));
    let _ = write!(s, "<h2>{}</h2>{}", l.t("Stopped, and why", "Tegengehouden, en waarom"), bars(&reasons, "#c62828"));
    let _ = write!(s, "<table><tr><th>{}</th><th>{}</th><th class=n>{}</th></tr>", l.t("Why", "Waarom"), l.t("Kind of data", "Soort gegevens"), l.t("Events", "Aantal"));
    for d in &r.dropped {
        let _ = write!(s, "<tr><td>{}</td><td>{}</td><td class=n>{}</td></tr>", esc(&reason_words(&d.reason, l)), esc(&category_words(&d.category, l)), d.count);
    }
    s.push_str("</table>");
    let _ = write!(
        s,
        r##"<h2>{}</h2><div class="legend"><span style="background:#2e7d32"></span>{}<span style="background:#c62828"></span>{}</div>{}"##,
        l.t("Per day (UTC)", "Per dag (UTC)"),
        l.t("passed on", "doorgegeven"),
        l.t("stopped", "tegengehouden"),
        daily(&r.days)
    );
    let _ = write!(
        s,
        "<table><tr><th>{}</th><th class=n>{}</th><th class=n>{}</th><th class=n>{}</th></tr>",
        l.t("Day", "Dag"),
        l.t("Received", "Ontvangen"),
        l.t("Passed on", "Doorgegeven"),
        l.t("Stopped", "Tegengehouden")
    );
    for d in &r.days {
        let _ = write!(s, "<tr><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td></tr>", esc(&d.date), d.received, d.forwarded, d.dropped);
    }
    let _ = write!(s, "</table><h2>{}</h2>", l.t("Pseudonym look-ups", "Opzoekingen van pseudoniemen"));
    if r.pseudonym_lookups.is_empty() {
        let _ = write!(s, "<p>{}</p>", l.t("None.", "Geen."));
    } else {
        let _ = write!(
            s,
            "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            l.t("When", "Wanneer"),
            l.t("Purpose", "Doel"),
            l.t("Period", "Periode"),
            l.t("Reason given", "Opgegeven reden")
        );
        for l in &r.pseudonym_lookups {
            let _ = write!(s, "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", esc(&text(&l["time"])), esc(&text(&l["purpose"])), esc(&text(&l["period"])), esc(&text(&l["reason"])));
        }
        s.push_str("</table>");
    }
    s.push_str("</body></html>\n");
    s
}
