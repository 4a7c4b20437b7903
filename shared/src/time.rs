//! RFC 3339 time stamps as the log carries them, read back as milliseconds since the Unix epoch.
//!
//! Log entries carry their time as text (`2025-03-01T12:00:00.123Z`, stamped by the member that
//! accepted the request). Rules that compare times at apply time (a join token's expiry) need them
//! as numbers; text comparison is wrong as soon as one stamp has fractional seconds and the other
//! has not. Pure: no clock is read here.

/// Milliseconds since 1970-01-01T00:00:00Z of a UTC RFC 3339 time stamp
/// (`YYYY-MM-DDTHH:MM:SS[.fraction]Z`); `None` for anything else (offsets other than `Z` included).
pub fn parse_rfc3339_ms(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u64> {
        let part = text.get(range)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let rest = text.get(19..)?;
    let millis = match rest.strip_prefix('.') {
        Some(frac) => {
            let digits = frac.strip_suffix(['Z', 'z'])?;
            if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let padded = format!("{digits:0<3}");
            padded.get(..3)?.parse::<u64>().ok()?
        }
        None if rest == "Z" || rest == "z" => 0,
        None => return None,
    };
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 || year < 1970 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}

// `u64::is_multiple_of` needs Rust 1.87; the workspace supports 1.80.
#[allow(clippy::manual_is_multiple_of)]
fn is_leap(year: u64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given date (year ≥ 1970).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let mut days = 0;
    for y in 1970..year {
        days += if is_leap(y) { 366 } else { 365 };
    }
    for m in 1..month {
        days += days_in_month(year, m);
    }
    days + day - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utc_stamps_with_and_without_fractions() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(parse_rfc3339_ms("2000-03-01T00:00:00.000Z"), Some(951_868_800_000));
        assert_eq!(parse_rfc3339_ms("2025-03-01T12:00:00Z"), Some(1_740_830_400_000));
        assert_eq!(parse_rfc3339_ms("2025-03-01T12:00:00.123456789Z"), Some(1_740_830_400_123));
        let with = parse_rfc3339_ms("2025-03-01T12:00:00.500Z").expect("parses");
        let without = parse_rfc3339_ms("2025-03-01T12:00:00Z").expect("parses");
        assert!(with > without, "text order would say the opposite");
    }

    #[test]
    fn refuses_anything_else() {
        for bad in [
            "",
            "2025-03-01",
            "2025-03-01T12:00:00",
            "2025-03-01T12:00:00+01:00",
            "2025-02-30T12:00:00Z",
            "2025-13-01T12:00:00Z",
            "2025-03-01T24:00:00Z",
            "2025-03-01T12:00:00.Z",
            "2025-03-01T12:00:00.12aZ",
            "1969-12-31T23:59:59Z",
            "+025-03-01T12:00:00Z",
            "２025-03-01T12:00:00Z",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }
}
