"""samsar.evaluation."""
