"""privfl: privacy-enhancing technologies for federated learning."""

__version__ = "0.1.0"
