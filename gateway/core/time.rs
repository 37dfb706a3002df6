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
