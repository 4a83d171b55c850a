use std::path::Path;
use std::sync::Arc;

use kaos_tools::{Tool, ToolRegistry};
use kaos_vfs::{DiskVfs, MemoryVfs, Vfs};

use crate::{RuntimeError, Settings};

/// The environment a Runner works in: a VFS, a tool registry and settings. Cheap to clone;
/// clones share the same VFS and tools.
#[derive(Debug, Clone)]
pub struct Runtime {
    vfs: Arc<dyn Vfs>,
    tools: ToolRegistry,
    settings: Arc<Settings>,
}

impl Runtime {
    /// A builder over an in-memory VFS with no tools and default settings.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder {
            vfs: Arc::new(MemoryVfs::new()),
            tools: ToolRegistry::new(),
            settings: Settings::default(),
        }
    }

    /// An isolated runtime for tests: in-memory VFS, no tools, default settings, and no disk
    /// side effects at all (nothing is created, read or written on disk).
    pub fn test_mode() -> Self {
        Self::builder().build()
    }

    /// A runtime whose VFS is the directory `root` (created when missing), so sessions
    /// survive the process.
    pub fn on_disk(root: impl AsRef<Path>) -> Result<Self, RuntimeError> {
        Ok(Self::builder().vfs(Arc::new(DiskVfs::new(root.as_ref())?)).build())
    }

    /// The virtual filesystem.
    pub fn vfs(&self) -> &Arc<dyn Vfs> {
        &self.vfs
    }

    /// The tool registry.
    pub fn tools(&self) -> &ToolRegistry {
        &self.tools
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// A builder holding this runtime's parts, to derive a changed runtime.
    pub fn to_builder(&self) -> RuntimeBuilder {
        RuntimeBuilder {
            vfs: self.vfs.clone(),
            tools: self.tools.clone(),
            settings: (*self.settings).clone(),
        }
    }
}

/// Builds a [`Runtime`].
#[derive(Debug)]
pub struct RuntimeBuilder {
    vfs: Arc<dyn Vfs>,
    tools: ToolRegistry,
    settings: Settings,
}

impl RuntimeBuilder {
    /// Uses `vfs` (any backend, including your own).
    pub fn vfs(mut self, vfs: Arc<dyn Vfs>) -> Self {
        self.vfs = vfs;
        self
    }

    /// Registers a tool; a duplicate name is an error.
    pub fn tool(mut self, tool: Arc<dyn Tool>) -> Result<Self, RuntimeError> {
        self.tools.register(tool)?;
        Ok(self)
    }

    /// Registers several tools.
    pub fn tools(mut self, tools: impl IntoIterator<Item = Arc<dyn Tool>>) -> Result<Self, RuntimeError> {
        self.tools.register_all(tools)?;
        Ok(self)
    }

    /// Registers the built-in session-scoped VFS tools (`kaos-vfs-read`, `-write`, `-list`, `-delete`).
    pub fn builtin_tools(self) -> Result<Self, RuntimeError> {
        self.tools(kaos_tools::builtin::vfs_tools())
    }

    /// Uses `settings`.
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// The runtime.
    pub fn build(self) -> Runtime {
        let tools = self.tools.with_default_timeout(self.settings.tool_timeout);
        Runtime { vfs: self.vfs, tools, settings: Arc::new(self.settings) }
    }
}
