"""Benchmark plumbing: each benchmark records (table, row, column, value) and the session prints
the tables at the end, with ratios against the baseline named in the same run. The tables are
also written to build/bench/<table>.md so docs/BENCHMARKS.md can be refreshed from them."""
from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
_TABLES: dict[str, dict] = defaultdict(lambda: {"rows": {}, "columns": [], "notes": []})
_COLLECTED: dict[str, int] = {}  # suite file -> tests collected from it


class Recorder:
    def put(self, table: str, row: str, column: str, value) -> None:
        t = _TABLES[table]
        t["rows"].setdefault(row, {})[column] = value
        if column not in t["columns"]:
            t["columns"].append(column)

    def note(self, table: str, text: str) -> None:
        if text not in _TABLES[table]["notes"]:
            _TABLES[table]["notes"].append(text)


@pytest.fixture(scope="session")
def record() -> Recorder:
    return Recorder()


@pytest.fixture(scope="session")
def host_programs() -> Path:
    """The benchmark programs (abi_overhead.cpp, memory_floor.cpp, turn_floor.cpp), built
    engine-only into build/abi-bench: hosts with no Python in them."""
    out = REPO / "build" / "abi-bench"
    subprocess.run(["cmake", "-S", REPO, "-B", out, "-DIVCR_ENGINE_ONLY=ON", f"-DPython_EXECUTABLE={sys.executable}"],
                   check=True, capture_output=True)
    subprocess.run(["cmake", "--build", out, "--target", "ivcr_abi_bench", "ivcr_memory_floor", "ivcr_turn_floor",
                    "-j", str(os.cpu_count() or 2)], check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


def best_seconds(benchmark) -> float:
    """The fastest round: the least disturbed by other work on a shared machine."""
    return float(benchmark.stats.stats.min)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def _render(name: str, t: dict) -> str:
    cols = t["columns"]
    lines = [f"### {name}", "", "| case | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for row, vals in t["rows"].items():
        lines.append(f"| {row} | " + " | ".join(_fmt(vals.get(c, "")) for c in cols) + " |")
    lines += [""] + [f"- {n}" for n in t["notes"]]
    return "\n".join(lines) + "\n"


def pytest_terminal_summary(terminalreporter):
    if not _TABLES:
        return
    import ivcr_engine

    info = ivcr_engine.build_info()
    header = (f"machine: {platform.machine()} {platform.processor() or ''}, {info['num_threads']} threads, "
              f"SIMD {info['simd_active']}, {datetime.date.today().isoformat()}")
    out_dir = REPO / "build" / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    terminalreporter.write_sep("=", "ivcr_engine benchmark tables")
    terminalreporter.write_line(header)
    for name, t in _TABLES.items():
        text = _render(name, t)
        terminalreporter.write_line(text)
        (out_dir / f"{name.replace(' ', '_').replace('/', '-')}.md").write_text(header + "\n\n" + text)


def _requested_suites(config) -> list[Path]:
    """The bench_*.py files this run was asked for (a folder argument means every suite in it)."""
    out = []
    for arg in config.args:
        p = Path(arg.split("::")[0])
        p = p if p.is_absolute() else Path(config.invocation_params.dir) / p
        if p.is_dir():
            out += sorted(p.glob("bench_*.py"))
        elif p.name.startswith("bench_") and p.suffix == ".py":
            out.append(p)
    return [q.resolve() for q in out]


def pytest_collection_modifyitems(session, config, items):
    for item in items:
        f = str(Path(item.fspath).resolve())
        _COLLECTED[f] = _COLLECTED.get(f, 0) + 1


def pytest_sessionfinish(session, exitstatus):
    """A suite that collected nothing (a bad filter, a renamed test) fails the run loudly instead of
    printing no table."""
    empty = [p.name for p in _requested_suites(session.config) if _COLLECTED.get(str(p), 0) == 0]
    if empty:
        session.config.get_terminal_writer().line(
            f"benchmark suites that collected nothing: {', '.join(empty)}", red=True, bold=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
