//! Generalisation of SPEC 2.4: rounding and bucketing numbers, truncating times.
//!
//! Rounding works on the shortest decimal form of the number (what the sensor sent
//! and what a DPO reads), so 1.005 rounds to 1.01, half away from zero, as written.

use chrono::{DateTime, Datelike, Timelike, Utc};

use crate::time::{two_digits, write_date};

/// `x` rounded to `decimals` places, half away from zero, on its decimal digits.
pub fn round(x: f64, decimals: u32) -> f64 {
    if !x.is_finite() {
        return x;
    }
    let mut buf = ryu::Buffer::new();
    let text = buf.format_finite(x.abs());
    if text.contains('e') {
        return fallback_round(x, decimals);
    }
    let Some((int, frac)) = text.split_once('.') else { return x };
    if frac.len() <= decimals as usize {
        return x;
    }
    // The kept digits as one integer, then one step up if the next digit is 5 or more.
    let mut digits: u64 = 0;
    for b in int.bytes().chain(frac.bytes().take(decimals as usize)) {
        let Some(d) = digits.checked_mul(10).and_then(|d| d.checked_add(u64::from(b - b'0'))) else {
            return fallback_round(x, decimals);
        };
        digits = d;
    }
    if frac.as_bytes()[decimals as usize] >= b'5' {
        digits += 1;
    }
    if digits >= 1 << 53 {
        return fallback_round(x, decimals);
    }
    // Both exact, and IEEE division rounds correctly: the nearest double to the decimal.
    let rounded = digits as f64 / 10f64.powi(decimals as i32);
    rounded.copysign(x)
}

/// Rounds a JSON number as written (`-?int(.frac)?`), on its digits, into `out`:
/// the same value as [`round`] without a float in between. False (nothing written)
/// for a number with an exponent, which [`round`] handles.
pub fn round_text(text: &str, decimals: u32, out: &mut Vec<u8>) -> bool {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if digits.bytes().any(|b| !(b.is_ascii_digit() || b == b'.')) {
        return false;
    }
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() || frac.len() <= decimals as usize {
        out.extend_from_slice(text.as_bytes());
        return true;
    }
    let keep = decimals as usize;
    let start = out.len();
    if negative {
        out.push(b'-');
    }
    let first = out.len();
    // One leading zero gives a carry room to grow ("9.96" -> "10.0").
    out.push(b'0');
    out.extend_from_slice(int.as_bytes());
    out.extend_from_slice(&frac.as_bytes()[..keep]);
    if frac.as_bytes()[keep] >= b'5' {
        let mut i = out.len();
        loop {
            i -= 1;
            if out[i] == b'9' {
                out[i] = b'0';
            } else {
                out[i] += 1;
                break;
            }
        }
    }
    // In place: drop the fraction's trailing zeros (one stays), the spare leading
    // zeros of the integer (one stays), and put the point between them.
    let int_end = out.len() - keep;
    let mut frac_end = out.len();
    while frac_end > int_end && out[frac_end - 1] == b'0' {
        frac_end -= 1;
    }
    let lead = out[first..int_end].iter().position(|d| *d != b'0').map_or(int_end - 1, |i| first + i);
    out.copy_within(lead..int_end, first);
    let point = first + (int_end - lead);
    if frac_end == int_end {
        out.truncate(point);
        out.extend_from_slice(b".0");
    } else {
        // The fraction moves right by at most one (the point), never past the end.
        out.push(0);
        out.copy_within(int_end..frac_end, point + 1);
        out[point] = b'.';
        out.truncate(point + 1 + (frac_end - int_end));
    }
    debug_assert!(out.len() > start);
    true
}

fn fallback_round(x: f64, decimals: u32) -> f64 {
    let m = 10f64.powi(decimals as i32);
    let r = (x * m).round() / m;
    if r.is_finite() {
        r
    } else {
        x
    }
}

/// `x` down to a multiple of `width`, cleaned to the decimals the width has.
pub fn bucket(x: f64, width: f64) -> f64 {
    let down = (x / width).floor() * width;
    let mut buf = ryu::Buffer::new();
    let w = buf.format_finite(width);
    match w.split_once('.') {
        Some((_, frac)) if !w.contains('e') && frac != "0" => round(down, frac.len() as u32),
        _ => down.round(),
    }
}

/// An integer down to a multiple of an integral width.
pub fn bucket_int(x: i64, width: i64) -> i64 {
    x.div_euclid(width) * width
}

/// A JSON number as written, as an exact decimal: `mantissa * 10^-scale`. `None` for
/// what is not a number, or too long to hold exactly.
pub fn decimal(text: &str) -> Option<(i128, u32)> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let (number, exp) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i32>().ok()?),
        None => (rest, 0),
    };
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut m: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        m = m.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
    }
    let mut scale = frac.len() as i64 - i64::from(exp);
    if scale < 0 {
        m = m.checked_mul(10i128.checked_pow(u32::try_from(-scale).ok()?)?)?;
        scale = 0;
    }
    let scale = u32::try_from(scale).ok().filter(|s| *s <= 38)?;
    Some((if negative { -m } else { m }, scale))
}

