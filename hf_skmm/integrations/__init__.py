"""Hugging Face integration: extraction with Dataset.map under Accelerate, coreset output, Trainer recipe."""
