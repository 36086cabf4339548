"""The validated intermediate representation: typed Pydantic models, one per node kind."""
