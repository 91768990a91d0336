"""samsar.training."""
