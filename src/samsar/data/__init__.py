"""samsar.data."""
