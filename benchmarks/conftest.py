"""Benchmark plumbing: each benchmark records (table, row, column, value) and the session prints
the tables at the end, with ratios against the baseline named in the same run. The tables are
also written to build/bench/<table>.md so docs/BENCHMARKS.md can be refreshed from them."""
from __future__ import annotations

import datetime
import platform
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
_TABLES: dict[str, dict] = defaultdict(lambda: {"rows": {}, "columns": [], "notes": []})


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
