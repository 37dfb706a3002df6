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

use chrono::{Duration, Timelike};

use crate::agreement::taxonomy::{Class, PROHIBITED};
use crate::agreement::{Agreement, Domain, FieldOp, Rotate, Rule};

mod diagram;
mod style;
mod words;

use diagram::diagram;
pub use style::esc;
pub use words::category_name;
use style::{colour, CSS};
use words::*;

use super::and_list;

/// The page's language.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    En,
    Nl,
}

impl Lang {
    /// The English or the Dutch text (also for the audit report).
    pub fn t<'a>(self, en: &'a str, nl: &'a str) -> &'a str {
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
    h.push_str(&crate::dpo::instruments::section(a, l));
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

    /// Issue 10: the page never promises a coarsening that a kept object can bypass; it
    /// says what is kept whole, in both languages, and nothing else is said to be.
    #[test]
    fn issue_10_the_page_says_what_is_kept_whole() {
        let text = "agreement: { id: t, version: 1, parties: [a, b] }\npurposes:\n  safety: { description: d, topic: t.s }\nrules:\n  - name: r\n    purposes: [safety]\n    pseudonymise: [subject_id, attributes.pos.owner]\n    keep: [attributes.pos, attributes.zone]\n    generalise:\n      attributes.pos.lat: { round: 3 }\n";
        let a = crate::agreement::Agreement::parse(text.as_bytes()).unwrap_or_else(|d| panic!("{d:#?}")).agreement;
        for (lang, words) in [(Lang::En, "kept whole"), (Lang::Nl, "helemaal doorgegeven")] {
            let page = render(&a, lang);
            assert_eq!(page.matches(words).count(), 1, "{lang:?}: only `pos` is kept whole");
            let at = page.find(words).unwrap();
            let item = &page[page[..at].rfind("<li>").unwrap()..at];
            assert!(item.contains("<code>pos</code>") && !item.contains("zone"), "{item}");
        }
    }

    #[test]
    fn rounding_of_coordinates_is_shown_in_metres() {
        assert_eq!(form("attributes.lat", FieldOp::Round(3), Lang::En), "rounded to 3 decimals (about 100 m)");
        assert_eq!(form("attributes.speed", FieldOp::Bucket(5.0), Lang::Nl), "in stappen van 5");
    }
}
