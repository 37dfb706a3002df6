//! `accord render`: the agreement as a page for workers, in plain Dutch or English.
//!
//! One self-contained HTML file: inline CSS, an inline SVG diagram of the data flows
//! (sensors -> data -> purposes), no scripts, no external resources, so it can be
//! mailed, printed or put on an intranet as it is. It says which sensors, which data,
//! for which purpose, whether workers are pseudonymised (and how often codes change),
//! in which hours, what is never collected and the law behind it, the GDPR art. 9
//! exceptions with their basis and justification, who agreed and since when.
//!
//! Everything comes from the compiled agreement; only the words around it are here.
//! Text from the agreement (descriptions, names, justifications) is HTML-escaped.

use std::fmt::Write as _;

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};

use crate::agreement::taxonomy::{Class, PROHIBITED};
use crate::agreement::{Agreement, Domain, FieldOp, Rotate, Rule, Schedule};

use super::and_list;
use super::hhmm;

/// The page's language.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    En,
    Nl,
}

impl Lang {
    fn t<'a>(self, en: &'a str, nl: &'a str) -> &'a str {
        match self {
            Lang::En => en,
            Lang::Nl => nl,
        }
    }

    fn and(self) -> &'static str {
        self.t("and", "en")
    }
}

/// The whole page.
pub fn render(a: &Agreement, lang: Lang) -> String {
    let l = lang;
    let mut h = String::with_capacity(32 * 1024);
    let title = l.t("Sensor data at work: what is recorded about you, and what never is", "Sensorgegevens op het werk: wat er over je wordt vastgelegd, en wat nooit");
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"{}\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n",
        l.t("en", "nl"),
        esc(title)
    );

    // Header: who, since when.
    let parties: Vec<String> = a.parties.iter().map(|p| format!("<strong>{}</strong>", esc(p))).collect();
    let _ = write!(
        h,
        "<header>\n<p class=\"kicker\">{} <code>{}</code> · {} {}</p>\n<h1>{}</h1>\n<p class=\"lead\">{} {}</p>\n</header>\n",
        l.t("Agreement", "Overeenkomst"),
        esc(&a.id),
        l.t("version", "versie"),
        a.version,
        esc(title),
        match l {
            Lang::En => format!(
                "{} agreed which data the sensors at work may pass on, for what, and how you are protected. This page explains that agreement. Whatever it does not allow is not passed on: a gateway called Accord holds every sensor reading to it before anyone can use it.",
                and_list(&parties, "and")
            ),
            Lang::Nl => format!(
                "{} hebben afgesproken welke gegevens de sensoren op het werk mogen doorgeven, waarvoor, en hoe je wordt beschermd. Deze pagina legt die afspraak uit. Wat niet is toegestaan, wordt niet doorgegeven: een poort met de naam Accord toetst elke sensormeting aan de afspraak voordat iemand die kan gebruiken.",
                and_list(&parties, "en")
            ),
        },
        validity(a, l)
    );

    // The diagram.
    let _ = write!(
        h,
        "<section>\n<h2>{}</h2>\n<figure>\n{}\n<figcaption>{}</figcaption>\n</figure>\n</section>\n",
        l.t("At a glance", "In één oogopslag"),
        diagram(a, l),
        l.t(
            "Each line is data that may go from a sensor to a purpose. Anything not shown here is not passed on.",
            "Elke lijn is informatie die van een sensor naar een doel mag gaan. Wat hier niet staat, wordt niet doorgegeven."
        )
    );

    purposes(a, l, &mut h);
    sensors(a, l, &mut h);
    never(a, l, &mut h);
    special(a, l, &mut h);
    protection(a, l, &mut h);
    agreed(a, l, &mut h);

    let _ = write!(
        h,
        "<footer>{} <code>accord render</code> {} <code>{}</code> {} {}. SHA-256: <code>{}</code></footer>\n</main>\n</body>\n</html>\n",
        l.t("Made with", "Gemaakt met"),
        l.t("from agreement", "uit overeenkomst"),
        esc(&a.id),
        l.t("version", "versie"),
        a.version,
        esc(&a.sha256)
    );
    h
}

fn validity(a: &Agreement, l: Lang) -> String {
    let from = a.valid_from.map(|t| date(t, l));
    // valid_until is the first moment no longer covered: show the last day covered.
    let until = a.valid_until.map(|t| if t.num_seconds_from_midnight() == 0 { date(t - Duration::days(1), l) } else { date(t, l) });
    match (from, until) {
        (Some(f), Some(u)) => format!("{} <strong>{f}</strong> {} <strong>{u}</strong>.", l.t("It applies from", "De afspraak geldt van"), l.t("up to and including", "tot en met")),
        (Some(f), None) => format!("{} <strong>{f}</strong>, {}.", l.t("It applies from", "De afspraak geldt vanaf"), l.t("with no end date", "zonder einddatum")),
        (None, Some(u)) => format!("{} <strong>{u}</strong>.", l.t("It applies up to and including", "De afspraak geldt tot en met")),
        (None, None) => l.t("It has no start or end date.", "De afspraak heeft geen begin- of einddatum.").to_string(),
    }
}

