"""Benchmark session set-up (benchmarks/harness.py): machine facts go into every
pytest-benchmark JSON, and the rows recorded by the benchmarks are appended to the
machine's results table at the end of the session.

Options: ``--results-csv PATH`` (default ``benchmarks/results/<machine>.csv``),
``--no-results-csv`` (time only, write nothing)."""
from __future__ import annotations

import datetime
import os


def pytest_addoption(parser):
    g = parser.getgroup("mzsr benchmarks")
    g.addoption("--results-csv", default=None, help="results table to append to (default: "
                "benchmarks/results/<machine>.csv)")
    g.addoption("--no-results-csv", action="store_true", help="do not append rows to a results table")


_LOAD: list[float] = []


def pytest_sessionstart(session):
    _LOAD.append(os.getloadavg()[0])


def pytest_benchmark_update_json(config, benchmarks, output_json):
    from benchmarks.harness import machine_info, machine_kind

    info = machine_info()
    output_json["mzsr_machine"] = info
    output_json["mzsr_machine_kind"] = machine_kind(info)


def pytest_sessionfinish(session, exitstatus):
    from benchmarks import harness

    if not harness.RECORDS or session.config.getoption("no_results_csv"):
        return
    path = session.config.getoption("results_csv") or harness.results_csv()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    # the 1-minute load average at the start and the end: a shared machine's numbers need it
    load = f"; load {_LOAD[0] if _LOAD else float('nan'):.1f} -> {os.getloadavg()[0]:.1f}"
    rows = harness.aggregate(harness.RECORDS, date, harness.git_commit(),
                             "pytest " + " ".join(session.config.args) + load)
    harness.append_rows(path, rows)
    harness.RECORDS.clear()
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.write_line(f"mzsr benchmarks: {len(rows)} rows appended to {path}")
