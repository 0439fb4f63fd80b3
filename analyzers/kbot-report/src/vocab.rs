//! The closed vocabularies of `kbot.result/v1`: every field that takes one of a fixed set of
//! words is one of these enums. Serialized as the same lower-case words as always, so the JSON
//! does not change (a golden test in `tests/golden.rs` proves it).

/// A word that is not one of its vocabulary's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: unknown value {word:?}")]
pub struct UnknownWord {
    pub what: &'static str,
    pub word: String,
}

/// An enum for a closed vocabulary of words: `as_str`, `parse`, `ALL`, `Display` (padded),
/// `FromStr` and serde as the words themselves. Every crate with such a vocabulary (the
/// result, the service's queue) declares it with this.
#[macro_export]
macro_rules! closed_words {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $word:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $word)] $var),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$var),+];

            /// The word.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$var => $word),+
                }
            }

            /// The value of a word.
            pub fn parse(s: &str) -> Option<$name> {
                match s {
                    $($word => Some($name::$var),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                // `pad`: widths and alignment apply (`{:<8}`).
                f.pad(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::UnknownWord;
            fn from_str(s: &str) -> Result<$name, $crate::UnknownWord> {
                $name::parse(s).ok_or_else(|| $crate::UnknownWord { what: stringify!($name), word: s.to_string() })
            }
        }
    };
}

crate::closed_words! {
    /// What one test did in one boot.
    Outcome { Pass = "pass", Fail = "fail", Hang = "hang", Skip = "skip" }
}

impl Outcome {
    /// A failure or a hang: what a regression is made of.
    pub fn is_bad(self) -> bool {
        matches!(self, Outcome::Fail | Outcome::Hang)
    }
}

crate::closed_words! {
    /// Whether a kernel was built.
    #[derive(Default)]
    BuildState {
        Pass = "pass",
        Fail = "fail",
        #[default]
        Skip = "skip",
    }
}

crate::closed_words! {
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

crate::closed_words! {
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

crate::closed_words! {
    /// A patchwork-style check's state.
    CheckState {
        Success = "success",
        Warning = "warning",
        Fail = "fail",
        /// The check could not run or gave no verdict (its detail says why): not a pass.
        Error = "error",
    }
}

crate::closed_words! {
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

crate::closed_words! {
    /// A check's verdict at one bisection step.
    Verdict {
        Good = "good",
        Bad = "bad",
        /// No verdict: infrastructure trouble or a result that did not reproduce.
        Unknown = "unknown",
    }
}

crate::closed_words! {
    /// Why a bisection step ran.
    StepReason {
        /// A probe of the binary search.
        Bisect = "bisect",
        /// The step before gave no verdict (no boot, no report), or the runs so far tie.
        Retry = "retry",
        /// A rerun of the prefix about to be blamed: a failure is named only when it reproduces.
        Confirm = "confirm",
        /// A rerun of the last good prefix below it: a race the kernel has can pass once.
        Verify = "verify",
    }
}

/// Which family a test of the result belongs to, told by its name's prefix: the one place
/// that reads those prefixes (`scenario/`, `shadow/`, `ltp/`; kbot's own hang tests have none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TestFamily {
    /// kbot's own hang tests in the guest agent (`inotify_close_with_pending_perm`, ...).
    Own,
    /// A differential scenario against refcore (`scenario/<name>`).
    Scenario,
    /// An in-kernel shadow rule's record (`shadow/<rule>`).
    Shadow,
    /// One of LTP's tests (`ltp/<name>`).
    Ltp,
}

impl TestFamily {
    const PREFIXES: [(TestFamily, &'static str); 3] =
        [(TestFamily::Scenario, "scenario/"), (TestFamily::Shadow, "shadow/"), (TestFamily::Ltp, "ltp/")];

    pub fn of(name: &str) -> TestFamily {
        Self::PREFIXES.iter().find(|(_, p)| name.starts_with(p)).map_or(TestFamily::Own, |(f, _)| *f)
    }

    /// The prefix of its names ("" for kbot's own tests).
    pub fn prefix(self) -> &'static str {
        Self::PREFIXES.iter().find(|(f, _)| *f == self).map_or("", |(_, p)| p)
    }

    /// Its verdict is a direct record of what the kernel did (an in-kernel rule), not a
    /// timing or a comparison that a slow machine or an unhit race could change.
    pub fn observed(self) -> bool {
        self == TestFamily::Shadow
    }

    /// A bad result of it is a divergence from refcore (not a hang or a failure).
    pub fn diverges(self) -> bool {
        matches!(self, TestFamily::Scenario | TestFamily::Shadow)
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

    #[test]
    fn test_families_by_name() {
        for (name, f) in [
            ("inotify_close_with_pending_perm", TestFamily::Own),
            ("scenario/random-1-2", TestFamily::Scenario),
            ("shadow/wait-in-srcu", TestFamily::Shadow),
            ("ltp/fanotify07", TestFamily::Ltp),
            ("ltpx", TestFamily::Own),
        ] {
            assert_eq!(TestFamily::of(name), f, "{name}");
            assert!(name.starts_with(f.prefix()));
        }
        assert!(TestFamily::Shadow.observed() && !TestFamily::Ltp.observed());
        assert!(TestFamily::Scenario.diverges() && !TestFamily::Own.diverges());
    }
}
