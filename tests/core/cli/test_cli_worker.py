"""`slmrec submit | worker | cancel | app` as a user types them, on the generated toy dataset."""

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from core.cli import main
from core.store import runs as run_store
from core.store.paths import Paths
from core.jobs.registry import alive_workers

TINY = ["--preset", "tiny", "--dataset", "toy", "--kcore", "0", "--device", "cpu"]


def slmrec(root: Path, *args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "core.cli", "--root", str(root), *args], text=True, **popen)


def submit(root: Path, capsys, *args: str) -> tuple[int, dict | str]:
    code = main(["--root", str(root), "submit", *args])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if "--json" in args and code == 0 else captured.out + captured.err)


def spec_of(root: Path, run_id: str) -> dict:
    return run_store.read_spec(Paths(root).runs, run_id)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def test_submit_returns_queued_runs_and_a_worker_runs_them(project, capsys):
    started = time.monotonic()
    code, out = submit(project, capsys, "teacher", *TINY, "--max-steps", "2", "--json")
    assert code == 0 and time.monotonic() - started < 5
    assert [r["kind"] for r in out["runs"]] == ["sasrec", "teacher"] and out["run_id"] == out["run_ids"][-1]
    assert {r["status"] for r in out["runs"]} == {"queued"}
    worker = slmrec(project, "worker", "--once", "--device", "cpu", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log, _ = worker.communicate(timeout=300)
    assert worker.returncode == 0, log
    assert log.count(": done") == 2 and log.index("sasrec starts") < log.index("teacher starts"), log
    main(["--root", str(project), "query", "SELECT DISTINCT model FROM metrics WHERE split = 'test' ORDER BY 1",
          "--json"])
    assert [r["model"] for r in json.loads(capsys.readouterr().out)] == ["popularity", "sasrec", "teacher"]
    state = run_store.read_state(Paths(project).runs, out["run_id"])
    assert (state["status"], state["progress"], state["device"]) == ("done", 1.0, "cpu") and state["worker_id"]


def test_submit_pipeline_links_the_chain_and_reuses_unchanged_links(project, capsys):
    code, out = submit(project, capsys, "pipeline", *TINY, "--teacher-depth", "4", "--student-layers", "2", "--json")
    assert code == 0
    sasrec, teacher, student, analysis = out["run_ids"]
    assert [r["kind"] for r in out["runs"]] == ["sasrec", "teacher", "student", "analysis"]
    specs = {r: spec_of(project, r) for r in out["run_ids"]}
    assert specs[teacher]["parent_id"] == sasrec and specs[teacher]["spec"]["backbone"]["depth"] == 4
    s = specs[student]["spec"]
    assert specs[student]["parent_id"] == teacher and s["distill"]["teacher_run"] == teacher
    assert s["backbone"]["depth"] == 2 and s["sasrec_run"] == sasrec
    a = specs[analysis]
    assert a["parent_id"] == student
    assert (a["spec"]["analysis"]["run"], a["spec"]["analysis"]["against"]) == (student, teacher)
    # the same submission again: every run is reused; a new student only: sasrec and teacher reused
    assert submit(project, capsys, "pipeline", *TINY, "--teacher-depth", "4", "--student-layers", "2",
                  "--json")[1]["run_ids"] == out["run_ids"]
    again = submit(project, capsys, "pipeline", *TINY, "--teacher-depth", "4", "--student-layers", "1",
                   "--blocks", "1", "--lambda-cos", "0.5", "--json")[1]["run_ids"]
    assert again[:2] == [sasrec, teacher] and not set(again[2:]) & set(out["run_ids"])
    # a teacher submitted on its own with the same options is the pipeline's teacher
    assert submit(project, capsys, "teacher", *TINY, "--teacher-depth", "4", "--json")[1]["run_id"] == teacher
    code, text = submit(project, capsys, "pipeline", *TINY, "--teacher-depth", "4", "--student-layers", "2",
                        "--blocks", "3")
    assert code == 2 and "valid B: 1, 2" in text
    code, text = submit(project, capsys, "pipeline", *TINY, "--teacher-depth", "4")
    assert code == 2 and "--student-layers is required" in text
    code, text = submit(project, capsys, "sasrec", *TINY, "--seed", "5")
    assert code == 0 and "queued" in text and "no worker is running" in text


def test_cancel_command(project, capsys):
    run_id = submit(project, capsys, "sasrec", *TINY, "--json")[1]["run_id"]
    assert main(["--root", str(project), "cancel", run_id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"run_id": run_id, "status": "cancelled"}
    assert main(["--root", str(project), "cancel", run_id]) == 1
    assert "already ended (cancelled)" in capsys.readouterr().err
    assert main(["--root", str(project), "cancel", "20000101-000000-000000-sasrec-abcdef"]) == 1
    assert "no run" in capsys.readouterr().err
    assert main(["--root", str(project), "cancel", "../etc"]) == 1
    assert "invalid run id" in capsys.readouterr().err


def test_app_without_a_ui_runs_one_worker_and_stops_it(project):
    paths = Paths(project)
    app = slmrec(project, "app", "--port", str(free_port()), "--script", str(project / "missing.py"),
                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    (worker,) = wait_until(lambda: alive_workers(paths), 30, "the app's worker")
    second = slmrec(project, "app", "--port", str(free_port()), "--script", str(project / "missing.py"),
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = second.communicate(timeout=30)
    assert second.returncode == 0 and f"using the running worker {worker['worker_id']}" in out
    assert [w["pid"] for w in alive_workers(paths)] == [worker["pid"]]  # never a second worker
    app.send_signal(signal.SIGTERM)
    out, _ = app.communicate(timeout=30)
    assert app.returncode == 0 and "the UI is not built yet" in out and "stopping the worker" in out
    assert alive_workers(paths) == [] and not list((paths.data_root / "workers").glob("*.json"))


def test_app_refuses_a_busy_port(project):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        app = slmrec(project, "app", "--port", str(port), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out, _ = app.communicate(timeout=30)
    assert app.returncode == 1 and f"port {port} on 127.0.0.1 is already in use" in out
    assert alive_workers(Paths(project)) == []


def test_app_serves_the_streamlit_script_then_stops_everything(project):
    script = project / "ui.py"
    script.write_text("import os\nimport streamlit as st\nst.write(os.environ['SLMREC_ROOT'])\n")
    port = free_port()
    app = slmrec(project, "app", "--port", str(port), "--script", str(script),
                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def healthy() -> bool:
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read() == b"ok"
        except OSError:
            return False

    try:
        wait_until(healthy, 60, "Streamlit to answer")
        assert len(alive_workers(Paths(project))) == 1
    finally:
        app.send_signal(signal.SIGTERM)
        out, _ = app.communicate(timeout=30)
    assert app.returncode == 0 and f"http://127.0.0.1:{port}" in out, out
    assert alive_workers(Paths(project)) == [] and not healthy()


def test_run_in_the_foreground_waits_for_a_run_a_worker_holds(project, capsys):
    paths = Paths(project)
    run_id = submit(project, capsys, "sasrec", *TINY, "--json")[1]["run_id"]
    assert run_store.claim(paths.runs, run_id, "some-worker")
    finish = threading.Timer(0.5, lambda: run_store.update_state(paths.runs, run_id, status="done"))
    finish.start()
    assert main(["--root", str(project), "run", "sasrec", *TINY, "--json"]) == 0
    finish.join()
    assert json.loads(capsys.readouterr().out)["run_id"] == run_id
    assert "sasrec run" not in run_store.read_log(paths.runs, run_id)  # not executed a second time here


def test_output_cut_short_by_the_reader_is_not_an_error(project):
    # `slmrec query ... | head -1`: the reader closes the pipe after one line
    sql = "SELECT * FROM range(200000)"
    writer = slmrec(project, "query", sql, "--csv", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    writer.stdout.readline()
    writer.stdout.close()
    _, err = writer.communicate(timeout=120)
    assert writer.returncode == 0
    assert "Traceback" not in err and "BrokenPipeError" not in err


def test_compile_option_reaches_the_spec_and_bad_values_are_refused(project, capsys):
    code, out = submit(project, capsys, "teacher", "--preset", "tiny", "--dataset", "toy", "--compile", "off", "--json")
    assert code == 0
    assert spec_of(project, out["runs"][-1]["run_id"])["spec"]["train"]["compile"] == "off"
    assert main(["--root", str(project), "submit", "teacher", "--preset", "tiny", "--compile", "yes"]) == 2
    assert "train.compile: expected auto, on, off or graphs, got 'yes'" in capsys.readouterr().err


def test_eval_batch_size_option_reaches_the_spec_and_negatives_are_refused(project, capsys):
    code, out = submit(project, capsys, "teacher", "--preset", "tiny", "--dataset", "toy", "--eval-batch-size", "512",
                       "--json")
    assert code == 0
    assert spec_of(project, out["runs"][-1]["run_id"])["spec"]["train"]["eval_batch_size"] == 512
    assert main(["--root", str(project), "submit", "teacher", "--preset", "tiny", "--eval-batch-size", "-1"]) == 2
    assert "train.eval_batch_size: expected >= 0 (0: auto, max(batch_size, 1024) on CUDA" in capsys.readouterr().err


def test_a_bad_query_is_an_error_message_not_a_traceback(project, capsys):
    assert main(["--root", str(project), "query", "SELECT no_such_column FROM metrics"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: query: Binder Error") and "no_such_column" in err and "SHOW TABLES" in err
