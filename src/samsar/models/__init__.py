"""samsar.models."""