fn purposes(a: &Agreement, l: Lang, h: &mut String) {
    let _ = write!(h, "<section>\n<h2>{}</h2>\n<div class=\"cards\">\n", l.t("What the data is used for", "Waarvoor de gegevens worden gebruikt"));
    for (i, p) in a.purposes.iter().enumerate() {
        let rules: Vec<&Rule> = a.rules.iter().filter(|r| r.purposes.contains(&(i as u8))).collect();
        let who = identity(a, i, l).0;
        let _ = write!(
            h,
            "<article class=\"card\" style=\"border-top-color:{}\">\n<h3>{}</h3>\n<p>{}</p>\n<p class=\"who\">{}</p>\n<ul>\n",
            colour(i),
            esc(&purpose_title(&p.name)),
            esc(&p.description),
            esc(who)
        );
        if rules.is_empty() {
            let _ = writeln!(h, "<li>{}</li>", l.t("No sensor data reaches this purpose yet.", "Nog geen sensorgegevens bereiken dit doel."));
        }
        for r in rules {
            let _ = writeln!(h, "<li>{}<br><span class=\"when\">{}</span></li>", esc(&flow(r, l)), esc(&capital(&when(a, r, l))));
        }
        h.push_str("</ul>\n</article>\n");
    }
    h.push_str("</div>\n</section>\n");
}

/// What a purpose learns of who you are: a sentence for its card, a few words for
/// the diagram.
fn identity(a: &Agreement, purpose: usize, l: Lang) -> (&'static str, &'static str) {
    let rules = || a.rules.iter().filter(|r| r.purposes.contains(&(purpose as u8)));
    if a.purposes[purpose].identified && rules().any(|r| r.subject_id == Some(FieldOp::Keep)) {
        (l.t("It knows who you are: it receives your employee number.", "Weet wie je bent: krijgt je personeelsnummer."), l.t("knows who you are", "weet wie je bent"))
    } else if rules().any(|r| r.subject_id == Some(FieldOp::Pseudonymise)) {
        (l.t("Sees you only as a code, never by name or number.", "Ziet je alleen als code, nooit met naam of nummer."), l.t("sees you only as a code", "ziet je alleen als code"))
    } else {
        (l.t("Does not learn who you are.", "Komt niet te weten wie je bent."), l.t("does not know who you are", "weet niet wie je bent"))
    }
}

/// `<section>` with its heading and an introductory paragraph.
fn open_section(h: &mut String, title: &str, intro: &str) {
    let _ = write!(h, "<section>\n<h2>{title}</h2>\n<p>{intro}</p>\n");
}

fn sensors(a: &Agreement, l: Lang, h: &mut String) {
    open_section(h, l.t("Sensor by sensor", "Per sensor"), l.t(
            "For each sensor: which data may be passed on, in what form, to which purpose and when. Everything else a sensor sends is removed before anyone receives it.",
            "Per sensor: welke gegevens mogen worden doorgegeven, in welke vorm, aan welk doel en wanneer. Al het andere dat een sensor stuurt, wordt verwijderd voordat iemand het ontvangt."
        ));
    for source in sources(a) {
        let rules: Vec<&Rule> = a.rules.iter().filter(|r| r.sources.as_ref().is_none_or(|s| s.iter().any(|x| Some(x) == source.as_ref()))).collect();
        let name = match &source {
            Some(s) => source_name(s, l),
            None => any_sensor(a, l).to_string(),
        };
        let code = source.as_deref().map(|s| format!(" <code>{}</code>", esc(s))).unwrap_or_default();
        let _ = write!(
            h,
            "<h3>{}{code}</h3>\n<table>\n<thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead>\n<tbody>\n",
            esc(&name),
            l.t("Data", "Gegevens"),
            l.t("What is passed on", "Wat wordt doorgegeven"),
            l.t("To", "Naar"),
            l.t("When", "Wanneer")
        );
        for r in rules {
            let purposes: Vec<String> = r
                .purposes
                .iter()
                .map(|p| format!("<span class=\"tag\" style=\"background:{}\">{}</span>", colour(*p as usize), esc(&purpose_title(&a.purposes[*p as usize].name))))
                .collect();
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&capital(&categories(r, l))),
                fields_html(r, l),
                purposes.join(" "),
                esc(&capital(&when(a, r, l)))
            );
        }
        h.push_str("</tbody>\n</table>\n");
    }
    h.push_str("</section>\n");
}

