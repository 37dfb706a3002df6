//! The page's phrasebook: sensors, categories, fields, operations, schedules and dates
//! in plain English and Dutch.

use chrono::{DateTime, Datelike, Utc};

use crate::agreement::taxonomy::PROHIBITED;
use crate::agreement::{Agreement, FieldOp, Rule, Schedule};

use super::style::esc;
use super::Lang;
use crate::dpo::{and_list, hhmm};


/// The sources the rules name, in rule order; `None` for a rule that matches any.
pub(super) fn sources(a: &Agreement) -> Vec<Option<String>> {
    let mut out: Vec<Option<String>> = Vec::new();
    for r in &a.rules {
        match &r.sources {
            Some(list) => {
                for s in list {
                    if !out.iter().any(|o| o.as_deref() == Some(s)) {
                        out.push(Some(s.clone()));
                    }
                }
            }
            None => {
                if !out.contains(&None) {
                    out.push(None);
                }
            }
        }
    }
    // "Any other sensor" last.
    out.sort_by_key(Option::is_none);
    out
}

/// The sensors a rule without `match: source` covers: all, or all the others.
pub(super) fn any_sensor(a: &Agreement, l: Lang) -> &'static str {
    if a.rules.iter().any(|r| r.sources.is_some()) {
        l.t("Any other sensor", "Elke andere sensor")
    } else {
        l.t("Any sensor", "Elke sensor")
    }
}

pub(super) fn source_name(source: &str, l: Lang) -> String {
    let known = match source {
        "tracker" => Some(("Location trackers", "Locatietrackers")),
        "access_pass" => Some(("Access passes", "Toegangspassen")),
        "wearable" => Some(("Wearables", "Wearables")),
        "computer_activity" => Some(("Computer activity agent", "Activiteitsmeter op pc's")),
        "camera" => Some(("Cameras", "Camera's")),
        _ => None,
    };
    known.map_or_else(|| capital(&source.replace(['_', '-'], " ")), |(en, nl)| l.t(en, nl).to_string())
}

/// A data category in words (also for the audit report).
pub fn category_name(category: &str, l: Lang) -> String {
    let known = match category {
        "location" => Some(("location", "locatie")),
        "access" => Some(("door passages", "deurpassages")),
        "clocking" => Some(("clocking in and out", "in- en uitklokken")),
        "alarm" => Some(("alarms", "alarmen")),
        "health" => Some(("health readings", "gezondheidsmetingen")),
        "biometric" => Some(("biometric data (fingerprints, face, iris, voice)", "biometrische gegevens (vingerafdruk, gezicht, iris, stem)")),
        "activity" => Some(("computer activity", "computeractiviteit")),
        "emotion" => Some(("emotions", "emoties")),
        "facial_expression" => Some(("facial expressions", "gezichtsuitdrukkingen")),
        "racial_ethnic_origin" => Some(("racial or ethnic origin", "ras of etnische afkomst")),
        "political_opinion" => Some(("political opinions", "politieke opvattingen")),
        "religion" => Some(("religion or beliefs", "godsdienst of levensovertuiging")),
        "trade_union" => Some(("trade-union membership", "lidmaatschap van een vakbond")),
        "sex_life" => Some(("sex life", "seksueel leven")),
        "sexual_orientation" => Some(("sexual orientation", "seksuele gerichtheid")),
        "genetic" => Some(("genetic data (DNA)", "genetische gegevens (DNA)")),
        "keystroke_content" => Some(("what you type", "wat je typt")),
        "screen_capture" => Some(("what is on your screen", "wat er op je scherm staat")),
        "mood" => Some(("mood", "stemming")),
        "stress_level" => Some(("stress level", "stressniveau")),
        _ => None,
    };
    known.map_or_else(|| category.replace(['_', '-'], " "), |(en, nl)| l.t(en, nl).to_string())
}

pub(super) fn prohibited_reason(category: &str, l: Lang) -> String {
    let builtin = PROHIBITED.iter().any(|(n, _)| n.eq_ignore_ascii_case(category));
    let text = match category {
        "emotion" | "facial_expression" => l.t(
            "Emotion recognition at work is forbidden by the EU AI Act, art. 5(1)(f), since 2 February 2025.",
            "Emotieherkenning op het werk is sinds 2 februari 2025 verboden door de Europese AI-verordening, art. 5 lid 1 onder f.",
        ),
        "genetic" => l.t(
            "Genetic data has no place in employment: it is special-category data (GDPR art. 9) and no exception for work applies.",
            "Genetische gegevens horen niet bij werk: het zijn bijzondere persoonsgegevens (AVG art. 9) en er geldt geen uitzondering voor werk.",
        ),
        _ if builtin => l.t(
            "Using biometric data to guess this is forbidden by the EU AI Act, art. 5(1)(g); it is also special-category data (GDPR art. 9).",
            "Dit afleiden uit biometrische gegevens is verboden door de Europese AI-verordening, art. 5 lid 1 onder g; het zijn ook bijzondere persoonsgegevens (AVG art. 9).",
        ),
        _ => l.t("Forbidden by this agreement.", "Verboden door deze afspraak."),
    };
    text.to_string()
}

