"""The pieces of ``benchmarks/run.py`` (``make bench``), one concern per module.

- ``settings``: run lengths per mode and the names shared by every section.
- ``processes``: child processes, CPU pinning, per-process CPU time and memory, bounded reads.
- ``chains``: Amperity-shaped static pages made from the fake tenant's data, and how a request
  names one of them.
- ``nginx``: a private nginx serving those pages on 127.0.0.1.
- ``naive``: an openapi-python-client client generated from the official documents, untouched.
- ``variants``: what each client variant does to walk a list (worker side).
- ``cells``: long-lived worker processes, interleaved rounds, medians (harness side).
- ``cli``: the ``amperity-async extract`` command as a user runs it, its memory and its output.
- ``tenant_sections``: rate fidelity, token refresh and extraction under faults (fake tenant).
- ``scaling``: room for ``--workers`` scaling and the distributed rate fidelity.
- ``profiling``: where a variant's CPU goes (py-spy).
- ``report``: the printed table and the targets.
"""