fn never(a: &Agreement, l: Lang, h: &mut String) {
    open_section(h, l.t("What is never collected", "Wat nooit wordt verzameld"), l.t(
            "A reading of one of these kinds is thrown away whole, whichever sensor sends it. Inside other readings, fields with these names are removed wherever they appear.",
            "Een meting van een van deze soorten wordt helemaal weggegooid, welke sensor haar ook stuurt. In andere metingen worden velden met deze namen verwijderd, waar ze ook staan."
        ));
    let prohibited: Vec<_> = a.taxonomy.iter().filter(|(_, _, class)| *class == Class::Prohibited).collect();
    let by_law = |name: &str| PROHIBITED.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    for (heading, law) in [(l.t("Forbidden by law", "Verboden door de wet"), true), (l.t("Forbidden by this agreement", "Verboden door deze afspraak"), false)] {
        let group: Vec<_> = prohibited.iter().filter(|(_, name, _)| by_law(name) == law).collect();
        if group.is_empty() {
            continue;
        }
        let _ = write!(h, "<h3>{}</h3>\n<ul class=\"never\">\n", esc(heading));
        for (id, name, _) in group {
            let fields = field_names(a, *id);
            let also = if fields.is_empty() {
                String::new()
            } else {
                format!("<br><span class=\"small\">{} {fields}</span>", l.t("Also removed from any reading as:", "Ook uit elke meting verwijderd als:"))
            };
            let why = if law { format!("<br>{}", esc(&prohibited_reason(name, l))) } else { String::new() };
            let _ = writeln!(h, "<li><strong>{}</strong> <code>{}</code>{why}{also}</li>", esc(&capital(&category_name(name, l))), esc(name));
        }
        h.push_str("</ul>\n");
    }
    h.push_str("</section>\n");
}

/// The attribute names the taxonomy maps to a category, as `<code>` items.
fn field_names(a: &Agreement, category: crate::agreement::taxonomy::CategoryId) -> String {
    let mut names: Vec<&str> = a.taxonomy.fields().filter(|(_, c)| *c == category).map(|(n, _)| n).collect();
    names.sort_unstable();
    names.iter().map(|n| format!("<code>{}</code>", esc(n))).collect::<Vec<_>>().join(", ")
}

fn special(a: &Agreement, l: Lang, h: &mut String) {
    open_section(h, l.t("Sensitive data: health and biometrics", "Gevoelige gegevens: gezondheid en biometrie"), l.t(
            "Health and biometric data are special categories of personal data (GDPR art. 9). They are never passed on, unless this agreement makes an explicit exception, with its legal basis and its reason, and then only to the purposes it names.",
            "Gezondheids- en biometrische gegevens zijn bijzondere persoonsgegevens (AVG art. 9). Ze worden nooit doorgegeven, tenzij deze afspraak een uitdrukkelijke uitzondering maakt, met de wettelijke grondslag en de reden, en dan alleen aan de doelen die daarin staan."
        ));
    for (id, name, class) in a.taxonomy.iter() {
        if class != Class::Special {
            continue;
        }
        let exceptions: Vec<_> = a.special_allowed.iter().filter(|s| s.category == id).collect();
        let _ = write!(h, "<div class=\"special\">\n<h3>{} <code>{}</code></h3>\n", esc(&capital(&category_name(name, l))), esc(name));
        let fields = field_names(a, id);
        if !fields.is_empty() {
            let _ = writeln!(h, "<p class=\"small\">{} {}</p>", l.t("Also in any reading under the names:", "Ook in elke meting onder de namen:"), fields);
        }
        if exceptions.is_empty() {
            let _ = writeln!(h, "<p><strong>{}</strong></p>", l.t("Never passed on: this agreement makes no exception.", "Wordt nooit doorgegeven: deze afspraak maakt geen uitzondering."));
        }
        for e in exceptions {
            let to: Vec<String> = a.purposes.iter().enumerate().filter(|(i, _)| e.purposes & (1 << i) != 0).map(|(_, p)| purpose_title(&p.name)).collect();
            let _ = write!(
                h,
                "<p><strong>{} {}.</strong></p>\n<dl>\n<dt>{}</dt><dd>{}</dd>\n<dt>{}</dt><dd>{}</dd>\n</dl>\n",
                l.t("Exception: only to", "Uitzondering: alleen naar"),
                esc(&and_list(&to, l.and())),
                l.t("Why", "Waarom"),
                esc(&e.justification),
                l.t("Legal basis", "Wettelijke grondslag"),
                esc(&e.basis)
            );
        }
        h.push_str("</div>\n");
    }
    h.push_str("</section>\n");
}

