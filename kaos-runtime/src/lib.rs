//! The KAOS [`Runtime`]: the environment a `Runner` works in.
//!
//! A runtime holds a virtual filesystem (where sessions live), a tool registry and typed
//! [`Settings`]. It is passed explicitly (there is no global runtime) and is cheap to clone.
//! [`Runtime::test_mode`] keeps everything in memory and never touches the disk;
//! [`Runtime::on_disk`] roots the VFS at a directory so sessions survive the process.
//!
//! This crate runs no turns and calls no model: that is `kaos-runner`'s job.
//!
//! ```
//! use kaos_runtime::Runtime;
//! let runtime = Runtime::test_mode();
//! assert!(runtime.tools().is_empty());
//! ```
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
mod runtime;
mod secret;
mod settings;

pub use error::RuntimeError;
pub use runtime::{Runtime, RuntimeBuilder};
/// The `secrecy` crate, whose [`SecretString`] holds every secret setting.
pub use secrecy;
pub use secret::{ExposeSecret, REDACTED, SecretString};
pub use settings::{
    DocsSettings, McpSettings, PricingSettings, ProviderSettings, SessionsSettings, SettingEntry, SettingKey,
    SettingSource, Settings, SettingsLoader, VendorLimits, VfsSettings, VfsSync,
};

/// This crate's README, compiled and run as a doctest (it ships in the package).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}
