//! Environment settings, read in one place with one parser per kind of value, and the
//! warnings they (and thread counts) give.
//!
//! Reading a setting never fails: a value that cannot be used falls back to the default
//! (as rayon does for `RAYON_NUM_THREADS`), so a stray variable in a cluster's
//! environment cannot make every call raise.
//!
//! Warnings are queued here and handed to the user by whoever drives the core: the
//! Python binding drains [`take_warnings`] after each call and raises them as
//! `luxical.errors.LuxicalWarning` (a pure-Rust user may drain them too).

use std::sync::Mutex;

/// Boolean switches read by the core (documented in the README).
pub const NO_FAST_TOKENIZER: &str = "LUXICAL_NO_FAST_TOKENIZER";
/// See [`NO_FAST_TOKENIZER`]. True means the portable dense-layer kernels (as
/// `LUXICAL_KERNEL=portable`, and it wins over [`KERNEL`]).
pub const NO_SIMD: &str = "LUXICAL_NO_SIMD";
/// Forces the dense-layer kernel family: one of `gemm::Kernel::NAMES` (see `gemm`).
pub const KERNEL: &str = "LUXICAL_KERNEL";

/// What a boolean variable's value means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    True,
    False,
    /// Not a boolean we know: the caller uses the default and warns.
    Unrecognised,
}

/// Parses a boolean setting: `1 true yes on y t` are true, `0 false no off n f` and the
/// empty string are false (case-insensitive, surrounding whitespace ignored).
pub fn parse_flag(text: &str) -> Flag {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" | "y" | "t" => Flag::True,
        "" | "0" | "false" | "no" | "off" | "n" | "f" => Flag::False,
        _ => Flag::Unrecognised,
    }
}

/// Whether boolean variable `name` is set to a true value. Unset, false and empty are
/// false; an unrecognised value is false with a warning (never an error).
pub fn env_flag(name: &str) -> bool {
    let Some(raw) = std::env::var_os(name) else {
        return false;
    };
    let text = raw.to_string_lossy();
    match parse_flag(&text) {
        Flag::True => true,
        Flag::False => false,
        Flag::Unrecognised => {
            warn(format!(
                "environment variable {name}={text:?} is not a boolean \
                 (use 1/true/yes/on or 0/false/no/off); treating it as unset (false)"
            ));
            false
        }
    }
}

/// Which of `choices` variable `name` names (case-insensitive, surrounding whitespace
/// ignored), as an index into `choices`. Unset or empty is `None`; any other value is
/// `None` with a warning (the caller uses its default, as for an unrecognised boolean).
pub fn env_choice(name: &str, choices: &[&str]) -> Option<usize> {
    let raw = std::env::var_os(name)?;
    let text = raw.to_string_lossy();
    let wanted = text.trim().to_ascii_lowercase();
    if wanted.is_empty() {
        return None;
    }
    let found = choices.iter().position(|c| c.eq_ignore_ascii_case(&wanted));
    if found.is_none() {
        warn(format!(
            "environment variable {name}={text:?} is not one of {}; treating it as unset",
            choices.join(", ")
        ));
    }
    found
}

/// A positive thread count from variable `name`, rayon's convention
/// (`rayon-core/src/registry.rs`): a positive integer is that many threads; unset, `0`,
/// empty or anything else that does not parse as one means "not set" (no warning, as in
/// rayon).
pub fn env_thread_count(name: &str) -> Option<usize> {
    let text = std::env::var(name).ok()?;
    match text.trim().parse::<usize>() {
        Ok(n) if n > 0 => Some(n),
        _ => None,
    }
}

/// Pending warnings, oldest first; bounded so that a user who never drains them does
/// not grow it without end.
static PENDING: Mutex<Vec<String>> = Mutex::new(Vec::new());
const MAX_PENDING: usize = 64;

/// Queues a warning for the user (dropped once [`MAX_PENDING`] are waiting).
pub fn warn(message: String) {
    let mut pending = PENDING.lock().unwrap_or_else(|p| p.into_inner());
    if pending.len() < MAX_PENDING && !pending.contains(&message) {
        pending.push(message);
    }
}

/// Takes the queued warnings (the Python binding raises them after each call).
pub fn take_warnings() -> Vec<String> {
    std::mem::take(&mut *PENDING.lock().unwrap_or_else(|p| p.into_inner()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_as_booleans() {
        for t in ["1", "true", "TRUE", "Yes", "on", " y ", "t"] {
            assert_eq!(parse_flag(t), Flag::True, "{t:?}");
        }
        for f in [
            "0", "false", "False", "NO", "off", "", "  ", "n", "f", " 0 ",
        ] {
            assert_eq!(parse_flag(f), Flag::False, "{f:?}");
        }
        for u in ["2", "maybe", "enable", "-1", "tru"] {
            assert_eq!(parse_flag(u), Flag::Unrecognised, "{u:?}");
        }
    }

    #[test]
    fn env_flag_reads_the_variable_and_warns_on_nonsense() {
        // a variable name of this test's own, so parallel tests do not race on it
        let name = "LUXICAL_TEST_SETTINGS_FLAG";
        std::env::remove_var(name);
        assert!(!env_flag(name));
        std::env::set_var(name, "0");
        assert!(!env_flag(name));
        std::env::set_var(name, "yes");
        assert!(env_flag(name));
        std::env::set_var(name, "sometimes");
        assert!(!env_flag(name));
        assert!(take_warnings().iter().any(|w| w.contains(name)));
        std::env::remove_var(name);
    }

    #[test]
    fn choices_are_matched_case_insensitively_and_nonsense_warns() {
        let name = "LUXICAL_TEST_SETTINGS_CHOICE";
        let choices = ["portable", "avx2"];
        std::env::remove_var(name);
        assert_eq!(env_choice(name, &choices), None);
        for (value, want) in [(" AVX2 ", Some(1)), ("portable", Some(0)), ("", None)] {
            std::env::set_var(name, value);
            assert_eq!(env_choice(name, &choices), want, "{value:?}");
        }
        std::env::set_var(name, "sse9");
        assert_eq!(env_choice(name, &choices), None);
        assert!(take_warnings()
            .iter()
            .any(|w| w.contains(name) && w.contains("portable, avx2")));
        std::env::remove_var(name);
    }

    #[test]
    fn thread_counts_follow_rayon() {
        let name = "LUXICAL_TEST_SETTINGS_THREADS";
        for (value, want) in [
            ("3", Some(3)),
            (" 2 ", Some(2)),
            ("0", None),
            ("", None),
            ("abc", None),
            ("-1", None),
            ("2.5", None),
        ] {
            std::env::set_var(name, value);
            assert_eq!(env_thread_count(name), want, "{value:?}");
        }
        std::env::remove_var(name);
        assert_eq!(env_thread_count(name), None);
    }
}