fn protection(a: &Agreement, l: Lang, h: &mut String) {
    let _ = write!(h, "<section>\n<h2>{}</h2>\n<ul>\n", l.t("How you are protected", "Hoe je wordt beschermd"));
    let domain = match a.domain {
        Domain::PerPurpose => l.t(
            "Where you appear as a code, you have a different code for each purpose, so data of different purposes cannot be combined.",
            "Waar je als code verschijnt, heb je voor elk doel een andere code, zodat gegevens van verschillende doelen niet te combineren zijn."
        ),
        Domain::Shared => l.t(
            "Where you appear as a code, it is the same code for every purpose.",
            "Waar je als code verschijnt, is dat voor elk doel dezelfde code."
        ),
    };
    let rotate = match a.rotate {
        Some(Rotate::Daily) => l.t("Your code changes every day, so you cannot be followed from one day to the next.", "Je code verandert elke dag, zodat je niet van dag tot dag te volgen bent."),
        Some(Rotate::Weekly) => l.t("Your code changes every week, so you cannot be followed from one week to the next.", "Je code verandert elke week, zodat je niet van week tot week te volgen bent."),
        Some(Rotate::Monthly) => l.t("Your code changes every month, so you cannot be followed from one month to the next.", "Je code verandert elke maand, zodat je niet van maand tot maand te volgen bent."),
        None => l.t("Your code does not change over time.", "Je code verandert niet in de tijd."),
    };
    let key = l.t(
        "The codes are made with a secret key that IT keeps apart from this agreement. Only for an access request can your code be looked up, and each look-up is recorded.",
        "De codes worden gemaakt met een geheime sleutel die IT apart van deze afspraak bewaart. Alleen voor een inzageverzoek kan je code worden opgezocht, en elke opzoeking wordt vastgelegd."
    );
    let coarse = l.t(
        "Place and time are made coarser where the purpose does not need more detail (rounded positions, times per minute or quarter hour, values in steps).",
        "Plaats en tijd worden grover gemaakt waar het doel niet meer detail nodig heeft (afgeronde posities, tijden per minuut of kwartier, waarden in stappen)."
    );
    let audit = l.t(
        "Every passed-on reading names the agreement version and rule that allowed it; the works council can check what was passed on, without seeing the data.",
        "Elke doorgegeven meting noemt de versie van de afspraak en de regel die het toestond; de ondernemingsraad kan controleren wat is doorgegeven, zonder de gegevens zelf te zien."
    );
    for line in [domain, rotate, key, coarse, audit] {
        let _ = writeln!(h, "<li>{}</li>", esc(line));
    }
    h.push_str("</ul>\n</section>\n");
}

fn agreed(a: &Agreement, l: Lang, h: &mut String) {
    let _ = write!(h, "<section>\n<h2>{}</h2>\n<ul class=\"parties\">\n", l.t("Who agreed this", "Wie dit heeft afgesproken"));
    for p in &a.parties {
        let _ = writeln!(h, "<li>{}</li>", esc(p));
    }
    let _ = write!(
        h,
        "</ul>\n<p>{} {}: <code>{}</code>, {} {}. {}</p>\n<p>{}</p>\n</section>\n",
        validity(a, l),
        l.t("Agreement", "Overeenkomst"),
        esc(&a.id),
        l.t("version", "versie"),
        a.version,
        l.t(
            "A new version needs the agreement of the works council again.",
            "Voor een nieuwe versie is opnieuw de instemming van de ondernemingsraad nodig."
        ),
        l.t(
            "Questions, or do you want to see what was recorded about you? Ask the works council or the data protection officer.",
            "Vragen, of wil je zien wat er over je is vastgelegd? Vraag het de ondernemingsraad of de functionaris voor gegevensbescherming."
        )
    );
}

// ---------------------------------------------------------------------------
// The diagram: sensors on the left, what they send in the middle (one box per rule),
// purposes on the right, a line for every flow.

const LEFT_X: f64 = 8.0;
const LEFT_W: f64 = 214.0;
const MID_X: f64 = 300.0;
const MID_W: f64 = 296.0;
const RIGHT_X: f64 = 676.0;
const RIGHT_W: f64 = 208.0;
const WIDTH: f64 = 892.0;
const ROW: f64 = 68.0;
const BOX_H: f64 = 50.0;
const TOP: f64 = 40.0;

