"""tools/mutation_test.py: every curated snippet still exists, and the runner's verdicts.

A refactor that changes a mutated line fails here (update the mutation with the line), so
the mutation list cannot rot silently.
"""

import os

from tests.tools._load import REPO, load_tool

mutation_test = load_tool("mutation_test")

__all__ = []


def test_every_snippet_occurs_exactly_once():
    assert mutation_test.check_mutations(mutation_test.MUTATIONS) == []
    assert mutation_test.main(["--check"]) == 0
    assert len(mutation_test.MUTATIONS) >= 25


def test_every_test_selection_names_existing_test_files():
    for m in mutation_test.MUTATIONS:
        for selection in m.tests:
            path = selection.split()[0].split("::")[0]
            assert os.path.isfile(os.path.join(REPO, path)), (m.name, path)


def test_check_reports_a_missing_or_repeated_snippet(tmp_path):
    (tmp_path / "mod.py").write_text("x = 1\ny = 1\n")
    mutations = [
        mutation_test.Mutation("gone", "mod.py", "z = 1", "z = 2", ("t.py",), ""),
        mutation_test.Mutation("twice", "mod.py", " = 1", " = 2", ("t.py",), ""),
        mutation_test.Mutation("fine", "mod.py", "x = 1", "x = 2", ("t.py",), ""),
    ]
    problems = mutation_test.check_mutations(mutations, root=str(tmp_path))
    assert problems == [
        "gone: the original snippet is not found in mod.py",
        "twice: the original snippet is found 2 times in mod.py",
    ]


def test_run_mutation_reports_caught_and_survived_and_restores_the_file(tmp_path):
    source = "def answer():\n    return 42\n"
    (tmp_path / "mod.py").write_text(source)
    (tmp_path / "test_mod.py").write_text(
        "import mod\n\n\ndef test():\n    assert mod.answer() == 42\n"
    )

    def run(replacement):
        m = mutation_test.Mutation("m", "mod.py", "return 42", replacement, ("test_mod.py",), "")
        return mutation_test.run_mutation(str(tmp_path), m, timeout=60)[0]

    assert run("return 41") == "caught"
    assert run("return 40 + 2") == "survived"  # the same behaviour: no test can fail
    assert (tmp_path / "mod.py").read_text() == source


def test_an_unknown_name_is_an_error(capsys):
    assert mutation_test.main(["--check", "--only", "no_such_mutation"]) == 2
    assert "no_such_mutation" in capsys.readouterr().err


def test_a_k_selection_runs_alone_so_it_filters_only_its_own_file():
    runs = mutation_test._runs(["a.py", "b.py -k ema", "c.py::test_x"])
    assert runs == [["a.py", "c.py::test_x"], ["b.py -k ema"]]
