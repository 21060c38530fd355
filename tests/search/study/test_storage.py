"""`--storage URL` against a real PostgreSQL server that the tests start themselves: a search runs
on it out of the box, a bad URL stops before anything is written, the password reaches no file and
no console, and analyze.py reads the study from any machine."""

from __future__ import annotations

import optuna
import pytest
import yaml
from pg_server import PASSWORD, free_port
from search_harness import rows, run_search, search_argv, skip_reports, write_behaviour

from automl import paths, reasons
from automl.analysis.cli import main as analyze
from automl.paths import StudyPaths
from automl.search.study import records
from automl.search.study.loading import load_study
from automl.search.study.storage import hide_password, without_password


def files_text(root) -> str:
    """Every file under `root`, as text, for secrets that must not be there."""
    return "\n".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file())


@pytest.fixture
def log_root(tmp_path, monkeypatch):
    root = tmp_path / "log"
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(root))
    skip_reports(monkeypatch)
    return root


def test_a_search_runs_on_postgres_and_its_password_stays_out_of_files(
        postgres, log_root, tmp_path, capfd):
    url = postgres.create_database("single")
    fast = write_behaviour(tmp_path, "fast", seconds_per_point=0.01)
    code = run_search(search_argv(study="single", space="lr_prior.yaml", behaviour=fast,
                                  hp_trials=3, flags=["--storage", url, "--pruner", "none"]))
    out, err = capfd.readouterr()
    assert code == 0, err
    sp = StudyPaths.for_study("single")
    study = load_study(sp, url)
    assert sorted(t.number for t in study.trials) == [0, 1, 2]
    assert {t.user_attrs[records.STOP_REASON] for t in study.trials} == {reasons.COMPLETED}
    assert sorted(r["trial"] for r in rows(sp)) == ["0", "1", "2"]
    assert not sp.journal.exists()  # the study lives in the database
    assert PASSWORD not in files_text(log_root)
    assert PASSWORD not in out + err
    meta = yaml.safe_load(sp.meta.read_text())
    assert meta["storage"] == postgres.url("single", password=None)
    assert "--storage postgresql://automl:***@" in meta["sessions"][0]["command_line"]


BAD = {
    "unknown kind": lambda pg: "notadb://x",
    "refused password": lambda pg: pg.url("automl_bad", password="wrong-password"),
    "missing database": lambda pg: pg.url("no_such_db"),
    "unreachable host": lambda pg: f"postgresql://automl:{PASSWORD}@127.0.0.1:{free_port()}/x",
}
EXPECTED = {
    "unknown kind": "SQLAlchemy knows no database of that kind",
    "refused password": "refused the user or password",
    "missing database": "the database does not exist",
    "unreachable host": "cannot be reached",
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_storage_url_exits_2_with_one_message_and_writes_nothing(
        case, postgres, log_root, tmp_path, capfd):
    url = BAD[case](postgres)
    fast = write_behaviour(tmp_path, "fast")
    code = run_search(search_argv(study="bad", space="lr_prior.yaml", behaviour=fast, hp_trials=2,
                                  flags=["--storage", url]))
    out, err = capfd.readouterr()
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "`--storage`" in lines[0] and EXPECTED[case] in lines[0] and "Fix:" in lines[0]
    assert "Traceback" not in out + err
    assert PASSWORD not in out + err and "wrong-password" not in out + err
    assert not log_root.exists() or not any(log_root.rglob("*")), "something was written"


def test_analyze_reads_a_shared_study_from_another_machine(postgres, log_root, tmp_path,
                                                            monkeypatch, capfd):
    url = postgres.create_database("shared_read")
    fast = write_behaviour(tmp_path, "fast", seconds_per_point=0.01)
    assert run_search(search_argv(study="shared", space="lr_prior.yaml", behaviour=fast,
                                  hp_trials=3, flags=["--storage", url, "--pruner", "none"])) == 0
    capfd.readouterr()
    # Another machine: an empty log folder, only the URL and the study's name.
    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(elsewhere))
    assert analyze(["--storage", url, "--study-name", "shared"]) == 0
    out, err = capfd.readouterr()
    assert "study shared: 3 search trials" in out
    assert "3 complete" in out
    local = StudyPaths(elsewhere / "automl" / "shared")
    assert local.search_space.exists()  # the space came from the study: parameters by name
    assert "learning_rate" in local.experiment_df_csv.read_text()
    assert PASSWORD not in out + err


def test_analyze_storage_errors_are_one_message(postgres, log_root, capfd):
    assert analyze(["--storage", postgres.url("automl_bad", password="nope")]) == 2
    assert "--study-name" in capfd.readouterr().err
    assert analyze(["--storage", postgres.url("postgres"), "--study-name", "x"]) == 2
    err = capfd.readouterr().err
    assert "no study of that name" in err and PASSWORD not in err


