//! `Credits`: a strictly positive amount, bounded so that sums over many packages cannot
//! overflow an `i64`.
use std::fmt;

/// The largest amount a single grant or hold may carry (10^12).
pub const MAX_CREDITS: i64 = 1_000_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Credits(i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CreditsError {
    #[error("credits must be a positive integer")]
    NotPositive,
    #[error("credits must be at most {MAX_CREDITS}")]
    TooLarge,
    /// Fractional, or outside the range of an `i64`.
    #[error("credits must be an integer between 1 and {MAX_CREDITS}")]
    NotAnInteger,
}

impl Credits {
    pub fn parse(amount: i64) -> Result<Self, CreditsError> {
        if amount <= 0 {
            Err(CreditsError::NotPositive)
        } else if amount > MAX_CREDITS {
            Err(CreditsError::TooLarge)
        } else {
            Ok(Self(amount))
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// `amount` with the unit, in the singular for one: "1 credit", "3 credits".
pub fn amount(amount: i64) -> String {
    if amount == 1 {
        "1 credit".to_owned()
    } else {
        format!("{amount} credits")
    }
}

impl fmt::Display for Credits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_exactly_one_to_the_maximum() {
        assert_eq!(Credits::parse(1).map(Credits::get), Ok(1));
        assert_eq!(
            Credits::parse(MAX_CREDITS).map(Credits::get),
            Ok(MAX_CREDITS)
        );
        assert_eq!(Credits::parse(0), Err(CreditsError::NotPositive));
        assert_eq!(Credits::parse(-1), Err(CreditsError::NotPositive));
        assert_eq!(Credits::parse(MAX_CREDITS + 1), Err(CreditsError::TooLarge));
    }
}
