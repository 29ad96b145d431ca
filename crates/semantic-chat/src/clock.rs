//! `strftime_now` for chat templates: formats a moment in UTC with the common C `strftime`
//! directives, using std only. Reading the clock is the caller's business (see `ChatTemplate`).

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

/// A moment broken down into UTC calendar fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Civil {
    year: i64,
    /// 1..=12
    month: u32,
    /// 1..=31
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    /// 0 = Sunday
    weekday: u32,
    /// 1..=366
    yday: u32,
}

impl Civil {
    fn from_system_time(at: SystemTime) -> Self {
        let secs = match at.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2),
            Err(e) => {
                let d = e.duration();
                let whole = i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2);
                -whole - i64::from(d.subsec_nanos() > 0)
            }
        };
        Self::from_unix(secs)
    }

    /// Howard Hinnant's `civil_from_days`, valid for the whole proleptic Gregorian calendar.
    fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        const CUMULATIVE: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let month_idx = (month - 1) as usize;
        let yday = CUMULATIVE[month_idx] + day + i64::from(leap && month > 2);
        // All fields below are bounded by construction (month 1..=12, day 1..=31, ...).
        let small = |v: i64| u32::try_from(v).unwrap_or(0);
        Civil {
            year,
            month: small(month),
            day: small(day),
            hour: small(rem / 3600),
            minute: small(rem % 3600 / 60),
            second: small(rem % 60),
            weekday: small((days + 4).rem_euclid(7)),
            yday: small(yday),
        }
    }
}

/// Formats `at` (as UTC) like C `strftime`: `%a %A %b %B %h %d %e %j %m %y %Y %H %I %M %S %p %w
/// %u %F %T %D %R %Z %z %n %t %%`, plus the glibc `%-d` form (no padding) for numeric fields.
/// Unknown directives are copied through unchanged, as glibc does.
pub fn strftime(at: SystemTime, format: &str) -> String {
    let t = Civil::from_system_time(at);
    let mut out = String::with_capacity(format.len() + 16);
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let no_pad = chars.next_if_eq(&'-').is_some();
        let Some(spec) = chars.next() else {
            out.push('%');
            if no_pad {
                out.push('-');
            }
            break;
        };
        directive(&mut out, &t, spec, no_pad);
    }
    out
}

/// Writes one `%` directive (`spec`, `%-` when `no_pad`) of `t`; an unknown one is copied through.
fn directive(out: &mut String, t: &Civil, spec: char, no_pad: bool) {
    let num = |out: &mut String, v: i64, width: usize| {
        if no_pad {
            let _ = write!(out, "{v}");
        } else {
            let _ = write!(out, "{v:0width$}");
        }
    };
    let month_name = MONTHS[(t.month as usize).saturating_sub(1) % 12];
    let weekday_name = WEEKDAYS[t.weekday as usize % 7];
    match spec {
        'a' => out.push_str(&weekday_name[..3]),
        'A' => out.push_str(weekday_name),
        'b' | 'h' => out.push_str(&month_name[..3]),
        'B' => out.push_str(month_name),
        'd' => num(out, t.day.into(), 2),
        'e' if no_pad => num(out, t.day.into(), 1),
        'e' => {
            let _ = write!(out, "{:>2}", t.day);
        }
        'j' => num(out, t.yday.into(), 3),
        'm' => num(out, t.month.into(), 2),
        'y' => num(out, t.year.rem_euclid(100), 2),
        'Y' => {
            let _ = write!(out, "{}", t.year);
        }
        'H' => num(out, t.hour.into(), 2),
        'I' => num(out, ((t.hour + 11) % 12 + 1).into(), 2),
        'M' => num(out, t.minute.into(), 2),
        'S' => num(out, t.second.into(), 2),
        'p' => out.push_str(if t.hour < 12 { "AM" } else { "PM" }),
        'w' => {
            let _ = write!(out, "{}", t.weekday);
        }
        'u' => {
            let _ = write!(out, "{}", if t.weekday == 0 { 7 } else { t.weekday });
        }
        'F' => {
            let _ = write!(out, "{}-{:02}-{:02}", t.year, t.month, t.day);
        }
        'T' => {
            let _ = write!(out, "{:02}:{:02}:{:02}", t.hour, t.minute, t.second);
        }
        'D' => {
            let _ = write!(out, "{:02}/{:02}/{:02}", t.month, t.day, t.year.rem_euclid(100));
        }
        'R' => {
            let _ = write!(out, "{:02}:{:02}", t.hour, t.minute);
        }
        'Z' => out.push_str("UTC"),
        'z' => out.push_str("+0000"),
        'n' => out.push('\n'),
        't' => out.push('\t'),
        '%' => out.push('%'),
        other => {
            out.push('%');
            if no_pad {
                out.push('-');
            }
            out.push(other);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(unix: i64) -> SystemTime {
        if unix >= 0 {
            UNIX_EPOCH + Duration::from_secs(unix.unsigned_abs())
        } else {
            UNIX_EPOCH - Duration::from_secs(unix.unsigned_abs())
        }
    }

    fn check(unix: i64, format: &str, expected: &str) {
        assert_eq!(strftime(at(unix), format), expected, "{unix} {format:?}");
    }

    #[test]
    fn formats_like_c_strftime() {
        // 2025-03-09T07:05:03Z, a Sunday, day 68 of the year.
        let t = 1_741_503_903;
        check(t, "%d %b %Y", "09 Mar 2025");
        check(t, "%-d %B %Y", "9 March 2025");
        check(t, "%A, %a", "Sunday, Sun");
        check(t, "%Y-%m-%d %H:%M:%S", "2025-03-09 07:05:03");
        check(t, "%F %T", "2025-03-09 07:05:03");
        check(t, "%D %R", "03/09/25 07:05");
        check(t, "%I %p %j %w %u", "07 AM 068 0 7");
        check(t, "[%e]", "[ 9]");
        check(t, "%Z %z %% %q", "UTC +0000 % %q");
        check(t, "trailing %", "trailing %");
        check(0, "%c", "%c");
    }

    #[test]
    fn calendar_edges() {
        check(0, "%F %T %A", "1970-01-01 00:00:00 Thursday");
        check(-1, "%F %T", "1969-12-31 23:59:59");
        check(951_782_400, "%F %j", "2000-02-29 060"); // leap day of a 400-year leap
        check(1_735_603_200, "%F %j", "2024-12-31 366");
        check(1_721_995_200, "%d %b %Y %I%p", "26 Jul 2024 12PM");
        check(4_102_444_800, "%F %a", "2100-01-01 Fri");
    }
}
