//! Every malformed agent file gets a typed error that names its field: a corpus of broken
//! TOML and JSON agent files (syntax, wrong types, out-of-range and unknown values, unknown
//! fields, bad nesting), each with the field its error must name.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kaos_agent::{Agent, AgentError};

/// (agent file, the field its error names)
const TOML: &[(&str, &str)] = &[
    // Syntax errors: the parser stops before any field is read.
    ("name = \"a\nmodel = \"openai:gpt-4.1\"\n", "name"),
    ("name = 'unterminated\n", "name"),
    ("instructions = \"\"\"never closed\n", "instructions"),
    ("name = \"a\"\nname = \"b\"\n", "name"),
    ("[budget]\nmax_cost_usd = 1.0.0\n", "budget.max_cost_usd"),
    ("[budget\nmax_cost_usd = 1\n", "budget"),
    ("[limits]\nmax_iterations = 08\n", "limits.max_iterations"),
    ("tools = [\"a\", \"b\"\n", "tools"),
    ("[metadata]\nteam = care\n", "metadata.team"),
    ("model = openai:gpt\n", "model"),
    ("[[permissions]]\ntool = \"x\"\nargs = { path = }\n", "permissions.args"),
    ("[budget]\nmax_tokens = 1_\n", "budget.max_tokens"),
    // Wrong types.
    ("name = 3\n", "name"),
    ("instructions = [\"a\"]\n", "instructions"),
    ("tools = \"kaos-vfs-*\"\n", "tools"),
    ("tools = [\"ok\", 3]\n", "tools[1]"),
    ("[budget]\nmax_cost_usd = \"a lot\"\n", "budget.max_cost_usd"),
    ("[budget]\nmax_tokens = -5\n", "budget.max_tokens"),
    ("[budget]\nmax_tokens = 1.5\n", "budget.max_tokens"),
    ("[budget]\nmax_tool_calls = 99999999999\n", "budget.max_tool_calls"),
    ("[limits]\nmax_iterations = 0\n", "limits.max_iterations"),
    ("[limits]\nmax_iterations = true\n", "limits.max_iterations"),
    ("[limits]\nmax_tools = -1\n", "limits.max_tools"),
    ("budget = 3\n", "budget"),
    ("limits = \"none\"\n", "limits"),
    ("[metadata]\nteam = 3\n", "metadata.team"),
    ("[[permissions]]\ntool = 7\n", "permissions[0].tool"),
    ("[[permissions]]\ntool = \"x\"\ndecision = \"maybe\"\n", "permissions[0].decision"),
    (
        "[[permissions]]\ntool = \"x\"\ndecision = \"deny\"\n[[permissions]]\ntool = \"y\"\nargs = \"path\"\ndecision = \"ask\"\n",
        "permissions[1].args",
    ),
    ("[[permissions]]\ntool = \"x\"\n", "permissions[0]"),
    ("[memory.sections.messages]\nbudget_tokens = 0\n", "memory.sections.messages.budget_tokens"),
    ("[memory.sections.messages]\nbudget_tokens = \"lots\"\n", "memory.sections.messages.budget_tokens"),
    ("[memory.sections.messages]\neviction = \"random\"\n", "memory.sections.messages.eviction"),
    // Unknown values.
    ("pattern = \"planner\"\n", "pattern"),
    ("model = \"gpt-4\"\n", "model"),
    ("model = \"OpenAI:gpt\"\n", "model"),
    ("fallback_models = [\"openai:gpt-4.1\", \"nope\"]\n", "fallback_models[1]"),
    ("[role_models]\nclassify = \"bad\"\n", "role_models.classify"),
    ("[role_models]\ndream = \"openai:gpt-4.1\"\n", "role_models.dream"),
    // Unknown fields.
    ("name = \"a\"\ninstructons = \"typo\"\n", "instructons"),
    ("[budget]\nmax_dollars = 1\n", "budget.max_dollars"),
    ("[limits]\nmax_iteration = 3\n", "limits.max_iteration"),
    ("[memory.sections.messages]\nevict = \"fifo\"\n", "memory.sections.messages.evict"),
    ("[[permissions]]\ntool = \"x\"\ndecison = \"deny\"\n", "permissions[0].decison"),
];

const JSON: &[(&str, &str)] = &[
    ("{\"name\": \"a\",}", "name"),
    ("{\"name\": \"a\"", "name"),
    ("{\"name\": \"a\"} trailing", "(top level)"),
    ("\"agent\"", "(top level)"),
    ("{\"budget\": {\"max_cost_usd\": \"x\"}}", "budget.max_cost_usd"),
    ("{\"budget\": {\"max_tokens\": -1}}", "budget.max_tokens"),
    ("{\"limits\": {\"max_iterations\": 0}}", "limits.max_iterations"),
    ("{\"tools\": [\"a\", null]}", "tools[1]"),
    ("{\"permissions\": [{\"tool\": \"x\", \"decision\": 1}]}", "permissions[0].decision"),
    ("{\"pattern\": \"planner\"}", "pattern"),
    ("{\"model\": \"gpt-4\"}", "model"),
    ("{\"budget\": {\"max_dollars\": 1}}", "budget.max_dollars"),
    (
        "{\"memory\": {\"sections\": {\"messages\": {\"budget_tokens\": 0}}}}",
        "memory.sections.messages.budget_tokens",
    ),
    ("{\"metadata\": {\"team\": [1]}}", "metadata.team"),
];

#[test]
fn every_malformed_agent_file_names_its_field() {
    let mut unnamed = Vec::new();
    let cases = TOML.iter().map(|(text, field)| ("TOML", text, field, Agent::from_toml(text)));
    let cases = cases.chain(JSON.iter().map(|(text, field)| ("JSON", text, field, Agent::from_json(text))));
    for (format, text, field, result) in cases {
        let err = match result {
            Ok(agent) => panic!("{format} {text:?} was accepted: {agent:?}"),
            Err(err) => err,
        };
        let named = match &err {
            AgentError::Parse { format: f, field: got, .. } => {
                assert_eq!(f, &format);
                got == field
            }
            other => other.to_string().contains(*field),
        };
        if !named {
            unnamed.push(format!("{format} {text:?}: wanted `{field}`, got {err}"));
        }
    }
    assert!(
        unnamed.is_empty(),
        "{} of {} errors do not name their field:\n{}",
        unnamed.len(),
        TOML.len() + JSON.len(),
        unnamed.join("\n")
    );
}
