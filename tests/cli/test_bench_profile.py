"""The profile summary of `kizuna bench classify --profile`: py-spy's collapsed stacks turned
into own time and time with callees, entry points left out."""

from __future__ import annotations

from services.cli.bench.profile import CpuMeter, Profiler, _frame


def profiler_reading(tmp_path, text: str) -> Profiler:
    p = Profiler.__new__(Profiler)  # no py-spy process: only the summary of a written file
    p.out = tmp_path / "raw.txt"
    p.out.write_text(text)
    return p


def test_frames_drop_line_numbers_and_long_paths():
    assert (
        _frame("handle (/work/main/services/classifier/pipeline.py:57)")
        == "handle (classifier/pipeline.py)"
    )


def test_own_and_inclusive_shares(tmp_path):
    main = "main (/x/services/cli.py:3)"
    handle = "handle (/x/services/classifier/pipeline.py:57)"
    figures = "compute_figures (/x/shared/cpm.py:107)"
    relay = "publish_once (/x/services/classifier/relay.py:70)"
    raw = "\n".join(
        [
            f"{main};{handle};{figures} 6",
            f"{main};{handle} 2",
            f"{main};{relay} 2",
            "garbage line",
        ]
    )
    rows = dict(profiler_reading(tmp_path, raw).summary())
    assert rows["profile: samples on CPU"] == "10"
    assert rows["own time: compute_figures (shared/cpm.py)"] == "60.0%"
    assert rows["own time: handle (classifier/pipeline.py)"] == "20.0%"
    assert rows["incl. callees: handle (classifier/pipeline.py)"] == "80.0%"
    assert "incl. callees: main (services/cli.py)" not in rows  # in every sample: no news


def test_no_samples_says_so(tmp_path):
    rows = profiler_reading(tmp_path, "").summary()
    assert rows[0][0] == "profile" and "no samples" in rows[0][1]


def test_cpu_rows_share_and_per_event():
    meter = CpuMeter()
    meter.used = {"classifier": 6.0, "PostgreSQL": 3.0, "broker (Tansu)": 1.0}
    rows = dict(meter.rows(wall=10.0, events=100_000))
    assert rows["CPU: classifier"].startswith("6.0 s (60% of used; 60 µs per event)")
    assert rows["CPU: used of what the machine had"].startswith("10.0 s of")
