//! `accord explain`: SPEC 2.1 step by step for one event, written for a DPO.
//!
//! It calls the same engine functions the gateway runs (`decode`, `decide_traced`,
//! `write_outputs`) and reads the engine's own trace of steps 2 to 6, so what it says
//! is what happens; it only adds the words.

use std::fmt::Write as _;

use chrono::{Datelike, Utc};

use crate::agreement::taxonomy::Class;
use crate::agreement::{Agreement, FieldOp, Rule};
use crate::engine::{DropReason, Engine, FieldNote, Outputs, Suppressions, Trace, Treatment};
use super::hhmm;

const DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

/// The explanation of one JSON event, as text.
pub fn explain(engine: &Engine, input: &[u8]) -> String {
    explain_with(engine, input, &crate::engine::suppress::NONE)
}

/// The explanation of one JSON event under these suppressions.
pub fn explain_with(engine: &Engine, input: &[u8], suppressions: &Suppressions) -> String {
    let a = &**engine.agreement();
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "Agreement `{}` version {}.", a.id, a.version);

    let event = match engine.decode(input) {
        Ok(e) => e,
        Err(d) => {
            let why = d.malformed.map(|m| m.to_string()).unwrap_or_default();
            let _ = writeln!(w, "1. Decode: the event is malformed ({why}).");
            let _ = writeln!(w, "\nVerdict: dropped, reason `malformed`. Nothing is forwarded; the gateway quarantines the record's position, never its content.");
            return s;
        }
    };
    let _ = writeln!(w, "Event `{}`: source `{}`, category `{}`, occurred at {}.\n", event.event_id, event.source, event.category, event.occurred_at_text);
    let _ = writeln!(w, "1. Decode: ok.");
    let mut trace = Trace::default();
    let verdict = engine.decide_traced(&event, Some(&mut trace));
    let at = event.occurred_at.with_timezone(&Utc);

    // 2.
    let window = format!(
        "[{}, {})",
        a.valid_from.map_or("open".into(), |t| t.to_rfc3339()),
        a.valid_until.map_or("open".into(), |t| t.to_rfc3339())
    );
    if trace.in_force == Some(false) {
        let _ = writeln!(w, "2. In force: no. {} UTC is outside {window}.", at.to_rfc3339());
        return dropped(s, DropReason::AgreementNotInForce, "the agreement does not cover this moment");
    }
    let _ = writeln!(w, "2. In force: yes, {} is within {window}.", at.to_rfc3339());

    // 3 and 4.
    // Classified through the taxonomy's terms too (SPEC 2.1): `Mood` is emotion.
    let label = trace.class.map(|(c, _)| a.taxonomy.name(c).to_string()).unwrap_or_default();
    let reads_as = if label.is_empty() || crate::agreement::names::normalise(&label) == crate::agreement::names::normalise(&event.category) {
        String::new()
    } else {
        format!(" (it reads as `{label}`)")
    };
    if let Some((_, Class::Prohibited)) = trace.class {
        let why = crate::agreement::taxonomy::legal_basis(&label).unwrap_or("the agreement prohibits it");
        let _ = writeln!(w, "3. Prohibited category: yes, `{}`{reads_as} is prohibited ({why}).", event.category);
        return dropped(s, DropReason::ProhibitedCategory, "this kind of data may never be collected");
    }
    let _ = writeln!(w, "3. Prohibited category: no.");
    match trace.allowed {
        Some(0) => {
            let _ = writeln!(w, "4. Special category: `{}`{reads_as} is special (GDPR art. 9) and no `special_allowed` entry covers it.", event.category);
            return dropped(s, DropReason::SpecialCategory, "health and biometric data need an explicit exception");
        }
        Some(allowed) => {
            let _ = writeln!(w, "4. Special category: `{}`{reads_as} is special (GDPR art. 9); its exception allows only: {}.", event.category, purpose_names(a, allowed));
        }
        None => {
            let _ = writeln!(w, "4. Special category: no.");
        }
    }

    // 4a and 4b.
    if let (Some(list), Some((found, dropped_as))) = (&a.instruments, trace.instrument) {
        let Some(i) = found.map(|i| &list[i as usize]) else {
            let device = if event.device_id.is_some() { "its device" } else { "an event without a device" };
            let _ = writeln!(w, "4a. Instrument: none of the {} approved instrument(s) is for source `{}` and {device}.", list.len(), event.source);
            return dropped(s, DropReason::UnapprovedInstrument, "only approved instruments may feed the gateway");
        };
        if dropped_as == Some(DropReason::UnapprovedInstrument) {
            let _ = writeln!(w, "4a. Instrument: `{}` (line {}), but its validation ({}) expired on {}.", i.name, i.line, i.reference, i.valid_until.to_rfc3339());
            return dropped(s, DropReason::UnapprovedInstrument, "an instrument whose validation has expired is no longer approved");
        }
        let fields = if i.fields.is_some() { format!("it may send only: {}", i.fields_list().join(", ")) } else { "it may send any attribute".to_string() };
        let _ = writeln!(w, "4a. Instrument: `{}` (line {}), validated by {} until {}; {fields}.", i.name, i.line, i.reference, i.valid_until.to_rfc3339());
        let bounds: Vec<String> = i.quality.iter().map(|b| format!("`{}` {}", b.path, b.describe())).collect();
        if dropped_as == Some(DropReason::BelowQuality) {
            let _ = writeln!(w, "4b. Quality: not met; required: {} (a missing or non-numeric value fails).", bounds.join(", "));
            return dropped(s, DropReason::BelowQuality, "readings below the agreed quality are not used");
        }
        if !bounds.is_empty() {
            let _ = writeln!(w, "4b. Quality: met ({}).", bounds.join(", "));
        }
    }

    // 5. Every rule before the deciding one (all of them, when none decides) did not match.
    let skipped: Vec<String> = a.rules[..trace.rule.unwrap_or(a.rules.len())]
        .iter()
        .map(|rule| format!("   rule `{}` (line {}) does not match: {}", rule.name, rule.line, mismatch(rule, &event.source, &event.category)))
        .collect();
    let Some(decision) = trace.rule else {
        let _ = writeln!(w, "5. Rule: none matches source `{}` and category `{}`:", event.source, event.category);
        for line in &skipped {
            let _ = writeln!(w, "{line}");
        }
        return dropped(s, DropReason::NoMatchingRule, "what is not agreed is not allowed");
    };
    let rule = &a.rules[decision];
    let _ = writeln!(w, "5. Rule: `{}` (line {}) matches source `{}` and category `{}`; the first rule that matches decides.", rule.name, rule.line, event.source, event.category);
    for line in &skipped {
        let _ = writeln!(w, "{line}");
    }
    if matches!(verdict, Err(d) if d.reason == DropReason::SpecialCategory) {
        let _ = writeln!(w, "   None of its purposes ({}) is covered by the exception.", purpose_names(a, rule.purpose_set()));
        return dropped(s, DropReason::SpecialCategory, "the exception names none of this rule's purposes");
    }

    // 6.
    match trace.schedule {
        None => {
            let _ = writeln!(w, "6. Schedule: the rule has none; it applies at any time.");
        }
        Some((i, inside)) => {
            let sched = &a.schedules[i];
            let local = at.with_timezone(&sched.timezone);
            let days: Vec<&str> = (0..7).filter(|d| sched.days[*d]).map(|d| &DAYS[d][..3]).collect();
            let _ = writeln!(
                w,
                "6. Schedule `{}`: {} {} in {} is {} {} {}-{}.",
                sched.name,
                DAYS[local.weekday().num_days_from_monday() as usize],
                local.format("%H:%M"),
                sched.timezone.name(),
                if inside { "within" } else { "outside" },
                days.join(", "),
                hhmm(sched.from),
                hhmm(sched.until)
            );
            if !inside {
                return dropped(s, DropReason::OutsideSchedule, "the rule only applies during its schedule");
            }
        }
    }

    // 6a.
    let decision = verdict.expect("every drop returned above");
    let mut outputs = Outputs::default();
    let decision = if suppressions.is_empty() {
        let _ = writeln!(w, "6a. Suppressions: none given.");
        decision
    } else {
        match engine.suppress(&event, decision, suppressions, &mut outputs) {
            Err(_) => {
                let _ = writeln!(w, "6a. Suppressions: this worker's suppression covers every remaining purpose ({}).", purpose_names(a, decision.purposes));
                return dropped(s, DropReason::Suppressed, "the worker objected, a restriction is in force, or their privacy switch is on");
            }
            Ok(d) if d.purposes != decision.purposes => {
                let _ = writeln!(w, "6a. Suppressions: this worker's suppression removes {}.", purpose_names(a, decision.purposes & !d.purposes));
                d
            }
            Ok(d) => {
                let _ = writeln!(w, "6a. Suppressions: none covers this worker at this time.");
                d
            }
        }
    };

    // 7 and 8.
    let mut notes: Vec<FieldNote> = Vec::new();
    let mut fields = Vec::new();
    let event = match engine.restrict(event, &decision, &mut fields) {
        Ok(e) => e,
        Err(m) => {
            let _ = writeln!(w, "7. Output: the attributes cannot be read ({m}).");
            return dropped(s, DropReason::Malformed, "a value the rule needs is not valid");
        }
    };
    if let Err(m) = engine.write_outputs(&event, decision, &mut outputs, Some(&mut notes)) {
        let _ = writeln!(w, "7. Output: the attributes cannot be read ({m}).");
        return dropped(s, DropReason::Malformed, "a value the rule needs is not valid");
    }
    let _ = writeln!(w, "7-8. {} output(s), one per purpose:", outputs.items.len());
    for o in &outputs.items {
        let p = &a.purposes[o.purpose as usize];
        let _ = writeln!(w, "\n   -> purpose `{}`, topic `{}`", p.name, p.topic);
        let mine: Vec<&FieldNote> = notes.iter().filter(|n| n.purpose == o.purpose).collect();
        let list = |t: fn(&Treatment) -> bool| mine.iter().filter(|n| t(&n.treatment)).map(|n| n.path.as_str()).collect::<Vec<_>>();
        let _ = writeln!(w, "      always:        event_id, source, category, occurred_at");
        line(w, "kept", &list(|t| *t == Treatment::Kept));
        line(w, "pseudonymised", &list(|t| *t == Treatment::Pseudonymised));
        let generalised: Vec<String> = mine
            .iter()
            .filter(|n| n.treatment == Treatment::Generalised)
            .map(|n| format!("{} ({})", n.path, describe_op(rule, &n.path)))
            .collect();
        line(w, "generalised", &generalised.iter().map(String::as_str).collect::<Vec<_>>());
        let removed: Vec<String> = mine
            .iter()
            .filter_map(|n| match n.treatment {
                Treatment::Removed(why) => Some(format!("{} ({why})", n.path)),
                _ => None,
            })
            .collect();
        line(w, "removed", &removed.iter().map(String::as_str).collect::<Vec<_>>());
        let _ = writeln!(w, "      output:        {}", String::from_utf8_lossy(outputs.payload(o)));
    }
    let _ = writeln!(w, "\nVerdict: forwarded to {}.", purpose_names(a, decision.purposes));
    s
}

