"""samsar.tracking."""
