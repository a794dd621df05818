//! The closed sets of names the domain speaks in (event types, statuses, partner states, hold
//! and cancel reasons, orderings): each enum lists its values once (`ALL`) and gives each its
//! text (`as_str`); reading a text back, and the error when it names no value, are here.

/// An enum whose values each have a fixed text.
pub trait Named: Copy + 'static {
    /// Every value, in the order an error lists them.
    const ALL: &'static [Self];
    fn name(self) -> &'static str;
}

/// A text that names no value of the set it was read as.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("must be {expected}, not {found:?}")]
pub struct UnknownName {
    expected: String,
    found: String,
}

/// The value of `T` whose text is `text`.
pub fn parse<T: Named>(text: &str) -> Result<T, UnknownName> {
    T::ALL
        .iter()
        .copied()
        .find(|value| value.name() == text)
        .ok_or_else(|| UnknownName {
            expected: expected::<T>(),
            found: text.to_string(),
        })
}

/// `"a" or "b"` for two values, `one of a, b, c` for more.
fn expected<T: Named>() -> String {
    match T::ALL {
        [one] => format!("{:?}", one.name()),
        [a, b] => format!("{:?} or {:?}", a.name(), b.name()),
        all => {
            let names: Vec<&str> = all.iter().map(|v| v.name()).collect();
            format!("one of {}", names.join(", "))
        }
    }
}

/// [`Named`], `FromStr` (failing with [`UnknownName`]) and `Display` for an enum with an
/// inherent `ALL` array and `as_str`.
macro_rules! named {
    ($t:ty) => {
        impl $crate::domain::name::Named for $t {
            const ALL: &'static [Self] = &<$t>::ALL;
            fn name(self) -> &'static str {
                self.as_str()
            }
        }

        impl std::str::FromStr for $t {
            type Err = $crate::domain::name::UnknownName;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                $crate::domain::name::parse(text)
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use named;

/// For each set's tests: every value reads back from its own text.
#[cfg(test)]
pub(crate) fn assert_names_read_back<T>()
where
    T: Named + std::str::FromStr<Err = UnknownName> + PartialEq + std::fmt::Debug,
{
    for &value in T::ALL {
        assert_eq!(value.name().parse::<T>(), Ok(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Two {
        A,
        B,
    }
    impl Named for Two {
        const ALL: &'static [Self] = &[Two::A, Two::B];
        fn name(self) -> &'static str {
            match self {
                Two::A => "a",
                Two::B => "b",
            }
        }
    }

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Three {
        X,
        Y,
        Z,
    }
    impl Named for Three {
        const ALL: &'static [Self] = &[Three::X, Three::Y, Three::Z];
        fn name(self) -> &'static str {
            match self {
                Three::X => "x",
                Three::Y => "y",
                Three::Z => "z",
            }
        }
    }

    #[test]
    fn a_name_reads_back_and_an_unknown_one_says_what_was_expected() {
        assert_eq!(parse::<Two>("b"), Ok(Two::B));
        assert_eq!(
            parse::<Two>("c").unwrap_err().to_string(),
            r#"must be "a" or "b", not "c""#
        );
        assert_eq!(parse::<Three>("z"), Ok(Three::Z));
        assert_eq!(
            parse::<Three>("").unwrap_err().to_string(),
            r#"must be one of x, y, z, not """#
        );
    }
}