pub(super) fn field_name(path: &str, l: Lang) -> Option<&'static str> {
    let last = path.rsplit('.').next().unwrap_or(path);
    let (en, nl) = match last {
        "subject_id" => ("you", "jij"),
        "device_id" => ("the device", "het apparaat"),
        "occurred_at" => ("time", "tijdstip"),
        "lat" => ("latitude", "breedtegraad"),
        "lon" => ("longitude", "lengtegraad"),
        "zone" => ("zone", "zone"),
        "door" => ("door", "deur"),
        "direction" => ("in or out", "in of uit"),
        "turnstile" => ("turnstile", "poortje"),
        "reader" => ("card reader", "paslezer"),
        "alarm_type" => ("kind of alarm", "soort alarm"),
        "alarm" => ("alarm", "alarm"),
        "heat_stress_index" => ("heat-stress index", "hittestress-index"),
        "vitals" => ("vital signs", "lichaamsfuncties"),
        "heart_rate" => ("heart rate", "hartslag"),
        "body_temperature" => ("body temperature", "lichaamstemperatuur"),
        "speed_kmh" => ("speed", "snelheid"),
        "task" => ("task", "taak"),
        "app_category" => ("kind of program", "soort programma"),
        "session" => ("session (locked or not)", "sessie (vergrendeld of niet)"),
        "active_minutes" => ("active minutes", "actieve minuten"),
        "idle_minutes" => ("idle minutes", "inactieve minuten"),
        _ => return None,
    };
    Some(l.t(en, nl))
}

/// The fields a rule passes on, each with its form, as HTML.
pub(super) fn fields_html(r: &Rule, l: Lang) -> String {
    let mut items: Vec<String> = Vec::new();
    match r.subject_id {
        Some(FieldOp::Keep) => items.push(format!("<strong>{}</strong>", esc(l.t("your employee number, in the clear", "je personeelsnummer, herkenbaar")))),
        Some(FieldOp::Pseudonymise) => items.push(esc(l.t("you, as a code", "jij, als code"))),
        _ => items.push(esc(l.t("not who you are", "niet wie je bent"))),
    }
    let mut paths: Vec<(String, FieldOp)> = Vec::new();
    if let Some(op) = r.device_id {
        paths.push(("device_id".into(), op));
    }
    if let Some(secs) = r.occurred_at {
        paths.push(("occurred_at".into(), FieldOp::Truncate(secs)));
    }
    paths.extend(r.attributes.paths());
    let listed: Vec<String> = paths.iter().map(|(p, _)| p.clone()).collect();
    for (path, op) in paths {
        let name = match field_name(&path, l) {
            Some(n) => format!("{} <code>{}</code>", esc(n), esc(&path)),
            None => format!("<code>{}</code>", esc(&path)),
        };
        // A kept value with listed paths below it is an object or a list, kept whole: the
        // page must not promise that only the listed parts leave (SPEC 2.5).
        let whole = op == FieldOp::Keep && listed.iter().any(|other| other.len() > path.len() + 1 && other.starts_with(&path) && other.as_bytes()[path.len()] == b'.');
        let form = if whole {
            l.t(
                "kept whole: everything in it leaves as the sensor sent it, also what the sensor adds later (the parts listed separately are treated as listed)",
                "helemaal doorgegeven: alles wat erin staat gaat door zoals de sensor het stuurde, ook wat de sensor later toevoegt (de delen die apart genoemd zijn worden behandeld zoals genoemd)",
            )
            .to_string()
        } else {
            form(&path, op, l)
        };
        items.push(if form.is_empty() { name } else { format!("{name} {}", esc(&form)) });
    }
    if r.occurred_at.is_none() {
        items.push(esc(l.t("the exact time", "het precieze tijdstip")));
    }
    format!("<ul class=\"fields\"><li>{}</li></ul>", items.join("</li><li>"))
}

/// How a field is passed on: `` (as recorded), `as a code`, `rounded to 3 decimals (about 110 m)`.
pub(super) fn form(path: &str, op: FieldOp, l: Lang) -> String {
    let last = path.rsplit('.').next().unwrap_or(path);
    match op {
        FieldOp::Keep => String::new(),
        FieldOp::Pseudonymise => l.t("as a code", "als code").to_string(),
        FieldOp::Round(n) => {
            let metres = if matches!(last, "lat" | "lon" | "latitude" | "longitude") {
                let m = 111_000.0 / 10f64.powi(n as i32);
                if m >= 1.0 { format!(" ({} {} m)", l.t("about", "ongeveer"), round_nice(m)) } else { String::new() }
            } else {
                String::new()
            };
            match l {
                Lang::En => format!("rounded to {n} decimal{}{metres}", if n == 1 { "" } else { "s" }),
                Lang::Nl => format!("afgerond op {n} decima{}{metres}", if n == 1 { "al" } else { "len" }),
            }
        }
        FieldOp::Bucket(w) => format!("{} {w}", l.t("in steps of", "in stappen van")),
        FieldOp::Truncate(secs) => match secs {
            60 => l.t("to the minute", "op de minuut").to_string(),
            900 => l.t("per quarter hour", "per kwartier").to_string(),
            3600 => l.t("per hour", "per uur").to_string(),
            86400 => l.t("per day", "per dag").to_string(),
            s => format!("{} {}", l.t("per", "per"), duration(s, l)),
        },
    }
}

