"""Starting a node: the checks serve and config check share, the first-run path, demo mode."""
