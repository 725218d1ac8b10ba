//! The `Date` header (RFC 9110 §6.6.1) in IMF-fixdate form (RFC 9110
//! §5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`, always 29 bytes.

/// Length of an IMF-fixdate.
pub const DATE_LEN: usize = 29;

/// `unix_secs` (seconds since 1970-01-01T00:00:00Z) as an IMF-fixdate.
pub fn imf_fixdate(unix_secs: u64) -> [u8; DATE_LEN] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = unix_secs / 86_400;
    let secs_of_day = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let weekday = DAYS.get((days % 7) as usize).copied().unwrap_or(b"Thu");
    let month_name = MONTHS
        .get(month.saturating_sub(1) as usize)
        .copied()
        .unwrap_or(b"Jan");
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    let two = |n: u64| [b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8];
    let fields: [(usize, &[u8]); 8] = [
        (0, weekday),
        (5, &two(day)),
        (8, month_name),
        (12, &two(year / 100)),
        (14, &two(year % 100)),
        (17, &two(secs_of_day / 3600)),
        (20, &two(secs_of_day / 60 % 60)),
        (23, &two(secs_of_day % 60)),
    ];
    for (at, bytes) in fields {
        if let Some(dst) = out.get_mut(at..at + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    }
    out
}

/// Year, month (1–12) and day (1–31) of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`, for days ≥ 0).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> String {
        String::from_utf8(imf_fixdate(secs).to_vec()).unwrap()
    }

    #[test]
    fn formats_known_dates() {
        assert_eq!(s(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        // RFC 9110 §5.6.7's example.
        assert_eq!(s(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        // A leap day and the end of a leap year.
        assert_eq!(s(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(s(1_735_689_599), "Tue, 31 Dec 2024 23:59:59 GMT");
        assert_eq!(s(4_102_444_800), "Fri, 01 Jan 2100 00:00:00 GMT");
    }
}