pub(super) fn round_nice(m: f64) -> String {
    let digits = 10f64.powi(m.log10().floor() as i32);
    format!("{}", (m / digits).round() * digits)
}

pub(super) fn duration(secs: i64, l: Lang) -> String {
    let (n, en, nl) = match secs {
        s if s % 86400 == 0 => (s / 86400, "days", "dagen"),
        s if s % 3600 == 0 => (s / 3600, "hours", "uur"),
        s if s % 60 == 0 => (s / 60, "minutes", "minuten"),
        s => (s, "seconds", "seconden"),
    };
    format!("{n} {}", l.t(en, nl))
}

/// `location`, `alarms`, `any data`.
pub(super) fn categories(r: &Rule, l: Lang) -> String {
    match &r.categories {
        Some(list) => {
            let names: Vec<String> = list.iter().map(|c| category_name(c, l)).collect();
            and_list(&names, l.t("or", "of"))
        }
        None => l.t("any data", "alle gegevens").to_string(),
    }
}

/// `location from location trackers`.
pub(super) fn flow(r: &Rule, l: Lang) -> String {
    let from = match &r.sources {
        Some(list) => and_list(&list.iter().map(|s| source_name(s, l).to_lowercase()).collect::<Vec<_>>(), l.t("and", "en")),
        None => l.t("any sensor", "elke sensor").to_string(),
    };
    format!("{} {} {from}", capital(&categories(r, l)), l.t("from", "van"))
}

pub(super) fn when(a: &Agreement, r: &Rule, l: Lang) -> String {
    match r.during {
        None => l.t("at any time", "op elk moment").to_string(),
        Some(i) => describe_schedule(&a.schedules[i], l),
    }
}

pub(super) fn when_short(a: &Agreement, r: &Rule, l: Lang) -> String {
    match r.during {
        None => l.t("any time", "altijd").to_string(),
        Some(i) => {
            let s = &a.schedules[i];
            format!("{} {}–{}", days_short(s, l), hhmm(s.from), hhmm(s.until))
        }
    }
}

pub(super) const DAYS_EN: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
pub(super) const DAYS_NL: [&str; 7] = ["maandag", "dinsdag", "woensdag", "donderdag", "vrijdag", "zaterdag", "zondag"];

pub(super) fn describe_schedule(s: &Schedule, l: Lang) -> String {
    let days = match l {
        Lang::En => DAYS_EN,
        Lang::Nl => DAYS_NL,
    };
    let runs = runs(&s.days);
    let parts: Vec<String> = runs
        .iter()
        .map(|&(a, b)| match b - a {
            0 => days[a].to_string(),
            1 => format!("{} {} {}", days[a], l.and(), days[b]),
            _ => format!("{} {} {}", days[a], l.t("to", "tot en met"), days[b]),
        })
        .collect();
    let city = s.timezone.name().rsplit('/').next().unwrap_or("").replace('_', " ");
    match l {
        Lang::En => format!("{}, {} to {}, {city} time", and_list(&parts, "and"), hhmm(s.from), hhmm(s.until)),
        Lang::Nl => format!("{}, van {} tot {}, tijd in {city}", and_list(&parts, "en"), hhmm(s.from), hhmm(s.until)),
    }
}

pub(super) fn days_short(s: &Schedule, l: Lang) -> String {
    let days = match l {
        Lang::En => ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
        Lang::Nl => ["ma", "di", "wo", "do", "vr", "za", "zo"],
    };
    runs(&s.days)
        .iter()
        .map(|&(a, b)| if a == b { days[a].to_string() } else { format!("{}–{}", days[a], days[b]) })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs of consecutive days, Monday first: `[(0, 4), (6, 6)]`.
pub(super) fn runs(days: &[bool; 7]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for d in (0..7).filter(|d| days[*d]) {
        match out.last_mut() {
            Some((_, end)) if *end + 1 == d => *end = d,
            _ => out.push((d, d)),
        }
    }
    out
}


pub(super) fn date(t: DateTime<Utc>, l: Lang) -> String {
    const EN: [&str; 12] = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
    const NL: [&str; 12] = ["januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus", "september", "oktober", "november", "december"];
    let month = match l {
        Lang::En => EN,
        Lang::Nl => NL,
    }[t.month0() as usize];
    format!("{} {month} {}", t.day(), t.year())
}

/// `it_security` -> `IT security`; `payroll` -> `Payroll`.
pub(super) fn purpose_title(name: &str) -> String {
    let words: Vec<String> = name.split(['_', '-']).filter(|w| !w.is_empty()).map(|w| if w.len() == 2 { w.to_uppercase() } else { w.to_string() }).collect();
    capital(&words.join(" "))
}

pub(super) fn capital(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map(|f| f.to_uppercase().collect::<String>() + chars.as_str()).unwrap_or_default()
}

