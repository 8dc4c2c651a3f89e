"""Repository tooling (the spec pipeline, the build backend); never part of the installed package."""
