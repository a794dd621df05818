//! How a partner's own retry delays are written: a whole number and one unit, `250ms`, `5s`,
//! `10m`, `2h` or `1d`, from 1 ms to 7 days. The syntax is narrow so that the OpenAPI
//! document can state it exactly ([`PATTERN`]): every text the pattern admits is accepted,
//! and what the API answers reads back the same way ([`format`]).

use std::time::Duration;

/// Units with the most digits each may take, so that every admitted value lies within
/// 1 ms ..= 7 days (8 digits of ms ≈ 27.8 h, 4 digits of minutes ≈ 6.9 days).
const UNITS: [(&str, u64, usize); 5] = [
    ("ms", 1, 8),
    ("s", 1_000, 5),
    ("m", 60_000, 4),
    ("h", 3_600_000, 2),
    ("d", 86_400_000, 1),
];

/// Days a delay may take at most (`[1-7]d`).
const MAX_DAYS: u64 = 7;

/// The text's form, for the OpenAPI document: the same rule as [`parse`].
pub const PATTERN: &str =
    "^([1-9][0-9]{0,7}ms|[1-9][0-9]{0,4}s|[1-9][0-9]{0,3}m|[1-9][0-9]?h|[1-7]d)$";

/// A text that is not a delay as [`parse`] reads them.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a delay such as 250ms, 5s, 10m, 2h or 1d (1ms to 7d)")]
pub struct NotADelay(String);

/// The delay a text names.
pub fn parse(text: &str) -> Result<Duration, NotADelay> {
    let refuse = || NotADelay(text.to_string());
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let &(_, unit_ms, max_digits) = UNITS
        .iter()
        .find(|(name, _, _)| *name == unit)
        .ok_or_else(refuse)?;
    if number.is_empty() || number.starts_with('0') || number.len() > max_digits {
        return Err(refuse());
    }
    let n: u64 = number.parse().map_err(|_| refuse())?;
    if unit == "d" && n > MAX_DAYS {
        return Err(refuse());
    }
    Ok(Duration::from_millis(n * unit_ms))
}

/// A delay written with the largest unit that states it exactly, as [`parse`] reads it.
pub fn format(delay: Duration) -> String {
    let ms = delay.as_millis() as u64;
    for &(name, unit_ms, max_digits) in UNITS.iter().rev() {
        if ms > 0 && ms % unit_ms == 0 && (ms / unit_ms).to_string().len() <= max_digits {
            return format!("{}{name}", ms / unit_ms);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admitted_texts_are_delays_from_1ms_to_7_days() {
        for (text, ms) in [
            ("1ms", 1),
            ("250ms", 250),
            ("99999999ms", 99_999_999),
            ("5s", 5_000),
            ("10m", 600_000),
            ("9999m", 599_940_000),
            ("99h", 356_400_000),
            ("7d", 604_800_000),
        ] {
            assert_eq!(parse(text), Ok(Duration::from_millis(ms)), "{text}");
        }
        for refused in [
            "",
            "0ms",
            "05s",
            "1.5s",
            "1h 30m",
            " 5s",
            "5s ",
            "5",
            "ms",
            "8d",
            "100h",
            "10000m",
            "123456789ms",
            "5sec",
            "-1s",
        ] {
            assert!(parse(refused).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn every_delay_reads_back_as_written() {
        for text in [
            "1ms", "1500ms", "90s", "10m", "2h", "36h", "1d", "7d", "9999m",
        ] {
            let delay = parse(text).unwrap();
            assert_eq!(parse(&format(delay)), Ok(delay), "{text}");
        }
        assert_eq!(format(Duration::from_secs(36 * 3600)), "36h");
        assert_eq!(format(Duration::from_secs(7 * 86400)), "7d");
    }
}
