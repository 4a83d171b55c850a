//! Properties of VfsPath normalization, over arbitrary and adversarial strings.

use kaos_vfs::{VfsError, VfsPath};
use proptest::prelude::*;

/// Segments chosen to hit every rule, mixed with arbitrary text.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "", ".", "..", "...", "a", "b", "dir", "C:", "c:", "~", "\\", "..\\..", "a\\b", "\0", "\n",
            "\u{7f}", "\u{85}", " ", "é", "ファイル", ".hidden", "x.", "%2e%2e", "tmp",
        ])
        .prop_map(str::to_owned),
        1 => any::<String>(),
        1 => "[a-z0-9._-]{1,12}",
    ]
}

/// Paths built from segments, with optional leading/trailing slashes.
fn path_like() -> impl Strategy<Value = String> {
    (prop::collection::vec(segment(), 0..8), any::<bool>(), any::<bool>()).prop_map(
        |(segments, lead, trail)| {
            let mut s = segments.join("/");
            if lead {
                s.insert(0, '/');
            }
            if trail {
                s.push('/');
            }
            s
        },
    )
}

fn any_input() -> impl Strategy<Value = String> {
    prop_oneof![path_like(), any::<String>(), ".{0,64}"]
}

/// A strategy for inputs that always normalize successfully.
fn valid_path() -> impl Strategy<Value = VfsPath> {
    prop::collection::vec(prop_oneof!["[a-zA-Z0-9_-]{1,10}", Just(".".to_owned()), Just(String::new())], 0..6)
        .prop_map(|segments| VfsPath::new(segments.join("/").trim_start_matches('/')).unwrap())
}

fn assert_well_formed(path: &VfsPath) {
    let s = path.as_str();
    assert!(!s.starts_with('/'), "{s:?}");
    assert!(!s.ends_with('/'), "{s:?}");
    assert!(!s.contains('\\') && !s.contains('\0'), "{s:?}");
    assert!(!s.chars().any(char::is_control), "{s:?}");
    if !s.is_empty() {
        for segment in s.split('/') {
            assert!(!matches!(segment, "" | "." | ".."), "{s:?}");
        }
    }
    assert_eq!(path.segments().collect::<Vec<_>>().join("/"), s);
    // Idempotent.
    assert_eq!(&VfsPath::new(s).unwrap(), path);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn normalization_is_well_formed_and_idempotent(input in any_input()) {
        match VfsPath::new(&input) {
            Ok(path) => {
                assert_well_formed(&path);
                // Normalization only drops empty and `.` segments.
                let kept: Vec<&str> = input.split('/').filter(|s| !matches!(*s, "" | ".")).collect();
                prop_assert_eq!(path.segments().collect::<Vec<_>>(), kept);
            }
            Err(VfsError::InvalidPath { path, .. }) => prop_assert_eq!(path, input),
            Err(other) => prop_assert!(false, "unexpected error {:?}", other),
        }
    }

    #[test]
    fn any_dot_dot_segment_is_rejected(
        before in prop::collection::vec(segment(), 0..4),
        after in prop::collection::vec(segment(), 0..4),
    ) {
        let input = [before, vec!["..".to_owned()], after].concat().join("/");
        prop_assert!(VfsPath::new(&input).is_err(), "{:?} was accepted", input);
    }

    #[test]
    fn rejected_characters_are_rejected_anywhere(
        a in "[a-z/]{0,8}",
        b in "[a-z/]{0,8}",
        bad in prop::sample::select(vec!['\\', '\0', '\n', '\r', '\t', '\u{1b}', '\u{7f}', '\u{9b}']),
    ) {
        let input = format!("{a}{bad}{b}");
        prop_assert!(VfsPath::new(&input).is_err());
        let absolute = format!("/{a}");
        prop_assert!(VfsPath::new(&absolute).is_err());
    }

    #[test]
    fn joining_valid_paths_stays_valid(a in valid_path(), b in valid_path()) {
        let joined = a.join(b.as_str()).unwrap();
        assert_well_formed(&joined);
        prop_assert_eq!(&joined, &a.join_path(&b));
        prop_assert!(joined.starts_with(&a));
        prop_assert_eq!(joined.strip_prefix(&a), Some(b.clone()));
        prop_assert_eq!(
            joined.segments().count(),
            a.segments().count() + b.segments().count()
        );
    }

    #[test]
    fn joining_hostile_input_fails_or_stays_below(a in valid_path(), rest in any_input()) {
        match a.join(&rest) {
            Ok(joined) => {
                assert_well_formed(&joined);
                prop_assert!(joined.starts_with(&a));
            }
            Err(e) => prop_assert!(matches!(e, VfsError::InvalidPath { .. }), "{:?}", e),
        }
    }

    #[test]
    fn parent_and_file_name_rebuild_the_path(path in valid_path()) {
        match (path.parent(), path.file_name()) {
            (None, None) => prop_assert!(path.is_root()),
            (Some(parent), Some(name)) => {
                prop_assert_eq!(parent.join(name).unwrap(), path.clone());
                prop_assert!(path.starts_with(&parent));
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }
}

#[test]
fn examples() {
    assert_eq!(VfsPath::new("a/./b//c/").unwrap().as_str(), "a/b/c");
    assert_eq!(VfsPath::new(".").unwrap(), VfsPath::root());
    assert_eq!(VfsPath::new("").unwrap(), VfsPath::root());
    assert!(p_err("a/b/.."));
    assert!(p_err(".."));
    assert!(p_err("C:/x"));
    assert!(p_err("\\\\server\\share"));
    // `starts_with` is segment-wise.
    assert!(!VfsPath::new("ab").unwrap().starts_with(&VfsPath::new("a").unwrap()));
}

fn p_err(input: &str) -> bool {
    matches!(VfsPath::new(input), Err(VfsError::InvalidPath { .. }))
}
