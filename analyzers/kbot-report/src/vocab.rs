//! The closed vocabularies of `kbot.result/v1`: every field that takes one of a fixed set of
//! words is one of these enums. Serialized as the same lower-case words as always, so the JSON
//! does not change (a golden test in `tests/golden.rs` proves it).

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! words {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $word:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $word)] $var),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$var),+];

            /// The word as in the JSON.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$var => $word),+
                }
            }

            /// The enum value of a word of the JSON.
            pub fn parse(s: &str) -> Option<$name> {
                match s {
                    $($word => Some($name::$var),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

words! {
    /// What one test did in one boot.
    Outcome { Pass = "pass", Fail = "fail", Hang = "hang", Skip = "skip" }
}

impl Outcome {
    /// A failure or a hang: what a regression is made of.
    pub fn is_bad(self) -> bool {
        matches!(self, Outcome::Fail | Outcome::Hang)
    }
}

words! {
    /// Whether a kernel was built.
    #[derive(Default)]
    BuildState {
        Pass = "pass",
        Fail = "fail",
        #[default]
        Skip = "skip",
    }
}

words! {
    /// Whether the guest agent ran to its end.
    #[derive(Default)]
    BootState {
        Pass = "pass",
        Fail = "fail",
        Timeout = "timeout",
        #[default]
        Skip = "skip",
    }
}

words! {
    /// What kind of finding a regression is.
    RegressionKind {
        /// A test that blocked past its watchdog.
        Hang = "hang",
        Fail = "fail",
        /// The kernel does not build any more.
        Build = "build",
        /// A differential scenario or in-kernel rule disagrees with refcore.
        Divergence = "divergence",
    }
}

words! {
    /// A patchwork-style check's state.
    CheckState { Success = "success", Warning = "warning", Fail = "fail" }
}

words! {
    /// The kind of a kernel splat (the console parser's table).
    SplatKind {
        HungTask = "hung-task",
        RcuStall = "rcu-stall",
        SoftLockup = "soft-lockup",
        Lockdep = "lockdep",
        Bug = "bug",
        Oops = "oops",
        Warning = "warning",
        Panic = "panic",
        Ubsan = "ubsan",
        Kasan = "kasan",
    }
}

words! {
    /// A check's verdict at one bisection step.
    Verdict {
        Good = "good",
        Bad = "bad",
        /// No verdict: infrastructure trouble or a result that did not reproduce.
        Unknown = "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_through_json() {
        for o in Outcome::ALL {
            let j = serde_json::to_string(o).unwrap();
            assert_eq!(j, format!("\"{}\"", o.as_str()));
            assert_eq!(serde_json::from_str::<Outcome>(&j).unwrap(), *o);
            assert_eq!(Outcome::parse(o.as_str()), Some(*o));
        }
        assert_eq!(serde_json::to_string(&SplatKind::HungTask).unwrap(), "\"hung-task\"");
        assert_eq!(RegressionKind::parse("divergence"), Some(RegressionKind::Divergence));
        assert_eq!(Verdict::parse("maybe"), None);
        assert!(serde_json::from_str::<BootState>("\"later\"").is_err());
    }
}
