//! The page's look: colours, the stylesheet, and HTML escaping (the one escaping of
//! Accord's pages: the workers' page and the audit report).

pub(super) const PALETTE: [&str; 8] = ["#1f6feb", "#b35900", "#1a7f37", "#8250df", "#cf222e", "#0a7c86", "#9a6700", "#6e7781"];
pub(super) const PALETTE_LIGHT: [&str; 8] = ["#e7f0fd", "#fbeee2", "#e6f4ea", "#f1eafc", "#fbe9ea", "#e2f3f4", "#f8f0dc", "#eef0f2"];

pub(super) fn colour(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

pub(super) fn colour_light(i: usize) -> &'static str {
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

pub(super) const CSS: &str = r#"
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