/// Writes `mantissa * 10^-scale` as a JSON number; `fraction` keeps at least one
/// fractional digit (`20.0`), as a number written with a fraction is.
fn write_decimal(m: i128, scale: u32, fraction: bool, out: &mut Vec<u8>) {
    let mut b = itoa::Buffer::new();
    let digits = b.format(m.unsigned_abs()).as_bytes();
    if m < 0 {
        out.push(b'-');
    }
    let scale = scale as usize;
    // The integer's digits, then the fraction's: zeros up to the scale, then the
    // rest of the digits, without the trailing zeros.
    let split = digits.len().saturating_sub(scale);
    if split > 0 {
        out.extend_from_slice(&digits[..split]);
    } else {
        out.push(b'0');
    }
    let frac = &digits[split..];
    let frac = &frac[..frac.iter().rposition(|&d| d != b'0').map_or(0, |i| i + 1)];
    if !frac.is_empty() {
        out.push(b'.');
        out.extend(std::iter::repeat_n(b'0', scale - (digits.len() - split)));
        out.extend_from_slice(frac);
    } else if fraction {
        out.extend_from_slice(b".0");
    }
}

/// SPEC 2.4's `bucket`: the number as written, down to a multiple of `width`, on the
/// decimal values (`0.7` by `0.1` stays `0.7`). False, having written nothing, when
/// the result cannot be held exactly: an integer outside 64 bits, a decimal outside
/// 38 digits. It never wraps.
pub fn bucket_text(text: &str, width: f64, out: &mut Vec<u8>) -> bool {
    let (Some((x, p)), Some((wm, q))) = (decimal(text), width_decimal(width)) else { return false };
    let scale = p.max(q);
    let up = |m: i128, from: u32| 10i128.checked_pow(scale - from).and_then(|f| m.checked_mul(f));
    let (Some(x), Some(wm)) = (up(x, p), up(wm, q)) else { return false };
    // Most values and widths fit in 64 bits, where division is cheap.
    let small = match (i64::try_from(x), i64::try_from(wm)) {
        (Ok(x), Ok(wm)) => x.div_euclid(wm).checked_mul(wm).map(i128::from),
        _ => None,
    };
    let Some(r) = small.or_else(|| x.div_euclid(wm).checked_mul(wm)) else { return false };
    let integer = is_plain_integer(text);
    if integer && scale == 0 {
        let Ok(r) = i64::try_from(r) else { return false };
        let mut b = itoa::Buffer::new();
        out.extend_from_slice(b.format(r).as_bytes());
        return true;
    }
    write_decimal(r, scale, true, out);
    true
}

/// A bucket's width as the decimal it is written as (its shortest round-trip form),
/// without trailing zeros (`5.0` is 5, not 50 tenths); `None` unless positive. An
/// integer below 2^53 is its own shortest form.
fn width_decimal(width: f64) -> Option<(i128, u32)> {
    if width > 0.0 && width.fract() == 0.0 && width < 9_007_199_254_740_992.0 {
        return Some((width as i128, 0));
    }
    let mut w = ryu::Buffer::new();
    let (mut wm, mut q) = decimal(w.format_finite(width))?;
    if wm <= 0 {
        return None;
    }
    while q > 0 && wm % 10 == 0 {
        wm /= 10;
        q -= 1;
    }
    Some((wm, q))
}

/// SPEC 2.4's `round` for any JSON number, exponents included: on the decimal value.
pub fn round_any(text: &str, decimals: u32, out: &mut Vec<u8>) -> bool {
    if round_text(text, decimals, out) {
        return true;
    }
    let Some((m, scale)) = decimal(text) else { return false };
    let mut plain = Vec::new();
    write_decimal(m, scale, false, &mut plain);
    round_text(std::str::from_utf8(&plain).unwrap_or("x"), decimals, out)
}