fn diagram(a: &Agreement, l: Lang) -> String {
    let sources = sources(a);
    let n_rules = a.rules.len().max(1);
    let rows = n_rules.max(sources.len()).max(a.purposes.len());
    let height = TOP + rows as f64 * ROW + 8.0;
    // Evenly spread `n` boxes over the rows: the top of box `i`.
    let y_of = |i: usize, n: usize| TOP + (rows as f64 * ROW) * (i as f64 + 0.5) / n.max(1) as f64 - BOX_H / 2.0;

    // The flows: sensor -> rule, rule -> purpose.
    let feeds = |r: &Rule, src: &Option<String>| match (&r.sources, src) {
        (None, _) => true,
        (Some(list), Some(s)) => list.contains(s),
        (Some(_), None) => false,
    };
    let in_edges: Vec<(usize, usize)> =
        a.rules.iter().enumerate().flat_map(|(ri, r)| sources.iter().enumerate().filter(|(_, s)| feeds(r, s)).map(move |(si, _)| (si, ri))).collect();
    let out_edges: Vec<(usize, usize)> = a.rules.iter().enumerate().flat_map(|(ri, r)| r.purposes.iter().map(move |p| (ri, *p as usize))).collect();

    // Sensors and purposes in the order of the rules they connect to (fewer crossings).
    let order = |n: usize, rules_of: &dyn Fn(usize) -> Vec<usize>| -> Vec<usize> {
        let mut idx: Vec<usize> = (0..n).collect();
        let centre = |i: usize| {
            let r = rules_of(i);
            if r.is_empty() { f64::MAX } else { r.iter().sum::<usize>() as f64 / r.len() as f64 }
        };
        idx.sort_by(|x, y| centre(*x).total_cmp(&centre(*y)).then(x.cmp(y)));
        let mut pos = vec![0; n];
        for (p, i) in idx.into_iter().enumerate() {
            pos[i] = p;
        }
        pos
    };
    let src_pos = order(sources.len(), &|si| in_edges.iter().filter(|(s, _)| *s == si).map(|(_, r)| *r).collect());
    let pur_pos = order(a.purposes.len(), &|pi| out_edges.iter().filter(|(_, p)| *p == pi).map(|(r, _)| *r).collect());
    let src_y = |si: usize| y_of(src_pos[si], sources.len());
    let rule_y = |ri: usize| y_of(ri, n_rules);
    let pur_y = |pi: usize| y_of(pur_pos[pi], a.purposes.len());
    // Where the k-th of n lines meets a box's edge.
    let port = |top: f64, k: usize, n: usize| top + BOX_H * (k as f64 + 1.0) / (n as f64 + 1.0);
    // The rank of `me` among `all`, ordered by the y of the other end.
    let rank = |all: Vec<(usize, f64)>, me: usize| -> (usize, usize) {
        let mut sorted = all;
        sorted.sort_by(|x, y| x.1.total_cmp(&y.1).then(x.0.cmp(&y.0)));
        (sorted.iter().position(|(i, _)| *i == me).unwrap_or(0), sorted.len())
    };

    let mut s = String::new();
    let _ = write!(
        s,
        "<svg viewBox=\"0 0 {WIDTH} {height}\" width=\"100%\" role=\"img\" aria-labelledby=\"flows-title\">\n<title id=\"flows-title\">{}</title>\n",
        esc(l.t("Data flows from sensors to purposes", "Gegevensstromen van sensoren naar doelen"))
    );
    s.push_str("<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#57606a\"/></marker></defs>\n");
    for (x, w, text) in [
        (LEFT_X, LEFT_W, l.t("Sensors", "Sensoren")),
        (MID_X, MID_W, l.t("What they may pass on", "Wat ze mogen doorgeven")),
        (RIGHT_X, RIGHT_W, l.t("Purposes", "Doelen")),
    ] {
        let _ = writeln!(s, "<text x=\"{}\" y=\"22\" class=\"col\" text-anchor=\"middle\">{}</text>", x + w / 2.0, esc(text));
    }

    // Lines first, boxes on top.
    for &(si, ri) in &in_edges {
        let (k, n) = rank(in_edges.iter().filter(|(s, _)| *s == si).map(|(_, r)| (*r, rule_y(*r))).collect(), ri);
        let y1 = port(src_y(si), k, n);
        let (k, n) = rank(in_edges.iter().filter(|(_, r)| *r == ri).map(|(s, _)| (*s, src_y(*s))).collect(), si);
        let y2 = port(rule_y(ri), k, n);
        let _ = writeln!(s, "<path d=\"{}\" class=\"flow\"/>", curve(LEFT_X + LEFT_W, y1, MID_X, y2));
    }
    for &(ri, pi) in &out_edges {
        let (k, n) = rank(out_edges.iter().filter(|(r, _)| *r == ri).map(|(_, p)| (*p, pur_y(*p))).collect(), pi);
        let y1 = port(rule_y(ri), k, n);
        let (k, n) = rank(out_edges.iter().filter(|(_, p)| *p == pi).map(|(r, _)| (*r, rule_y(*r))).collect(), ri);
        let y2 = port(pur_y(pi), k, n);
        let _ = writeln!(s, "<path d=\"{}\" class=\"flow\" stroke=\"{}\" marker-end=\"url(#arrow)\"/>", curve(MID_X + MID_W, y1, RIGHT_X - 1.0, y2), colour(pi));
    }
    for (si, src) in sources.iter().enumerate() {
        let name = match src {
            Some(s) => source_name(s, l),
            None => any_sensor(a, l).to_string(),
        };
        boxed(&mut s, LEFT_X, src_y(si), LEFT_W, "src", "#f6f8fa", &name, src.as_deref().unwrap_or(""));
    }
    for (ri, r) in a.rules.iter().enumerate() {
        let who = match r.subject_id {
            Some(FieldOp::Keep) => l.t("with your employee number", "met je personeelsnummer"),
            Some(FieldOp::Pseudonymise) => l.t("you as a code", "jij als code"),
            _ => l.t("without who you are", "zonder wie je bent"),
        };
        let second = format!("{who} · {}", when_short(a, r, l));
        boxed(&mut s, MID_X, rule_y(ri), MID_W, "data", "#ffffff", &capital(&categories(r, l)), &second);
    }
    for (pi, p) in a.purposes.iter().enumerate() {
        boxed(&mut s, RIGHT_X, pur_y(pi), RIGHT_W, "purpose", colour_light(pi), &purpose_title(&p.name), identity(a, pi, l).1);
        let _ = writeln!(s, "<rect x=\"{RIGHT_X}\" y=\"{:.1}\" width=\"6\" height=\"{BOX_H}\" rx=\"3\" fill=\"{}\" class=\"bar\"/>", pur_y(pi), colour(pi));
    }
    s.push_str("</svg>");
    s
}

