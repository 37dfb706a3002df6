//! The page's diagram: sensors on the left, what they send in the middle (one box per
//! rule), purposes on the right, a line for every flow; inline SVG, no script.

use std::fmt::Write as _;

use crate::agreement::{Agreement, FieldOp, Rule};

use super::style::{colour, colour_light, esc};
use super::words::*;
use super::{identity, Lang};


const LEFT_X: f64 = 8.0;
pub(super) const LEFT_W: f64 = 214.0;
pub(super) const MID_X: f64 = 300.0;
pub(super) const MID_W: f64 = 296.0;
pub(super) const RIGHT_X: f64 = 676.0;
pub(super) const RIGHT_W: f64 = 208.0;
pub(super) const WIDTH: f64 = 892.0;
pub(super) const ROW: f64 = 68.0;
pub(super) const BOX_H: f64 = 50.0;
pub(super) const TOP: f64 = 40.0;

pub(super) fn diagram(a: &Agreement, l: Lang) -> String {
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
pub(super) fn boxed(s: &mut String, x: f64, y: f64, w: f64, class: &str, fill: &str, line1: &str, line2: &str) {
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

pub(super) fn curve(x1: f64, y1: f64, x2: f64, y2: f64) -> String {
    let mid = (x1 + x2) / 2.0;
    format!("M{x1:.1},{y1:.1} C{mid:.1},{y1:.1} {mid:.1},{y2:.1} {x2:.1},{y2:.1}")
}

