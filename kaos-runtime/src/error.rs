use kaos_tools::ToolError;
use kaos_vfs::VfsError;

/// Why a runtime could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The VFS could not be opened (e.g. the data directory cannot be created).
    #[error("cannot open the VFS")]
    Vfs(#[from] VfsError),
    /// A tool could not be registered (e.g. a duplicate name).
    #[error("cannot register tool")]
    Tool(#[from] ToolError),
    /// A setting has a value that cannot be used.
    #[error("invalid setting {key}: {message}")]
    Setting {
        /// The setting (environment variable name).
        key: String,
        /// What is wrong with the value.
        message: String,
    },
}
