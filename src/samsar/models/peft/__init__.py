"""Fine-tuning methods, one file each, all implementing :class:`samsar.models.peft.base.PeftMethod`."""