@pytest.mark.parametrize(("text", "hidden"), [
    ("--storage postgresql://u:p%40ss@h:5/db", "--storage postgresql://u:***@h:5/db"),
    ("mysql+pymysql://root:x@h/d and sqlite:///a.db", "mysql+pymysql://root:***@h/d and sqlite:///a.db"),
    ("postgresql://u@h/db", "postgresql://u@h/db"),
])
def test_hide_password(text, hidden):
    assert hide_password(text) == hidden


def test_without_password_keeps_a_usable_url():
    assert without_password("postgresql://u:pw@h:5/db") == "postgresql://u@h:5/db"
    assert without_password("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


def test_analyze_of_the_study_folder_uses_the_url_without_password_and_pgpassword(
        postgres, log_root, tmp_path, monkeypatch, capfd):
    """meta.yaml keeps the URL without its password: analyze.py --study NAME needs PGPASSWORD."""
    url = postgres.create_database("folder_read")
    fast = write_behaviour(tmp_path, "fast", seconds_per_point=0.01)
    assert run_search(search_argv(study="folder", space="lr_prior.yaml", behaviour=fast,
                                  hp_trials=2, flags=["--storage", url, "--pruner", "none"])) == 0
    capfd.readouterr()
    monkeypatch.delenv("PGPASSWORD", raising=False)
    assert analyze(["--study", "folder"]) == 2
    err = capfd.readouterr().err
    assert "PGPASSWORD" in err and PASSWORD not in err
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    assert analyze(["--study", "folder"]) == 0
    assert "study folder: 2 search trials" in capfd.readouterr().out


def test_sqlite_urls_keep_working(log_root, tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    fast = write_behaviour(tmp_path, "fast", seconds_per_point=0.01)
    assert run_search(search_argv(study="lite", space="lr_prior.yaml", behaviour=fast,
                                  hp_trials=2, flags=["--storage", url, "--pruner", "none"])) == 0
    trials = load_study(StudyPaths.for_study("lite"), url).trials
    assert [t.user_attrs[records.STOP_REASON] for t in trials] == [reasons.COMPLETED] * 2


def test_machines_opening_a_new_database_at_once_all_get_it(postgres, tmp_path):
    """Each one creates Optuna's tables; PostgreSQL fails all but one of those who race."""
    import threading

    from automl.search.study.storage import open_storage

    failures: list[str] = []

    def open_it(url: str) -> None:
        try:
            open_storage(StudyPaths(tmp_path / "unused"), url)
        except Exception as err:  # noqa: BLE001 - collected for the assertion
            failures.append(repr(err))

    for attempt in range(4):
        url = postgres.create_database(f"race_{attempt}")
        threads = [threading.Thread(target=open_it, args=(url,)) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []


def test_a_joining_machine_trains_with_the_overrides_the_study_started_with(
        postgres, tmp_path, monkeypatch, capfd):
    # Machine a starts the study; machine b (its own, empty log folder) joins it: another frame
    # count is refused, and without one it trains with the study's.
    url = postgres.create_database("joined")
    behaviour = write_behaviour(tmp_path, "flat", seconds_per_point=0.01)
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp_path / "a"))
    first = search_argv(study="joined", space="lr_prior.yaml", behaviour=behaviour, hp_trials=1,
                        flags=["--storage", url])
    assert run_search(first) == 0
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp_path / "b"))
    capfd.readouterr()
    join = search_argv(study="joined", space=None, behaviour=behaviour, hp_trials=2,
                       flags=["--storage", url, "--resume"])
    other = [a for a in join if a != "train.frames=100000"] + ["train.frames=50000"]
    assert run_search(other) == 2
    err = capfd.readouterr().err
    assert "train.frames" in err and "100000" in err and "50000" in err
    plain = [a for a in join if a != "train.frames=100000"]
    assert run_search(plain) == 0
    trials = optuna.load_study(study_name="joined", storage=url).get_trials(deepcopy=False)
    assert sorted(t.user_attrs.get(records.FRAMES) for t in trials) == [100_000, 100_000]
    # A third machine joins without --hp-trials: the study's count (2, its latest session's), not
    # the default's 8; both trials are done, so it trains none. Machine a, whose own folder says 1,
    # takes 2 too: the study's latest session ran elsewhere.
    at = plain.index("--hp-trials")
    for machine in ("c", "a"):
        monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp_path / machine))
        assert run_search(plain[:at] + plain[at + 2:]) == 0
        assert len(optuna.load_study(study_name="joined", storage=url).get_trials(deepcopy=False)) == 2
        meta = yaml.safe_load(StudyPaths(tmp_path / machine / "automl" / "joined").meta.read_text())
        assert meta["sessions"][-1]["hp_trials"] == 2
