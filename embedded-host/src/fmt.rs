//! Logging macros in embassy's `fmt.rs` pattern: `defmt` on devices (feature `defmt`),
//! `log` on the host (feature `log`), nothing otherwise.
//!
//! With both features on (e.g. `--all-features`), `defmt` wins.
//!
//! Only `{}` placeholders with integers, `&str` and types implementing both `Display`
//! and `defmt::Format` are used, so one format string serves both back ends.
#![allow(unused_macros)]

macro_rules! trace {
    ($($arg:tt)*) => {{
        #[cfg(all(feature = "log", not(feature = "defmt")))]
        ::log::trace!($($arg)*);
        #[cfg(feature = "defmt")]
        ::defmt::trace!($($arg)*);
        #[cfg(not(any(feature = "log", feature = "defmt")))]
        { let _ = ($($arg)*,); }
    }};
}

macro_rules! debug {
    ($($arg:tt)*) => {{
        #[cfg(all(feature = "log", not(feature = "defmt")))]
        ::log::debug!($($arg)*);
        #[cfg(feature = "defmt")]
        ::defmt::debug!($($arg)*);
        #[cfg(not(any(feature = "log", feature = "defmt")))]
        { let _ = ($($arg)*,); }
    }};
}

macro_rules! info {
    ($($arg:tt)*) => {{
        #[cfg(all(feature = "log", not(feature = "defmt")))]
        ::log::info!($($arg)*);
        #[cfg(feature = "defmt")]
        ::defmt::info!($($arg)*);
        #[cfg(not(any(feature = "log", feature = "defmt")))]
        { let _ = ($($arg)*,); }
    }};
}

macro_rules! warn {
    ($($arg:tt)*) => {{
        #[cfg(all(feature = "log", not(feature = "defmt")))]
        ::log::warn!($($arg)*);
        #[cfg(feature = "defmt")]
        ::defmt::warn!($($arg)*);
        #[cfg(not(any(feature = "log", feature = "defmt")))]
        { let _ = ($($arg)*,); }
    }};
}