#[allow(clippy::too_many_arguments)]
fn boxed(s: &mut String, x: f64, y: f64, w: f64, class: &str, fill: &str, line1: &str, line2: &str) {
    // About 7 px per character at 13 px, 6.2 at 11 px.
    let fit = |text: &str, px: f64| -> String {
        let max = ((w - 20.0) / px) as usize;
        if text.chars().count() <= max {
            text.to_string()
        } else {
            format!("{}…", text.chars().take(max.saturating_sub(1)).collect::<String>().trim_end())
        }
    };
    let _ = writeln!(s, "<g class=\"{class}\"><rect x=\"{x}\" y=\"{y:.1}\" width=\"{w}\" height=\"{BOX_H}\" rx=\"8\" fill=\"{fill}\"/>");
    if line2.is_empty() {
        let _ = writeln!(s, "<text x=\"{}\" y=\"{:.1}\" class=\"l1\">{}</text></g>", x + 14.0, y + 30.0, esc(&fit(line1, 8.0)));
    } else {
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{:.1}\" class=\"l1\">{}</text><text x=\"{}\" y=\"{:.1}\" class=\"l2\">{}</text></g>",
            x + 14.0,
            y + 21.0,
            esc(&fit(line1, 8.0)),
            x + 14.0,
            y + 38.0,
            esc(&fit(line2, 6.6))
        );
    }
}

fn curve(x1: f64, y1: f64, x2: f64, y2: f64) -> String {
    let mid = (x1 + x2) / 2.0;
    format!("M{x1:.1},{y1:.1} C{mid:.1},{y1:.1} {mid:.1},{y2:.1} {x2:.1},{y2:.1}")
}

// ---------------------------------------------------------------------------
// Words.

/// The sources the rules name, in rule order; `None` for a rule that matches any.
fn sources(a: &Agreement) -> Vec<Option<String>> {
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
fn any_sensor(a: &Agreement, l: Lang) -> &'static str {
    if a.rules.iter().any(|r| r.sources.is_some()) {
        l.t("Any other sensor", "Elke andere sensor")
    } else {
        l.t("Any sensor", "Elke sensor")
    }
}

