//! What a turn does beyond the plain chat loop, per [`Pattern`](kaos_agent::Pattern).

pub(crate) mod research;
