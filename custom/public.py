"""The public names of the hand-written layer, re-exported by ``amperity_async``."""

__all__: list[str] = []