fn source_name(source: &str, l: Lang) -> String {
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

fn category_name(category: &str, l: Lang) -> String {
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

fn prohibited_reason(category: &str, l: Lang) -> String {
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

fn field_name(path: &str, l: Lang) -> Option<&'static str> {
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
fn fields_html(r: &Rule, l: Lang) -> String {
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
    for (path, op) in paths {
        let name = match field_name(&path, l) {
            Some(n) => format!("{} <code>{}</code>", esc(n), esc(&path)),
            None => format!("<code>{}</code>", esc(&path)),
        };
        let form = form(&path, op, l);
        items.push(if form.is_empty() { name } else { format!("{name} {}", esc(&form)) });
    }
    if r.occurred_at.is_none() {
        items.push(esc(l.t("the exact time", "het precieze tijdstip")));
    }
    format!("<ul class=\"fields\"><li>{}</li></ul>", items.join("</li><li>"))
}

/// How a field is passed on: `` (as recorded), `as a code`, `rounded to 3 decimals (about 110 m)`.
fn form(path: &str, op: FieldOp, l: Lang) -> String {
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

fn round_nice(m: f64) -> String {
    let digits = 10f64.powi(m.log10().floor() as i32);
    format!("{}", (m / digits).round() * digits)
}

fn duration(secs: i64, l: Lang) -> String {
    let (n, en, nl) = match secs {
        s if s % 86400 == 0 => (s / 86400, "days", "dagen"),
        s if s % 3600 == 0 => (s / 3600, "hours", "uur"),
        s if s % 60 == 0 => (s / 60, "minutes", "minuten"),
        s => (s, "seconds", "seconden"),
    };
    format!("{n} {}", l.t(en, nl))
}

/// `location`, `alarms`, `any data`.
fn categories(r: &Rule, l: Lang) -> String {
    match &r.categories {
        Some(list) => {
            let names: Vec<String> = list.iter().map(|c| category_name(c, l)).collect();
            and_list(&names, l.t("or", "of"))
        }
        None => l.t("any data", "alle gegevens").to_string(),
    }
}

/// `location from location trackers`.
fn flow(r: &Rule, l: Lang) -> String {
    let from = match &r.sources {
        Some(list) => and_list(&list.iter().map(|s| source_name(s, l).to_lowercase()).collect::<Vec<_>>(), l.t("and", "en")),
        None => l.t("any sensor", "elke sensor").to_string(),
    };
    format!("{} {} {from}", capital(&categories(r, l)), l.t("from", "van"))
}

fn when(a: &Agreement, r: &Rule, l: Lang) -> String {
    match r.during {
        None => l.t("at any time", "op elk moment").to_string(),
        Some(i) => describe_schedule(&a.schedules[i], l),
    }
}

fn when_short(a: &Agreement, r: &Rule, l: Lang) -> String {
    match r.during {
        None => l.t("any time", "altijd").to_string(),
        Some(i) => {
            let s = &a.schedules[i];
            format!("{} {}–{}", days_short(s, l), hhmm(s.from), hhmm(s.until))
        }
    }
}

const DAYS_EN: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
const DAYS_NL: [&str; 7] = ["maandag", "dinsdag", "woensdag", "donderdag", "vrijdag", "zaterdag", "zondag"];

fn describe_schedule(s: &Schedule, l: Lang) -> String {
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

fn days_short(s: &Schedule, l: Lang) -> String {
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
fn runs(days: &[bool; 7]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for d in (0..7).filter(|d| days[*d]) {
        match out.last_mut() {
            Some((_, end)) if *end + 1 == d => *end = d,
            _ => out.push((d, d)),
        }
    }
    out
}


fn date(t: DateTime<Utc>, l: Lang) -> String {
    const EN: [&str; 12] = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
    const NL: [&str; 12] = ["januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus", "september", "oktober", "november", "december"];
    let month = match l {
        Lang::En => EN,
        Lang::Nl => NL,
    }[t.month0() as usize];
    format!("{} {month} {}", t.day(), t.year())
}

/// `it_security` -> `IT security`; `payroll` -> `Payroll`.
fn purpose_title(name: &str) -> String {
    let words: Vec<String> = name.split(['_', '-']).filter(|w| !w.is_empty()).map(|w| if w.len() == 2 { w.to_uppercase() } else { w.to_string() }).collect();
    capital(&words.join(" "))
}

fn capital(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map(|f| f.to_uppercase().collect::<String>() + chars.as_str()).unwrap_or_default()
}

const PALETTE: [&str; 8] = ["#1f6feb", "#b35900", "#1a7f37", "#8250df", "#cf222e", "#0a7c86", "#9a6700", "#6e7781"];
const PALETTE_LIGHT: [&str; 8] = ["#e7f0fd", "#fbeee2", "#e6f4ea", "#f1eafc", "#fbe9ea", "#e2f3f4", "#f8f0dc", "#eef0f2"];

fn colour(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

fn colour_light(i: usize) -> &'static str {
    PALETTE_LIGHT[i % PALETTE_LIGHT.len()]
}

/// HTML-escapes text (also for attribute values).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = r#"
:root { color-scheme: light; --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; background: #fff; color: var(--ink); font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", sans-serif; }
main { max-width: 960px; margin: 0 auto; padding: 32px 24px 48px; }
header { border-bottom: 1px solid var(--line); padding-bottom: 16px; margin-bottom: 8px; }
.kicker { color: var(--muted); font-size: 14px; margin: 0 0 4px; text-transform: uppercase; letter-spacing: .04em; }
h1 { font-size: 30px; line-height: 1.2; margin: 0 0 12px; }
.lead { font-size: 18px; margin: 0; }
h2 { font-size: 22px; margin: 36px 0 12px; padding-top: 8px; }
h3 { font-size: 18px; margin: 20px 0 8px; }
code { font: 13px/1.4 ui-monospace, "DejaVu Sans Mono", monospace; background: var(--soft); border: 1px solid var(--line); border-radius: 4px; padding: 0 4px; color: var(--muted); }
h3 code { font-weight: normal; }
figure { margin: 0; }
figcaption { color: var(--muted); font-size: 14px; margin-top: 4px; }
svg { display: block; max-width: 100%; height: auto; font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", sans-serif; }
svg .col { font-size: 13px; font-weight: 600; fill: var(--muted); text-transform: uppercase; letter-spacing: .05em; }
svg rect { stroke: #8c959f; stroke-width: 1; }
svg .purpose rect, svg .bar { stroke: none; }
svg .l1 { font-size: 13.5px; font-weight: 600; fill: var(--ink); }
svg .l2 { font-size: 11.5px; fill: var(--muted); }
svg .flow { fill: none; stroke: #8c959f; stroke-width: 1.6; opacity: .85; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(340px, 1fr)); gap: 16px; }
.card { border: 1px solid var(--line); border-top: 6px solid; border-radius: 8px; padding: 4px 16px 12px; background: #fff; }
.card h3 { margin-top: 12px; }
.card p { margin: 6px 0; }
.card ul { margin: 8px 0 0; padding-left: 20px; }
.who { font-weight: 600; }
.when { color: var(--muted); }
table { width: 100%; border-collapse: collapse; font-size: 15px; margin-bottom: 8px; }
th, td { text-align: left; vertical-align: top; padding: 8px 10px; border-bottom: 1px solid var(--line); }
th { background: var(--soft); font-size: 13px; text-transform: uppercase; letter-spacing: .03em; color: var(--muted); }
td:first-child { width: 18%; font-weight: 600; }
td:nth-child(3) { width: 16%; }
td:last-child { width: 22%; }
ul.fields { margin: 0; padding-left: 18px; }
.tag { display: inline-block; color: #fff; border-radius: 999px; padding: 1px 10px; font-size: 13px; font-weight: 600; margin: 0 4px 4px 0; }
ul.never { list-style: none; padding: 0; display: grid; grid-template-columns: repeat(auto-fit, minmax(280px, 1fr)); gap: 10px; }
ul.never li { border: 1px solid #f0c2c2; background: #fff6f6; border-left: 6px solid #cf222e; border-radius: 6px; padding: 8px 12px; font-size: 15px; }
.small { font-size: 13px; color: var(--muted); }
.special { border: 1px solid var(--line); border-radius: 8px; padding: 4px 16px 8px; margin-bottom: 12px; background: var(--soft); }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0 0 8px; }
dt { font-weight: 600; }
dd { margin: 0; }
ul.parties { font-size: 18px; font-weight: 600; }
footer { margin-top: 40px; padding-top: 12px; border-top: 1px solid var(--line); color: var(--muted); font-size: 13px; overflow-wrap: anywhere; }
@media print { main { max-width: none; padding: 0; } h2 { break-after: avoid; } table, .card, .special { break-inside: avoid; } }
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_read_as_ranges() {
        assert_eq!(runs(&[true, true, true, true, true, false, true]), vec![(0, 4), (6, 6)]);
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc("<b a=\"x\">&'"), "&lt;b a=&quot;x&quot;&gt;&amp;&#39;");
    }

    #[test]
    fn purpose_names_read_as_titles() {
        assert_eq!(purpose_title("it_security"), "IT security");
        assert_eq!(purpose_title("payroll"), "Payroll");
    }

    #[test]
    fn rounding_of_coordinates_is_shown_in_metres() {
        assert_eq!(form("attributes.lat", FieldOp::Round(3), Lang::En), "rounded to 3 decimals (about 100 m)");
        assert_eq!(form("attributes.speed", FieldOp::Bucket(5.0), Lang::Nl), "in stappen van 5");
    }
}
