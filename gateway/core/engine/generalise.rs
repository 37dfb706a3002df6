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
    // Split off the fraction, drop its trailing zeros, then the spare leading zero.
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

/// Seconds since the epoch down to a multiple of `step` seconds.
pub fn truncate(secs: i64, step: i64) -> i64 {
    secs.div_euclid(step) * step
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
