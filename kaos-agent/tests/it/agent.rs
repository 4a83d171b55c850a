#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use kaos_agent::{
    Agent, AgentConfig, AgentError, Budget, Classifier, Decision, FindingsConfig, Limits, ModelRef,
    ModelRole, Pattern, PermissionRule, PlanConfig, Route, RouterConfig,
};
use proptest::prelude::*;

#[test]
fn defaults_are_the_reference_defaults_and_offline() {
    let agent = Agent::builder().build().unwrap();
    assert_eq!(agent.name(), "assistant");
    assert_eq!(agent.instructions(), "You are a helpful assistant.");
    assert_eq!(agent.model().as_str(), "scripted:echo");
    assert_eq!(agent.pattern(), Pattern::Chat);
    assert_eq!(agent.limits().max_iterations.get(), 50);
    assert_eq!(agent.limits().max_tools.get(), 100);
    assert_eq!(agent.limits().max_delegation_depth.get(), 3);
    assert_eq!(*agent.budget(), Budget::unlimited());
    assert_eq!(ModelRef::default(), ModelRef::new(ModelRef::OFFLINE).unwrap());
}

#[test]
fn zero_limits_are_errors_not_unset() {
    for build in [
        Agent::builder().max_iterations(0),
        Agent::builder().max_tools(0),
        Agent::builder().max_plan_steps(0),
        Agent::builder().retrieval_top_k(0),
        Agent::builder().max_delegation_depth(0),
    ] {
        assert!(matches!(build.build(), Err(AgentError::ZeroLimit { .. })));
    }
    let err = Agent::builder().max_iterations(0).build().unwrap_err();
    assert_eq!(err, AgentError::ZeroLimit { field: "limits.max_iterations".into() });

    let err = Agent::from_toml("[limits]\nmax_iterations = 0\n").unwrap_err();
    let AgentError::Parse { format: "TOML", ref field, line, .. } = err else { panic!("{err:?}") };
    assert_eq!((field.as_str(), line), ("limits.max_iterations", Some(2)));
    assert!(err.to_string().contains("line 2"), "{err}");
}

