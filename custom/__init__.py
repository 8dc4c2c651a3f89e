"""The hand-written layer of amperity-async (installed as ``amperity_async.custom``).

Kept free of imports so that the spec pipeline (``custom.specs``) runs before the generated
package exists; the public names live in ``public.py``.
"""
