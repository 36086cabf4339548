"""The validated intermediate representation: typed Pydantic models, one per node kind.

Importing the package completes the models (archlang.ir.nodes builds the unions their children use),
so `from archlang.ir import core` gives models ready to validate.
"""

from archlang.ir import nodes as _nodes  # noqa: F401 - completes the container models
