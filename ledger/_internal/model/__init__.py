"""The base model θ0: building one, and loading it as every fine-tune sees it."""
