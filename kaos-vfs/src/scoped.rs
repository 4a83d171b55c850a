// implemented by the kaos-vfs helper
