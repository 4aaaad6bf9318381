"""Benchmarks for the Jaga hub (issue 8). Run them with ``bench/run``; see docs/benchmarks.md.

Nothing here is a test: no benchmark asserts a time. Each one starts the processes it needs,
measures their CPU *time* over fixed windows together with what the clients really received,
and stops everything it started before it exits.
"""
