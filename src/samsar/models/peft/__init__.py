"""samsar.models.peft."""
