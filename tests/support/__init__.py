"""What the tests share (see tests/README.md): one module per job, no tests of their own.

- ``config``: the one config writer (``write_config``) and the in-memory ``make_config``;
- ``process``: the one way to run rssd as a subprocess (``run_rssd`` to its end,
  ``Daemon`` / ``Daemons`` for a process the test talks to while it runs);
- ``notify``: a NOTIFY_SOCKET bound by the test (systemd's side of sd_notify);
- ``commands``: the operator commands in-process, and a database filled by a real run;
- ``resilience``: hostile servers, bombs, and reading a database back after a run.
"""
