"""samsar.inference."""