#[test]
fn bad_budgets_are_rejected() {
    let cases = [
        (Budget::unlimited().with_max_cost_usd(0.0), "budget.max_cost_usd"),
        (Budget::unlimited().with_max_cost_usd(-1.0), "budget.max_cost_usd"),
        (Budget::unlimited().with_max_cost_usd(f64::NAN), "budget.max_cost_usd"),
        (Budget::unlimited().with_max_tokens(0), "budget.max_tokens"),
        (Budget::unlimited().with_max_tool_calls(0), "budget.max_tool_calls"),
        (Budget::unlimited().with_max_tokens(u64::MAX), "budget.max_tokens"),
    ];
    for (budget, field) in cases {
        match Agent::builder().budget(budget).build() {
            Err(AgentError::InvalidBudget { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{budget:?} gave {other:?}"),
        }
    }
}

#[test]
fn malformed_values_give_typed_errors() {
    assert!(matches!(Agent::builder().model("gpt-4").build(), Err(AgentError::InvalidModelRef { .. })));
    assert!(matches!(Agent::builder().model("OpenAI:gpt").build(), Err(AgentError::InvalidModelRef { .. })));
    assert!(matches!(Agent::builder().model("openai:").build(), Err(AgentError::InvalidModelRef { .. })));
    assert!(matches!(Agent::builder().name("has space").build(), Err(AgentError::InvalidName { .. })));
    assert!(matches!(Agent::builder().name("").build(), Err(AgentError::InvalidName { .. })));
    let err = Agent::builder().tools(["ok-*", "bad-[glob"]).build().unwrap_err();
    assert!(matches!(&err, AgentError::InvalidGlob { field, .. } if field == "tools[1]"), "{err:?}");
    let err =
        Agent::builder().permission(PermissionRule::ask("w").with_arg("path", "{a")).build().unwrap_err();
    assert!(
        matches!(&err, AgentError::InvalidGlob { field, .. } if field == "permissions[0].args.path"),
        "{err:?}"
    );
    assert!(matches!("planner".parse::<Pattern>(), Err(AgentError::UnknownPattern { .. })));
    let err = Agent::from_json(r#"{"pattern": "planner"}"#).unwrap_err();
    assert!(matches!(err, AgentError::Parse { format: "JSON", .. }));
}

#[test]
fn unknown_fields_are_rejected_with_their_name() {
    let err = Agent::from_toml("name = \"a\"\ninstructons = \"typo\"\n").unwrap_err();
    let AgentError::Parse { message, .. } = err else { panic!() };
    assert!(message.contains("instructons"), "{message}");
}

#[test]
fn handoff_cycles_and_duplicate_names_are_rejected() {
    let b = Agent::builder().name("b").build().unwrap();
    let a_again = Agent::builder().name("a").build().unwrap();
    let b_to_a = Agent::builder().name("b").handoff(&a_again).build().unwrap();
    let err = Agent::builder().name("a").handoff(&b_to_a).build().unwrap_err();
    assert_eq!(err, AgentError::Cycle { name: "a".into(), path: vec!["a".into(), "b".into(), "a".into()] });

    let err = Agent::builder().name("a").handoff(&b).handoff(&b).build().unwrap_err();
    assert!(matches!(err, AgentError::DuplicateName { kind: "handoff", .. }));
    let err = Agent::builder().name("a").delegate("x", "d", &b).delegate("x", "d", &b).build().unwrap_err();
    assert!(matches!(err, AgentError::DuplicateName { kind: "delegate", .. }));

    // Names in a handoff team become tool names `handoff_to_<name>` (at most 64 characters).
    let long = Agent::builder().name("n".repeat(54)).build().unwrap();
    let err = Agent::builder().name("a").handoff(&long).build().unwrap_err();
    assert!(matches!(&err, AgentError::InvalidName { field, .. } if field == "handoffs[0].name"), "{err}");
    let err = Agent::builder().name("n".repeat(54)).handoff(&b).build().unwrap_err();
    assert!(matches!(&err, AgentError::InvalidName { field, .. } if field == "name"), "{err}");
    let fits = Agent::builder().name("n".repeat(53)).build().unwrap();
    assert!(Agent::builder().name("m".repeat(53)).handoff(&fits).build().is_ok());
    // Outside a handoff team a name may use all 64 characters.
    assert!(Agent::builder().name("n".repeat(64)).delegate("x", "d", &long).build().is_ok());
}

#[test]
fn fingerprint_is_stable_and_sensitive() {
    let a = Agent::builder().name("x").model("openai:gpt-4.1-mini").build().unwrap();
    let b = Agent::builder().model("openai:gpt-4.1-mini").name("x").build().unwrap();
    assert_eq!(a.fingerprint(), b.fingerprint());
    let c = a.to_builder().instructions("Different.").build().unwrap();
    assert_ne!(a.fingerprint(), c.fingerprint());
    // Pinned: a change to the canonical form or hashing is a breaking change for stored runs.
    let default = Agent::builder().build().unwrap();
    assert_eq!(default.config().canonical_json().unwrap(), default_canonical());
    assert_eq!(default.fingerprint().as_str().len(), "sha256:".len() + 64);
}

fn default_canonical() -> String {
    concat!(
        r#"{"budget":{},"instructions":"You are a helpful assistant.","#,
        r#""limits":{"max_delegation_depth":3,"max_iterations":50,"max_plan_steps":100,"max_tools":100,"retrieval_top_k":25},"#,
        r#""memory":{"context_budget_tokens":200000,"retrieval_threshold":20,"sections":{}},"#,
        r#""model":"scripted:echo","name":"assistant","pattern":"chat"}"#
    )
    .to_owned()
}

#[test]
fn memory_sections_merge_over_their_defaults_and_defaults_do_not_change_the_fingerprint() {
    use kaos_agent::{Eviction, SectionConfig, SectionKind, TokenBudget};
    let spelled_out =
        Agent::from_toml("[memory.sections.messages]\nbudget_tokens = 32000\neviction = \"fifo\"\n").unwrap();
    assert_eq!(spelled_out.fingerprint(), Agent::builder().build().unwrap().fingerprint());

    let agent =
        Agent::from_toml("[memory.sections.actions]\neviction = \"lfu\"\nbudget_tokens = \"unbounded\"\n")
            .unwrap();
    let mut expected = SectionConfig::default_for(SectionKind::Actions);
    expected.eviction = Eviction::Lfu;
    expected.budget_tokens = TokenBudget::Unbounded;
    assert_eq!(agent.memory().section(SectionKind::Actions), expected);
    assert_eq!(Agent::from_toml(&agent.to_toml().unwrap()).unwrap(), agent);

    for bad in ["budget_tokens = 0", "budget_tokens = \"lots\"", "evict = \"fifo\"", "eviction = \"random\""]
    {
        let err = Agent::from_toml(&format!("[memory.sections.messages]\n{bad}\n")).unwrap_err();
        assert!(matches!(err, AgentError::Parse { .. }), "{bad}: {err:?}");
    }
    assert!(Agent::from_toml("[memory.sections.nonsense]\npriority = 1\n").is_err());
}

#[test]
fn a_full_agent_file_parses() {
    let text = r#"
name = "support"
instructions = "Answer support questions."
model = "anthropic:claude-haiku-4-5"
pattern = "research"
tools = ["kaos-vfs-*", "search"]

[role_models]
classify = "openai:gpt-4.1-mini"

[[permissions]]
tool = "*-delete*"
decision = "deny"

[[permissions]]
tool = "kaos-vfs-write"
args = { path = "secrets/**" }
decision = "ask"

[limits]
max_iterations = 8

[budget]
max_cost_usd = 0.25
max_tool_calls = 20

[metadata]
team = "care"
"#;
    let agent = Agent::from_toml(text).unwrap();
    assert_eq!(agent.pattern(), Pattern::Research);
    assert_eq!(agent.model_for(ModelRole::Classify).as_str(), "openai:gpt-4.1-mini");
    assert_eq!(agent.model_for(ModelRole::Plan).as_str(), "anthropic:claude-haiku-4-5");
    assert_eq!(
        agent.permissions(),
        &[
            PermissionRule::deny("*-delete*"),
            PermissionRule::ask("kaos-vfs-write").with_arg("path", "secrets/**")
        ]
    );
    let mut limits = Limits::default();
    limits.max_iterations = 8.try_into().unwrap();
    assert_eq!(agent.limits(), &limits);
    assert_eq!(agent.budget().max_cost_usd, Some(0.25));
    assert_eq!(Agent::from_toml(&agent.to_toml().unwrap()).unwrap(), agent);
}

#[test]
fn pattern_settings_and_fallback_models_parse_round_trip_and_validate() {
    let text = r#"
name = "desk"
model = "openai:gpt-4.1-mini"
fallback_models = ["anthropic:claude-haiku-4-5", "gemini:gemini-2.5-flash"]
pattern = "router"

[plan]
max_replans = 0

[findings]
max_documents = 5
max_cost_per_document_usd = 0.01
min_findings = 2

[router]
classifier = "rules"
default_pattern = "research"

[[router.routes]]
pattern = "plan"
description = "multi-step tasks"
keywords = ["plan", "steps"]
"#;
    let agent = Agent::from_toml(text).unwrap();
    let fallbacks: Vec<&str> = agent.fallback_models().iter().map(ModelRef::as_str).collect();
    assert_eq!(fallbacks, ["anthropic:claude-haiku-4-5", "gemini:gemini-2.5-flash"]);
    assert_eq!(agent.plan(), &PlanConfig::default().with_max_replans(0));
    assert_eq!(
        agent.findings(),
        &FindingsConfig::default()
            .with_max_documents(5.try_into().unwrap())
            .with_max_cost_per_document_usd(0.01)
            .with_min_findings(2.try_into().unwrap())
    );
    assert_eq!(
        agent.router(),
        &RouterConfig::default()
            .with_classifier(Classifier::Rules)
            .with_default_pattern(Pattern::Research)
            .with_route(Route::new(Pattern::Plan, "multi-step tasks").with_keywords(["plan", "steps"]))
    );
    assert_eq!(Agent::from_toml(&agent.to_toml().unwrap()).unwrap(), agent);
    assert_eq!(Agent::from_json(&agent.to_json().unwrap()).unwrap(), agent);

    let bad = |toml: &str| Agent::from_toml(toml).unwrap_err().to_string();
    assert_eq!(
        bad("[router]\ndefault_pattern = \"router\""),
        "router.default_pattern a router cannot route to the router pattern"
    );
    assert_eq!(
        bad("[findings]\nmax_cost_per_document_usd = -1.0"),
        "findings.max_cost_per_document_usd must be a positive, finite number of USD"
    );
    assert!(
        bad("[findings]\nmax_documents = 0").contains("max_documents"),
        "{}",
        bad("[findings]\nmax_documents = 0")
    );
    assert!(bad("fallback_models = [\"nocolon\"]").contains("nocolon"));
    // A handoff target's settings are validated where they are.
    let nested = "[[handoffs]]\nname = \"b\"\n[handoffs.router]\ndefault_pattern = \"router\"";
    assert_eq!(bad(nested), "handoffs[0].router.default_pattern a router cannot route to the router pattern");
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_-]{1,16}"
}

fn glob() -> impl Strategy<Value = String> {
    prop_oneof![Just("*".to_owned()), "[a-z-]{1,10}", "[a-z]{1,5}-\\*", "kaos-[a-z]{1,4}-\\?"]
}

fn leaf() -> impl Strategy<Value = AgentConfig> {
    (
        name(),
        ".{0,40}",
        prop_oneof![Just("scripted:echo"), Just("openai:gpt-4.1-mini"), Just("anthropic:claude-haiku-4-5")],
        prop::sample::select(Pattern::ALL.to_vec()),
        prop::collection::vec(glob(), 0..4),
        prop::collection::vec(
            (
                glob(),
                prop::option::of(glob()),
                prop::sample::select(vec![Decision::Allow, Decision::Ask, Decision::Deny]),
            ),
            0..4,
        ),
        (1u32..500, 1u32..500, prop::option::of(0.0001f64..100.0), prop::option::of(1u64..1_000_000)),
        prop::collection::btree_map("[a-z]{1,6}", ".{0,10}", 0..3),
    )
        .prop_map(
            |(
                name,
                instructions,
                model,
                pattern,
                tools,
                rules,
                (iters, tools_cap, usd, tokens),
                metadata,
            )| {
                let mut builder = Agent::builder()
                    .name(name)
                    .instructions(instructions)
                    .model(model)
                    .pattern(pattern)
                    .tools(tools)
                    .max_iterations(iters)
                    .max_tools(tools_cap)
                    .budget({
                        let mut budget = Budget::unlimited();
                        budget.max_cost_usd = usd;
                        budget.max_tokens = tokens;
                        budget
                    });
                for (tool, path, decision) in rules {
                    let mut rule = PermissionRule::new(tool, decision);
                    if let Some(path) = path {
                        rule = rule.with_arg("path", path);
                    }
                    builder = builder.permission(rule);
                }
                for (k, v) in metadata {
                    builder = builder.metadata(k, v);
                }
                builder.build().unwrap().config().clone()
            },
        )
}

fn agent() -> impl Strategy<Value = Agent> {
    (leaf(), prop::collection::vec(leaf(), 0..3), prop::option::of(leaf())).prop_filter_map(
        "names on a chain must be unique",
        |(mut root, handoffs, delegate)| {
            let mut names = BTreeMap::new();
            names.insert(root.name.clone(), ());
            for h in handoffs {
                if names.insert(h.name.clone(), ()).is_none() {
                    root.handoffs.push(h);
                }
            }
            if let Some(d) = delegate
                && names.insert(d.name.clone(), ()).is_none()
            {
                let agent = Agent::from_config(d).ok()?;
                root.delegates.push(kaos_agent::Delegate::new("helper", "Helps.", &agent));
            }
            Agent::from_config(root).ok()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn json_round_trip_is_identity(agent in agent()) {
        let back = Agent::from_json(&agent.to_json().unwrap()).unwrap();
        prop_assert_eq!(back.fingerprint(), agent.fingerprint());
        prop_assert_eq!(back, agent);
    }

    #[test]
    fn toml_round_trip_is_identity(agent in agent()) {
        let text = agent.to_toml().unwrap();
        let back = Agent::from_toml(&text).unwrap();
        prop_assert_eq!(back.fingerprint(), agent.fingerprint());
        prop_assert_eq!(back, agent);
    }

    #[test]
    fn fingerprint_ignores_construction_path(agent in agent()) {
        let rebuilt = agent.to_builder().build().unwrap();
        prop_assert_eq!(rebuilt.fingerprint(), agent.fingerprint());
        let via_serde: Agent = serde_json::from_value(serde_json::to_value(&agent).unwrap()).unwrap();
        prop_assert_eq!(via_serde.fingerprint(), agent.fingerprint());
    }
}

#[test]
fn a_remote_a2a_delegate_parses_from_an_agent_file_and_names_its_token_variable() {
    let text = r#"
name = "front"
instructions = "Route billing questions."
model = "scripted:echo"

[[delegates]]
name = "billing"
description = "Answers billing questions."
a2a = "https://billing.example.com/a2a"
token_env = "BILLING_TOKEN"

[[delegates]]
name = "local"
description = "Helps."
agent = { name = "helper", instructions = "Help.", model = "scripted:echo" }
"#;
    let agent = Agent::from_toml(text).unwrap();
    let delegates = &agent.config().delegates;
    assert_eq!(
        delegates[0].target(),
        Some(kaos_agent::DelegateTarget::Remote {
            url: "https://billing.example.com/a2a",
            token_env: Some("BILLING_TOKEN")
        })
    );
    assert!(
        matches!(delegates[1].target(), Some(kaos_agent::DelegateTarget::Local(a)) if a.name == "helper")
    );
    // The same agent through the builder has the same fingerprint.
    let helper =
        Agent::builder().name("helper").instructions("Help.").model("scripted:echo").build().unwrap();
    let built = Agent::builder()
        .name("front")
        .instructions("Route billing questions.")
        .model("scripted:echo")
        .remote_delegate(
            kaos_agent::Delegate::a2a(
                "billing",
                "Answers billing questions.",
                "https://billing.example.com/a2a",
            )
            .with_token_env("BILLING_TOKEN"),
        )
        .delegate("local", "Helps.", &helper)
        .build()
        .unwrap();
    assert_eq!(built.fingerprint(), agent.fingerprint());
}

#[test]
fn a_malformed_remote_delegate_is_a_typed_error_naming_the_field() {
    let helper = Agent::builder().name("helper").build().unwrap();
    let cases: &[(kaos_agent::Delegate, &str, &str)] = &[
        (
            kaos_agent::Delegate::new("d", "x", &helper).with_token_env("T"),
            "delegates[0].token_env",
            "only a remote",
        ),
        (kaos_agent::Delegate::a2a("d", "x", "ftp://host/a2a"), "delegates[0].a2a", "http:// or https://"),
        (kaos_agent::Delegate::a2a("d", "x", "http:///a2a"), "delegates[0].a2a", "host"),
        (kaos_agent::Delegate::a2a("d", "x", "https://u:p@host/"), "delegates[0].a2a", "credentials"),
        (kaos_agent::Delegate::a2a("d", "x", "https://host/a b"), "delegates[0].a2a", "whitespace"),
        (
            kaos_agent::Delegate::a2a("d", "x", "https://host/").with_token_env("1BAD"),
            "delegates[0].token_env",
            "environment variable",
        ),
        (
            kaos_agent::Delegate::a2a("d", "x", "http://billing.example.com/").with_token_env("T"),
            "delegates[0].token_env",
            "https://",
        ),
    ];
    for (delegate, field, reason) in cases {
        let err = Agent::builder().name("a").remote_delegate(delegate.clone()).build().unwrap_err();
        assert!(
            matches!(&err, AgentError::InvalidDelegate { field: f, reason: r } if f == field && r.contains(reason)),
            "{delegate:?}: {err}"
        );
    }
    // A token over plain http is fine to a loopback host.
    for url in ["http://127.0.0.1:8080/", "http://localhost/a2a", "http://[::1]:9/"] {
        let delegate = kaos_agent::Delegate::a2a("d", "x", url).with_token_env("T");
        assert!(Agent::builder().name("a").remote_delegate(delegate).build().is_ok(), "{url}");
    }
    // Neither or both, from a file.
    let err =
        Agent::from_toml("name = \"a\"\n[[delegates]]\nname = \"d\"\ndescription = \"x\"\n").unwrap_err();
    assert!(
        matches!(&err, AgentError::InvalidDelegate { field, .. } if field == "delegates[0].agent"),
        "{err}"
    );
    let both = "name = \"a\"\n[[delegates]]\nname = \"d\"\ndescription = \"x\"\na2a = \"https://h/\"\nagent = { name = \"b\" }\n";
    let err = Agent::from_toml(both).unwrap_err();
    assert!(
        matches!(&err, AgentError::InvalidDelegate { field, .. } if field == "delegates[0].a2a"),
        "{err}"
    );
    // A misspelled field is still an error.
    let typo = "name = \"a\"\n[[delegates]]\nname = \"d\"\ndescription = \"x\"\na2a = \"https://h/\"\ntoken = \"T\"\n";
    assert!(matches!(Agent::from_toml(typo).unwrap_err(), AgentError::Parse { .. }));
}
