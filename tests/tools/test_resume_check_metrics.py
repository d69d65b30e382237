"""resume_check's judgement of metrics.json, on hand-written files (no training runs)."""

import json

from tests.tools._load import load_tool

judge = load_tool("resume_judge")

TRAIN = ["total_loss", "lr", "time"]
EVAL = ["classification/top1"]
# An uninterrupted run: LOG_PERIOD 5, an evaluation at iteration 9 (written with that line).
UNINTERRUPTED = [(4, TRAIN), (9, TRAIN + EVAL), (14, TRAIN), (19, TRAIN + EVAL)]


def _write(directory, lines):
    directory.mkdir()
    with open(directory / "metrics.json", "w") as f:
        for iteration, keys in lines:
            f.write(json.dumps({"iteration": iteration, **{k: 0.5 for k in keys}}) + "\n")
    return str(directory)


def _problems(tmp_path, lines, stops=()):
    tmp_path.mkdir(exist_ok=True)
    expected = _write(tmp_path / "expected", UNINTERRUPTED)
    return judge.metrics_problems(_write(tmp_path / "got", lines), expected, stops)


def test_the_same_lines_pass_with_or_without_timings(tmp_path):
    assert _problems(tmp_path / "same", UNINTERRUPTED) == []
    # The iteration timer measures no iteration right after the resume at 10.
    untimed = [*UNINTERRUPTED[:2], (14, ["total_loss", "lr"]), UNINTERRUPTED[3]]
    assert _problems(tmp_path / "untimed", untimed) == []


def test_a_preempted_runs_line_at_its_stop_iteration_is_no_fault(tmp_path):
    # SIGTERM seen after iteration 4: the run saved and wrote its metrics at iteration 6.
    preempted = [(4, TRAIN), (6, TRAIN), *UNINTERRUPTED[1:]]
    assert _problems(tmp_path, preempted, stops=[6]) == []
    # The same line from a run that was not preempted there is a fault.
    (problem,) = judge.metrics_problems(
        str(tmp_path / "got"), str(tmp_path / "expected"), stop_iterations=[]
    )
    assert problem == "metrics.json has lines the uninterrupted run has not: [6]"


def test_a_lost_evaluation_is_found_even_when_the_iterations_match(tmp_path):
    # The epoch-end evaluation at 9 never reached metrics.json before the kill.
    lost = [(4, TRAIN), (9, TRAIN), *UNINTERRUPTED[2:]]
    (problem,) = _problems(tmp_path, lost)
    assert problem == (
        "metrics.json line of iteration 9: missing ['classification/top1'], unexpected []"
    )


def test_a_stop_line_must_still_hold_what_the_uninterrupted_line_holds(tmp_path):
    lost = [(4, TRAIN), (9, TRAIN), *UNINTERRUPTED[2:]]
    assert _problems(tmp_path / "lost", lost, stops=[9]) != []
    more = [(4, TRAIN), (9, TRAIN + EVAL + ["extra"]), *UNINTERRUPTED[2:]]
    assert _problems(tmp_path / "more", more, stops=[9]) == []


def test_missing_repeated_and_unordered_lines_are_reported(tmp_path):
    bad = [(4, TRAIN), (14, TRAIN), (9, TRAIN + EVAL), (14, TRAIN)]
    problems = _problems(tmp_path, bad)
    assert "metrics.json repeats iterations [14]" in problems
    assert "metrics.json iterations are not in increasing order" in problems
    assert "metrics.json lacks the lines of iterations [19]" in problems
