//! A length of time as people write it for key lifetimes: `30d`, `12h`, `52w`, `90m` (minutes), `3600s`.

use std::fmt;
use std::str::FromStr;

/// A whole number of seconds, written with one unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Period(u64);

/// Longer than any key lifetime (100 years): a larger number is a typo, and Unix seconds stay far from overflow.
const MAX_SECONDS: u64 = 100 * 366 * 86_400;

impl Period {
    /// From seconds.
    pub const fn from_secs(seconds: u64) -> Self {
        Self(seconds)
    }

    /// In seconds.
    pub const fn secs(self) -> u64 {
        self.0
    }

    /// In seconds, signed (for arithmetic with Unix times; never above 100 years).
    pub fn signed(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }
}

impl FromStr for Period {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a period: a number and a unit, e.g. 30d, 12h, 52w (s, m, h, d, w)");
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (number, unit) = s.split_at(split);
        let number: u64 = number.parse().map_err(|_| bad())?;
        let unit = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => return Err(bad()),
        };
        match number.checked_mul(unit) {
            Some(secs) if secs <= MAX_SECONDS => Ok(Self(secs)),
            _ => Err(format!("`{s}` is longer than 100 years")),
        }
    }
}

impl fmt::Display for Period {
    /// The largest unit that divides it: `30d`, `36h`, `90s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = [(7 * 86_400, "w"), (86_400, "d"), (3_600, "h"), (60, "m")];
        match units
            .into_iter()
            .find(|(u, _)| self.0 != 0 && self.0.is_multiple_of(*u))
        {
            Some((u, name)) => write!(f, "{}{name}", self.0 / u),
            None => write!(f, "{}s", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_parse_with_one_unit_and_refuse_the_rest() {
        assert_eq!("30d".parse(), Ok(Period::from_secs(30 * 86_400)));
        assert_eq!("12h".parse::<Period>().map(|p| p.to_string()), Ok("12h".into()));
        assert_eq!(Period::from_secs(14 * 86_400).to_string(), "2w");
        for bad in ["", "30", "d", "30 d", "30days", "-1d", "1.5d", "1y"] {
            assert!(
                bad.parse::<Period>().expect_err("refused").contains("is not a period"),
                "{bad}"
            );
        }
        assert!(
            "99999999999w"
                .parse::<Period>()
                .expect_err("refused")
                .contains("100 years")
        );
    }
}
