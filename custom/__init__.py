"""The hand-written layer of amperity-async (installed as ``amperity_async.custom``).

Kept free of imports so that importing one of its modules loads only what that module needs; the
public names live in ``public.py`` and are re-exported by ``amperity_async``.
"""