fn is_plain_integer(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Seconds since the epoch down to a multiple of `step` seconds.
pub fn truncate(secs: i64, step: i64) -> i64 {
    secs.div_euclid(step) * step
}

/// The first and last second of the years 0000 to 9999 (UTC), the only years an
/// output time is written in (SPEC 2.4).
pub const FIRST_SECOND: i64 = -62_167_219_200;
pub const LAST_SECOND: i64 = 253_402_300_799;

/// Can this second be written as RFC 3339 with a four-digit year?
pub fn utc_fits(secs: i64) -> bool {
    (FIRST_SECOND..=LAST_SECOND).contains(&secs)
}

/// Writes `"YYYY-MM-DDTHH:MM:SSZ"` (quoted) for seconds since the epoch.
pub fn write_utc(secs: i64, out: &mut Vec<u8>) {
    let at = DateTime::<Utc>::from_timestamp(secs, 0).unwrap_or_default();
    out.push(b'"');
    write_date(at.year(), at.month(), Some(at.day()), out);
    out.push(b'T');
    for (i, n) in [at.hour(), at.minute(), at.second()].into_iter().enumerate() {
        if i > 0 {
            out.push(b':');
        }
        two_digits(n, out);
    }
    out.extend_from_slice(b"Z\"");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_half_away_from_zero_on_the_written_digits() {
        assert_eq!(round(52.091_234, 3), 52.091);
        assert_eq!(round(1.005, 2), 1.01);
        assert_eq!(round(-1.005, 2), -1.01);
        assert_eq!(round(2.5, 0), 3.0);
        assert_eq!(round(-2.5, 0), -3.0);
        assert_eq!(round(0.125, 2), 0.13);
        assert_eq!(round(5.1, 3), 5.1);
        assert_eq!(round(1e-10, 3), 0.0);
        assert_eq!(round(123456.0, 0), 123456.0);
    }

    /// Rounding the written digits gives what rounding the number gives.
    #[test]
    fn rounding_the_text_agrees_with_rounding_the_number() {
        let cases = ["52.0912345", "1.005", "-1.005", "2.5", "-2.5", "0.125", "5.1", "9.96", "99.999", "-0.0004", "123456", "0.5", "5.1000"];
        for text in cases {
            for d in 0..4 {
                let mut out = Vec::new();
                assert!(round_text(text, d, &mut out));
                let got: f64 = std::str::from_utf8(&out).unwrap().parse().unwrap();
                assert_eq!(got, round(text.parse().unwrap(), d), "{text} to {d}: {}", String::from_utf8_lossy(&out));
            }
        }
        let mut out = Vec::new();
        assert!(!round_text("1e-7", 3, &mut out));
        assert!(out.is_empty());
        round_text("9.96", 1, &mut out);
        assert_eq!(out, b"10.0");
    }

    #[test]
    fn buckets_go_down_to_a_multiple() {
        assert_eq!(bucket(23.7, 5.0), 20.0);
        assert_eq!(bucket(-0.5, 5.0), -5.0);
        assert_eq!(bucket(2.37, 0.1), 2.3);
        assert_eq!(bucket_int(17, 5), 15);
        assert_eq!(bucket_int(-1, 5), -5);
    }

    /// The end of `round_text` as first written, through two vectors: the oracle of
    /// the one that works in place.
    fn round_text_by_vectors(text: &str, decimals: u32, out: &mut Vec<u8>) -> bool {
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if digits.bytes().any(|b| !(b.is_ascii_digit() || b == b'.')) {
            return false;
        }
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if int.is_empty() || frac.len() <= decimals as usize {
            out.extend_from_slice(text.as_bytes());
            return true;
        }
        let keep = decimals as usize;
        if negative {
            out.push(b'-');
        }
        let first = out.len();
        out.push(b'0');
        out.extend_from_slice(int.as_bytes());
        out.extend_from_slice(&frac.as_bytes()[..keep]);
        if frac.as_bytes()[keep] >= b'5' {
            let mut i = out.len();
            loop {
                i -= 1;
                if out[i] == b'9' {
                    out[i] = b'0';
                } else {
                    out[i] += 1;
                    break;
                }
            }
        }
        let mut fraction: Vec<u8> = out.split_off(out.len() - keep);
        while fraction.last() == Some(&b'0') {
            fraction.pop();
        }
        if fraction.is_empty() {
            fraction.push(b'0');
        }
        let int_digits = out.split_off(first);
        let trimmed = match int_digits.iter().position(|d| *d != b'0') {
            Some(i) => &int_digits[i..],
            None => &b"0"[..],
        };
        out.extend_from_slice(trimmed);
        out.push(b'.');
        out.extend_from_slice(&fraction);
        true
    }

    proptest::proptest! {
        #[test]
        fn rounding_in_place_writes_what_the_vectors_wrote(text in "-?(0|[0-9]{1,6})(\\.[0-9]{0,8})?", decimals in 0u32..6, prefix in "[a-z]{0,3}") {
            let (mut a, mut b) = (prefix.clone().into_bytes(), prefix.into_bytes());
            proptest::prop_assert_eq!(round_text(&text, decimals, &mut a), round_text_by_vectors(&text, decimals, &mut b));
            proptest::prop_assert_eq!(&a, &b, "{} to {}", text, decimals);
        }
    }

    /// `write_decimal` as first written, through strings: the oracle of the one
    /// that writes in place.
    fn write_decimal_by_strings(m: i128, scale: u32, fraction: bool, out: &mut Vec<u8>) {
        let digits = m.unsigned_abs().to_string();
        if m < 0 {
            out.push(b'-');
        }
        let scale = scale as usize;
        let (int, frac) = if digits.len() > scale {
            (digits[..digits.len() - scale].to_string(), digits[digits.len() - scale..].to_string())
        } else {
            ("0".to_string(), format!("{}{digits}", "0".repeat(scale - digits.len())))
        };
        out.extend_from_slice(int.as_bytes());
        let frac = frac.trim_end_matches('0');
        if !frac.is_empty() {
            out.push(b'.');
            out.extend_from_slice(frac.as_bytes());
        } else if fraction {
            out.extend_from_slice(b".0");
        }
    }

    /// The width as the first `bucket_text` read it: always through ryu.
    fn width_by_ryu(width: f64) -> Option<(i128, u32)> {
        let mut w = ryu::Buffer::new();
        let (mut wm, mut q) = decimal(w.format_finite(width))?;
        if wm <= 0 {
            return None;
        }
        while q > 0 && wm % 10 == 0 {
            wm /= 10;
            q -= 1;
        }
        Some((wm, q))
    }

    proptest::proptest! {
        #[test]
        fn decimals_are_written_as_through_strings(m in proptest::prelude::any::<i128>(), small in -100_000i128..100_000, scale in 0u32..40, fraction in proptest::bool::ANY) {
            for m in [m, small, m >> 64] {
                let (mut a, mut b) = (Vec::new(), Vec::new());
                write_decimal(m, scale, fraction, &mut a);
                write_decimal_by_strings(m, scale, fraction, &mut b);
                proptest::prop_assert_eq!(&a, &b, "{} {}", m, scale);
            }
        }

        #[test]
        fn widths_read_as_ryu_writes_them(int in 0u64..(1 << 54), x in proptest::prelude::any::<f64>(), exp in -12i32..20) {
            for w in [int as f64, x, 10f64.powi(exp), (int % 1000) as f64 * 10f64.powi(exp)] {
                if w.is_finite() {
                    proptest::prop_assert_eq!(width_decimal(w), width_by_ryu(w), "{}", w);
                }
            }
        }
    }

    fn bucketed(text: &str, width: f64) -> Option<String> {
        let mut out = Vec::new();
        bucket_text(text, width, &mut out).then(|| String::from_utf8(out).unwrap())
    }

    /// On the decimal value, never wrapping, tiny widths too (issue 10).
    #[test]
    fn issue_10_buckets_on_decimals_and_never_wrap() {
        assert_eq!(bucketed("0.7", 0.1).as_deref(), Some("0.7"));
        assert_eq!(bucketed("-3", 5.0).as_deref(), Some("-5"));
        assert_eq!(bucketed("23.7", 5.0).as_deref(), Some("20.0"));
        assert_eq!(bucketed("27", 10.0).as_deref(), Some("20"));
        assert_eq!(bucketed("2.37", 0.1).as_deref(), Some("2.3"));
        assert_eq!(bucketed("0.000000123456", 1e-9).as_deref(), Some("0.000000123"));
        assert_eq!(bucketed("-0.0000000001", 1e-9).as_deref(), Some("-0.000000001"));
        assert_eq!(bucketed("1.5e3", 100.0).as_deref(), Some("1500.0"));
        assert_eq!(bucketed("9223372036854775807", 10.0).as_deref(), Some("9223372036854775800"));
        // The lowest 64-bit integer has no lower multiple of 10 in 64 bits: removed.
        assert_eq!(bucketed("-9223372036854775808", 10.0), None);
        // Below the lowest 64-bit integer, a decimal still has its multiple.
        assert_eq!(bucketed("-922337203685477580.8", 1.0).as_deref(), Some("-922337203685477581.0"));
        assert_eq!(bucketed("1e400", 5.0), None);
        assert_eq!(bucketed("north", 5.0), None);
    }

    #[test]
    fn issue_10_rounds_numbers_with_exponents_on_their_decimals() {
        let mut out = Vec::new();
        assert!(round_any("1.005e0", 2, &mut out));
        assert_eq!(out, b"1.01");
        out.clear();
        assert!(round_any("-2.5E-1", 1, &mut out));
        assert_eq!(out, b"-0.3");
    }

    #[test]
    fn truncates_since_the_epoch_and_writes_utc() {
        // 2026-03-02T10:07:31Z
        let t = 1_772_446_051;
        assert_eq!(truncate(t, 300) % 300, 0);
        let mut out = Vec::new();
        write_utc(truncate(t, 300), &mut out);
        assert_eq!(out, b"\"2026-03-02T10:05:00Z\"");
        assert_eq!(truncate(-1, 60), -60);
    }
}
