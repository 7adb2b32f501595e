"""GRPO fine-tuning with TRL."""
