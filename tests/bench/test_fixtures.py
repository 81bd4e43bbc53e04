"""bench.fixtures: goals written once with ``met`` computed from them, the camera-sized JPEGs,
and the preprocess suite's ratios built on them."""
from __future__ import annotations

from PIL import Image

from bench.fixtures import Goal, camera_jpegs, paired_rounds, ratio
from bench.suite_preprocess import README_PAIRS, SIMD_GOAL, _simd_ratios


def test_goal_met_follows_its_operator_and_bound():
    at_most, at_least = Goal("<=", 0.75), Goal(">=", 0.95)
    assert str(at_most) == "<= 0.75" and str(at_least) == ">= 0.95"
    assert at_most.met(0.75) and at_most.met(0.1, 0.7) and not at_most.met(0.7, 0.76)
    assert at_least.met(0.95, 1.2) and not at_least.met(0.949)


def test_ratio_dict_carries_goal_met_and_readme_mark():
    row = ratio("a / b", 0.70001, Goal("<=", 0.75), also=(0.8,), readme=True, note="x")
    assert row == {"name": "a / b", "value": 0.7, "goal": "<= 0.75", "met": False, "note": "x", "readme": True}
    plain = ratio("c / d", 2.0)
    assert plain == {"name": "c / d", "value": 2.0, "goal": None, "met": None}


def test_preprocess_ratios_mark_only_the_readme_pairs():
    timings = {"kernel float32 (HWC input)": 0.1, "pillow-simd resize alone": 0.2,
               "kernel float32 bilinear, 4000x3000": 9.0, "pillow-simd resize alone, 4000x3000": 6.0,
               "kernel float32 bicubic (HWC input)": 0.15, "pillow-simd bicubic resize alone": 0.25}
    pairs = {"kernel float32 (HWC input)": "pillow-simd resize alone",
             "kernel float32 bilinear, 4000x3000": "pillow-simd resize alone, 4000x3000",
             "kernel float32 bicubic (HWC input)": "pillow-simd bicubic resize alone",
             "kernel float32 (CHW npz view input)": "pillow-simd missing"}
    ratios = _simd_ratios(timings, dict(timings), pairs)
    with_goal = {r["name"]: r for r in ratios if r["goal"]}
    assert len(with_goal) == 3 and all(r["goal"] == str(SIMD_GOAL) for r in with_goal.values())
    assert with_goal["kernel float32 (HWC input) / pillow-simd resize alone"]["met"] is True
    assert with_goal["kernel float32 bilinear, 4000x3000 / pillow-simd resize alone, 4000x3000"]["met"] is False
    marked = {r["name"] for r in ratios if r.get("readme")}
    assert marked == {f"{k} / {b}" for k, b in README_PAIRS}


def test_camera_jpegs_are_jpegs_of_the_size_asked(tmp_path):
    paths = camera_jpegs(tmp_path, 5, size=(400, 300))
    assert len({p.name for p in paths}) == 5
    for path in paths:
        with Image.open(path) as im:
            assert (im.format, im.size, im.mode) == ("JPEG", (400, 300), "RGB")
    assert camera_jpegs(tmp_path, 5, size=(400, 300)) == paths  # made once, then reused


def test_paired_rounds_alternate_loop_and_engine_and_pair_their_ratios():
    calls = []

    def loop():
        calls.append("loop")
        return 100.0 * len(calls)

    def engine(r):
        calls.append(f"engine {r}")
        return {"throughput_qps": 90.0 * len(calls), "round": r}

    paired = paired_rounds(3, loop, engine)
    assert calls == ["loop", "engine 0", "loop", "engine 1", "loop", "engine 2"]
    assert paired.loop == [100.0, 300.0, 500.0] and paired.engine == [180.0, 360.0, 540.0]
    assert paired.per_round == [1.8, 1.2, 540.0 / 500.0]
    assert paired.ratio == 1.2 and paired.report == {"throughput_qps": 540.0, "round": 2}
