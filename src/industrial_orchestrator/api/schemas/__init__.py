"""Request and response models, apart from the tables and the domain."""
