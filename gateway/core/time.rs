//! Dates as outputs and pseudonym domains write them: digits straight into a buffer
//! the caller owns, without the formatting machinery (hot path).

use std::io::Write as _;

/// `YYYY-MM` or `YYYY-MM-DD`, without the formatting machinery (hot path).
pub fn write_date(year: i32, month: u32, day: Option<u32>, out: &mut Vec<u8>) {
    write_year(year, out);
    out.push(b'-');
    two_digits(month, out);
    if let Some(day) = day {
        out.push(b'-');
        two_digits(day, out);
    }
}

pub fn write_year(year: i32, out: &mut Vec<u8>) {
    if (0..=9999).contains(&year) {
        let y = year as u32;
        two_digits(y / 100, out);
        two_digits(y % 100, out);
    } else {
        let _ = write!(out, "{year:04}");
    }
}

pub fn two_digits(n: u32, out: &mut Vec<u8>) {
    out.push(b'0' + (n / 10 % 10) as u8);
    out.push(b'0' + (n % 10) as u8);
}

/// Accord's one duration grammar, for the agreement (`truncate: 5m`) and the gateway
/// configuration (`commit_interval: 500ms`) alike: a whole number followed at once by
/// a unit, `ms`, `s`, `m`, `h` or `d` (`500ms`, `30s`, `5m`, `1h`, `1d`). Zero, signs,
/// fractions, spaces and other units are refused; each caller bounds the range it takes.
pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit()).filter(|&i| i > 0)?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let ms: u64 = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    let d = std::time::Duration::from_millis(n.checked_mul(ms)?);
    (!d.is_zero()).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn one_grammar_for_every_duration() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1d"), Some(Duration::from_secs(86_400)));
        for bad in ["", "5", "s", "0s", "0ms", "-5s", "+5s", "1.5s", "5 s", " 5s", "5sec", "5M", "99999999999999999999d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn every_unit_scales_its_number(n in 1u64..1_000_000, unit in 0usize..5) {
            let (text, ms) = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)][unit];
            proptest::prop_assert_eq!(parse_duration(&format!("{n}{text}")), Some(Duration::from_millis(n * ms)));
        }
    }
}