fn dropped(mut s: String, reason: DropReason, why: &str) -> String {
    let _ = writeln!(s, "\nVerdict: dropped, reason `{reason}`: {why}. Nothing is forwarded.");
    s
}

fn line(w: &mut String, label: &str, items: &[&str]) {
    if !items.is_empty() {
        let _ = writeln!(w, "      {:<14} {}", format!("{label}:"), items.join(", "));
    }
}

fn purpose_names(a: &Agreement, set: u64) -> String {
    let names: Vec<String> = a.purposes.iter().enumerate().filter(|(i, _)| set & (1 << i) != 0).map(|(_, p)| format!("`{}`", p.name)).collect();
    names.join(", ")
}

fn mismatch(rule: &Rule, source: &str, category: &str) -> String {
    let list = |l: &Option<Vec<String>>| l.as_ref().map(|l| l.join(", ")).unwrap_or_default();
    let n = crate::agreement::names::normalise;
    if !rule.sources.as_ref().is_none_or(|l| l.iter().any(|x| n(x) == n(source))) {
        format!("source `{source}` is not one of [{}]", list(&rule.sources))
    } else {
        format!("category `{category}` is not one of [{}] (names compare ignoring case, accents and look-alike letters)", list(&rule.categories))
    }
}

fn describe_op(rule: &Rule, path: &str) -> String {
    let op = if path == "occurred_at" {
        rule.occurred_at.map(FieldOp::Truncate)
    } else {
        let rest = path.strip_prefix("attributes.").unwrap_or(path);
        let segments: Vec<&str> = rest.split('.').collect();
        let mut sel = Some(&rule.attributes);
        let mut op = None;
        for seg in segments {
            sel = sel.and_then(|s| s.child(seg));
            op = sel.and_then(|s| s.op).or(op);
        }
        op
    };
    match op {
        Some(FieldOp::Round(n)) => format!("rounded to {n} decimals"),
        Some(FieldOp::Bucket(w)) => format!("down to a multiple of {w}"),
        Some(FieldOp::Truncate(secs)) => format!("truncated to {}", duration(secs)),
        _ => String::new(),
    }
}

fn duration(secs: i64) -> String {
    match secs {
        s if s % 86400 == 0 => format!("{}d", s / 86400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

