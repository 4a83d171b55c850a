//! The agent card, generated from the runner's agent: its name and description, one skill for
//! its pattern, one per delegate and one per tool offered to the model, streaming, and the
//! bearer scheme the server asks for.

use std::collections::BTreeMap;

use kaos_a2a::{
    AgentCapabilities, AgentCard, AgentInterface, AgentSkill, BINDING_JSONRPC, PROTOCOL_VERSION,
    SecurityRequirement, SecurityScheme, StringList,
};
use kaos_agent::Pattern;
use kaos_runner::Runner;

/// The media types a task accepts and produces.
pub(super) const TEXT: &str = "text/plain";
pub(super) const JSON: &str = "application/json";

/// The name of the bearer scheme in the card.
const BEARER: &str = "bearer";

pub(super) fn agent_card(runner: &Runner, url: &str) -> AgentCard {
    let agent = runner.agent();
    let config = agent.config();
    let pattern = agent.pattern();
    let description = config
        .metadata
        .get("description")
        .cloned()
        .unwrap_or_else(|| format!("The KAOS agent `{}` ({} pattern).", agent.name(), pattern.as_str()));
    let mut skills = vec![AgentSkill {
        id: pattern.as_str().to_owned(),
        name: format!("{} ({})", agent.name(), pattern.as_str()),
        description: pattern_description(pattern).to_owned(),
        tags: vec!["pattern".to_owned(), pattern.as_str().to_owned()],
        examples: Vec::new(),
        input_modes: Vec::new(),
        output_modes: Vec::new(),
        security_requirements: Vec::new(),
    }];
    let delegates: Vec<&str> = config.delegates.iter().map(|d| d.name.as_str()).collect();
    for delegate in &config.delegates {
        skills.push(skill(
            format!("delegate:{}", delegate.name),
            &delegate.name,
            &delegate.description,
            "delegate",
        ));
    }
    let registry = runner.runtime().tools();
    for name in runner.tool_names() {
        if delegates.contains(&name) {
            continue;
        }
        let description = registry.get(name).map(|tool| tool.spec().description.clone()).unwrap_or_default();
        skills.push(skill(format!("tool:{name}"), name, &description, "tool"));
    }
    AgentCard {
        name: agent.name().to_owned(),
        description,
        supported_interfaces: vec![AgentInterface {
            url: url.to_owned(),
            protocol_binding: BINDING_JSONRPC.to_owned(),
            tenant: None,
            protocol_version: PROTOCOL_VERSION.to_owned(),
        }],
        provider: None,
        // The agent's own version: its fingerprint changes whenever its definition does.
        version: agent.fingerprint().to_string(),
        documentation_url: None,
        capabilities: AgentCapabilities {
            streaming: Some(true),
            push_notifications: Some(false),
            extensions: Vec::new(),
            extended_agent_card: Some(false),
        },
        security_schemes: BTreeMap::from([(
            BEARER.to_owned(),
            SecurityScheme::bearer("A token given to `kaos serve --http --token CALLER=TOKEN`"),
        )]),
        security_requirements: vec![SecurityRequirement {
            schemes: BTreeMap::from([(BEARER.to_owned(), StringList::default())]),
        }],
        default_input_modes: vec![TEXT.to_owned(), JSON.to_owned()],
        default_output_modes: vec![TEXT.to_owned()],
        skills,
        signatures: Vec::new(),
        icon_url: None,
    }
}

fn skill(id: String, name: &str, description: &str, kind: &str) -> AgentSkill {
    AgentSkill {
        id,
        name: name.to_owned(),
        description: if description.is_empty() {
            format!("The {kind} `{name}`.")
        } else {
            description.to_owned()
        },
        tags: vec![kind.to_owned()],
        examples: Vec::new(),
        input_modes: Vec::new(),
        output_modes: Vec::new(),
        security_requirements: Vec::new(),
    }
}

fn pattern_description(pattern: Pattern) -> &'static str {
    match pattern {
        Pattern::Chat => "Answers, calling its tools in a loop when it needs them.",
        Pattern::Research => "Answers from the session's documents with verified citations, or refuses.",
        Pattern::Plan => "Proposes a plan, executes its steps and replans within bounds.",
        Pattern::Findings => "Extracts findings from many documents, filters them and writes a synthesis.",
        Pattern::Router => "Classifies each message and answers it with the fitting pattern.",
        _ => "Answers messages.",
    }
}
