"""samsar.reporting."""
