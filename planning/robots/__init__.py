"""Robot adapters behind :mod:`planning.robot`'s ``Robot`` protocol."""
