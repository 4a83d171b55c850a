//! No value of any setting, from any layer, panics: each loads or is a typed error naming
//! its key (property test over numbers and strings for every setting).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kaos_runtime::{RuntimeError, Settings};
use proptest::prelude::*;

/// Text that looks like numbers at and past every edge, and text that does not.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<f64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| format!("{n:e}")),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| format!("{n}{n}")),
        (-400i32..400).prop_map(|e| format!("1e{e}")),
        prop::sample::select(vec![
            "1e20",
            "1e300",
            "1e309",
            "-1e20",
            "18446744073709551616",
            "1.8e19",
            "9.3e18",
            "inf",
            "-inf",
            "NaN",
            "-0",
            "0",
            "0.0",
            "1e-400",
            "5e-324",
            "0x10",
            "1_000",
            " 5 ",
            "+5",
            "",
            " ",
            "\u{0}",
            "∞",
            "60s",
            "true",
            "[1]",
            "{}",
            "\"5\"",
        ])
        .prop_map(str::to_owned),
        any::<String>(),
    ]
}

fn check(result: Result<Settings, RuntimeError>) -> Result<(), TestCaseError> {
    match result {
        Ok(settings) => {
            prop_assert!(!settings.tool_timeout.is_zero());
            let _ = (format!("{settings:?}"), settings.entries());
        }
        Err(RuntimeError::Setting { key, .. }) => prop_assert!(!key.is_empty()),
        Err(other) => prop_assert!(false, "not a setting error: {other}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn no_value_of_any_setting_panics_from_any_layer(index in 0..Settings::keys().len(), value in value()) {
        let key = &Settings::keys()[index];
        for var in key.env {
            check(Settings::loader().env_vars([(*var, value.as_str())]).load())?;
        }
        check(Settings::loader().set(key.key, value.as_str()).load())?;
        check(Settings::loader().context(key.key, value.as_str()).load())?;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, format!("{}={value}\n", key.env[0])).unwrap();
        check(Settings::loader().dotenv_file(&path).load())?;
    }
}

#[test]
fn a_huge_tool_timeout_is_a_typed_error() {
    for value in ["1e20", "1e300", "18446744073709551616"] {
        let err = Settings::loader().env_vars([("KAOS_TOOLS_TIMEOUT_SECS", value)]).load().unwrap_err();
        let RuntimeError::Setting { key, message } = err else { panic!("{err:?}") };
        assert_eq!(key, "tools.timeout_secs");
        assert!(message.contains("KAOS_TOOLS_TIMEOUT_SECS"), "{message}");
    }
}
