"""The runs page in real Chromium against `tldrlab serve` (real uvicorn + a real worker process)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect
from svc_helpers import record, wait_for

from netutil import free_port, serve_app, start_serve, wait_for_port
from tldrlab.runs import RunStatus, create_run, start_run
from tldrlab.service.app import create_app


@pytest.fixture
def served(tldrlab_home: Path, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115
    proc = start_serve(port, log, 1, new_session=True)
    try:
        wait_for_port(port, timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.mark.slow
def test_runs_page_live_chart_artifacts_and_cancel(browser: object, served: str) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{served}/runs-page")
    page.fill("#smoke-steps", "40")
    page.fill("#smoke-sleep", "0.05")
    page.click("#start-smoke")
    page.wait_for_selector("#detail:not([hidden])")
    # The panel shows before the POST answers with the new run's id.
    page.wait_for_function("() => document.getElementById('detail-id').textContent.startsWith('smoke-')")
    run_id = page.inner_text("#detail-id")
    assert run_id.startswith("smoke-")
    # The chart fills from the SSE stream while the run trains, then the run completes.
    page.wait_for_function(
        "() => document.getElementById('loss-line').getAttribute('points').split(' ').length >= 5",
        timeout=90_000,
    )
    page.wait_for_function(
        "() => document.getElementById('detail-status').textContent === 'completed'", timeout=90_000
    )
    # The status comes from polling GET /runs/{id}, the chart from the SSE stream: the last points may land
    # just after the status turns `completed`.
    page.wait_for_function(
        "() => document.getElementById('loss-line').getAttribute('points').split(' ').length >= 40",
        timeout=30_000,
    )
    points = page.get_attribute("#loss-line", "points") or ""
    assert len(points.split(" ")) == 40
    assert "step 40" in (page.text_content("#chart-label") or "")
    page.wait_for_selector("#artifacts a:has-text('weights.json')")
    page.wait_for_selector("#report-panel:not([hidden])")  # the completed run's report, as the CLI prints it
    assert f"run {run_id}" in page.inner_text("#report") and "final_loss" in page.inner_text("#report")
    row = page.locator(f"#runs tbody tr[data-run-id='{run_id}']")
    expect(row).to_contain_text("completed", timeout=10_000)  # the list refreshes every 2 s
    with page.expect_download() as download:
        page.click("#artifacts a:has-text('weights.json')")
    assert "weight" in Path(download.value.path()).read_text()
    # A long run, cancelled from the page.
    page.fill("#smoke-steps", "5000")
    page.click("#start-smoke")
    wait_for(lambda: page.inner_text("#detail-id") != run_id, 30, what="the new run to be selected")
    long_id = page.inner_text("#detail-id")
    page.wait_for_function(
        "() => document.getElementById('detail-status').textContent === 'running'", timeout=60_000
    )
    page.click("#cancel")
    page.wait_for_function(
        "() => document.getElementById('detail-status').textContent === 'cancelled'", timeout=60_000
    )
    assert record(long_id).status == RunStatus.CANCELLED
    assert httpx.get(f"{served}/readyz").status_code == 200
    assert errors == []
    page.close()


@pytest.mark.slow
def test_runs_page_starts_any_kind_from_its_config_box(browser: object, served: str) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{served}/runs-page")
    page.wait_for_selector("#run-kind option[value='sweep']", state="attached")
    kinds = page.eval_on_selector_all("#run-kind option", "options => options.map(o => o.value)")
    assert {"train", "tokenizer", "evaluate", "ingest", "sweep", "experiment", "lvm_train", "smoke"} <= set(
        kinds
    )
    # the box holds the picked kind's defaults, required fields null
    page.select_option("#run-kind", "tokenizer")
    template = json.loads(page.input_value("#run-config"))
    assert template["vocab_size"] == 8000 and template["corpus"] is None
    assert "tokenizer" in (page.text_content("#kind-help") or "")
    # an invalid config is refused with the field named; no run is created
    page.select_option("#run-kind", "smoke")
    page.fill("#run-config", json.dumps({"steps": 0}))
    page.click("#start-run")
    expect(page.locator("#notice")).to_contain_text("steps", timeout=10_000)
    assert httpx.get(f"{served}/runs").json()["runs"] == []
    # a valid one is queued, executed by the server's worker, and shown
    page.fill("#run-config", json.dumps({"steps": 4, "checkpoint_every": 2}))
    page.click("#start-run")
    page.wait_for_function("() => document.getElementById('detail-id').textContent.startsWith('smoke-')")
    page.wait_for_function(
        "() => document.getElementById('detail-status').textContent === 'completed'", timeout=90_000
    )
    run_id = page.inner_text("#detail-id")
    assert record(run_id).config["steps"] == 4 and record(run_id).status == RunStatus.COMPLETED
    assert errors == []


@pytest.mark.slow
def test_a_late_answer_for_the_run_selected_before_does_not_replace_the_selected_run(
    browser: object, served: str
) -> None:
    # The list's poll refreshes the selected run's details; a new selection while that answer is on its way
    # used to end with the old run's id, status and cancel button in the panel of the new one (the run a
    # click on "cancel" then did not cancel was not the one shown).
    first, second = (
        httpx.post(f"{served}/runs", json={"kind": "smoke", "config": {"steps": 2}}).json()["id"]
        for _ in range(2)
    )
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(f"{served}/runs-page")

    def answer_late(route: Any) -> None:
        time.sleep(1.0)
        route.continue_()

    page.route(f"**/runs/{first}", answer_late)
    # every id the panel shows from here on (the list's poll soon shows the selected run again)
    page.evaluate(
        """() => {
        window.shown = [];
        const id = document.getElementById("detail-id");
        new MutationObserver(() => window.shown.push(id.textContent))
          .observe(id, { childList: true, characterData: true, subtree: true });
      }"""
    )
    page.evaluate(f"() => {{ state.selected = {first!r}; refreshDetail(); select({second!r}); }}")
    page.wait_for_timeout(1800)
    shown = page.evaluate("() => window.shown")
    assert second in shown
    assert first not in shown, shown
    page.close()


def test_a_loss_that_is_not_finite_leaves_the_chart_drawing_the_rest(browser: object) -> None:
    # an overflowed step (fp16 on a GPU) logs train_loss inf, which the event stream's JSON carries as null:
    # the page drew it as a point, then stopped at `null.toPrecision` ("Cannot read properties of null"), and
    # the chart and the events list stayed where they were for the rest of the run
    with start_run("train", {}) as run:
        run.log_metrics(1, train_loss=2.0)
        run.log_metrics(2, train_loss=float("inf"))
        run.log_metrics(3, train_loss=1.0)
    with serve_app(create_app()) as url:
        page = browser.new_page()  # type: ignore[attr-defined]
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{url}/runs-page")
        page.click(f"#runs tbody tr[data-run-id='{run.id}']")
        expect(page.locator("#events")).to_contain_text("completed", timeout=10_000)
        assert page.text_content("#chart-label") == "step 3: loss 1.000"
        assert len((page.get_attribute("#loss-line", "points") or "").split()) == 2
        assert page.text_content("#notice") == "" and errors == []
        page.close()


def test_the_detail_panel_shows_the_run_s_curves(browser: object) -> None:
    # a training run's result on the page ends "curves: run:<id>/plots", but the page showed none of them
    # (plots/*.png are files of the run, not manifest artifacts) and named no way to them
    from tldrlab.track.plots import plot_run_metrics

    with start_run("train", {}) as run:
        for step in range(1, 11):
            run.log_metrics(step, train_loss=3.0 / step, lr=0.01)
        run.log_metrics(10, eval_loss=0.5)
        plot_run_metrics(run.dir)
    with start_run("smoke", {}) as plain:  # a run without curves shows no curves section
        plain.log_metrics(1, loss=1.0)
    with serve_app(create_app()) as url:
        page = browser.new_page()  # type: ignore[attr-defined]
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{url}/runs-page")
        page.click(f"#runs tbody tr[data-run-id='{run.id}']")
        expect(page.locator("#plots img")).to_have_count(3, timeout=10_000)
        alts = page.eval_on_selector_all("#plots img", "imgs => imgs.map(i => i.alt)")
        assert alts == ["plots/eval.png", "plots/lr.png", "plots/train_loss.png"]
        sources = page.eval_on_selector_all("#plots img", "imgs => imgs.map(i => i.src)")
        assert all(src.startswith("data:image/png;base64,") for src in sources)
        assert page.is_visible("#plots-panel")
        page.click(f"#runs tbody tr[data-run-id='{plain.id}']")
        expect(page.locator("#plots-panel")).to_be_hidden(timeout=10_000)
        assert page.locator("#plots img").count() == 0 and errors == []
        page.close()


def test_the_events_of_a_run_opened_mid_way_read_in_the_order_they_happened(browser: object) -> None:
    # the event stream replays a running run's history, then its status: the page listed "checkpoint"
    # lines first and "started" after them, as if the run had started after its own checkpoints
    with start_run("train", {}) as run, serve_app(create_app()) as url:
        for step in (1, 2):
            run.log("checkpoint written", step=step)
        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(f"{url}/runs-page")
        page.click(f"#runs tbody tr[data-run-id='{run.id}']")
        expect(page.locator("#events li")).to_have_count(3, timeout=10_000)
        items = page.locator("#events li").all_inner_texts()
        assert items[0].startswith("started") and items[1:] == ["checkpoint: checkpoint written"] * 2, items
        page.close()


def test_a_finished_run_shows_no_heartbeat_age(browser: object) -> None:
    # the detail panel said "last heartbeat 2417.6 s ago" of a run completed long before, an age that only
    # grows, as if its worker had gone quiet (Discord's /status shows it for a running run alone)
    with start_run("train", {}) as run:
        run.log_metrics(1, train_loss=1.0)
    with serve_app(create_app()) as url:
        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(f"{url}/runs-page")
        page.click(f"#runs tbody tr[data-run-id='{run.id}']")
        expect(page.locator("#detail-status")).to_have_text("completed", timeout=10_000)
        assert page.text_content("#detail-heartbeat") == ""
        page.close()


def test_a_failed_run_s_long_error_wraps_inside_the_page(browser: object) -> None:
    # a failed run's error holding a long token (no spaces) stretched the list's message cell and the
    # detail panel to its width: the page scrolled sideways some 15 screens wide, the detail panel off-screen
    with pytest.raises(RuntimeError), start_run("smoke", {}) as run:
        raise RuntimeError("no such token: " + "y" * 2000)
    with serve_app(create_app()) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
        page.goto(f"{url}/runs-page")
        page.click(f"#runs tbody tr[data-run-id='{run.id}']")
        expect(page.locator("#detail-message")).to_contain_text("no such token", timeout=10_000)
        widths = page.evaluate(
            """() => [document.documentElement.scrollWidth, document.documentElement.clientWidth,
                      document.getElementById('detail').getBoundingClientRect().right]"""
        )
        assert widths[0] <= widths[1] and widths[2] <= widths[1], widths
        page.close()


def test_runs_past_the_newest_fifty_are_reached_by_paging(browser: object) -> None:
    # the list asked for the newest 50 runs and offered nothing more: the 51st run back (an old failure to
    # look into) could not be opened from the page at all, though GET /runs pages with offset
    oldest = create_run("smoke", {"steps": 1}).id
    for _ in range(51):
        create_run("smoke", {"steps": 1})
    with serve_app(create_app()) as url:
        page = browser.new_page()  # type: ignore[attr-defined]
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{url}/runs-page")
        rows = page.locator("#runs tbody tr")
        expect(rows).to_have_count(50, timeout=10_000)
        assert page.locator(f"#runs tbody tr[data-run-id='{oldest}']").count() == 0
        expect(page.locator("#runs-newer")).to_be_disabled()
        page.click("#runs-older")
        expect(rows).to_have_count(2, timeout=10_000)
        page.click(f"#runs tbody tr[data-run-id='{oldest}']")
        expect(page.locator("#detail-id")).to_have_text(oldest, timeout=10_000)
        expect(page.locator("#runs-older")).to_be_disabled()
        expect(page.locator("#runs-range")).to_have_text("runs 51–52")
        page.click("#runs-newer")
        expect(rows).to_have_count(50, timeout=10_000)
        assert errors == []
        page.close()


def test_an_artifact_whose_name_holds_url_characters_downloads(browser: object) -> None:
    # the download link was the artifact's path pasted into the URL: a file named "notes #2 (draft).txt" was
    # fetched as /artifacts/smoke/<id>/artifacts/notes%20 (the rest a fragment) and "download failed"
    with start_run("smoke", {}) as run:
        notes = run.artifacts_dir / "notes #2 (draft).txt"
        notes.write_text("half of the notes\n")
        run.add_artifact(notes)
    with serve_app(create_app()) as url:
        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(f"{url}/runs-page")
        page.click(f"#runs tbody tr[data-run-id='{run.id}']")
        link = page.locator("#artifacts a", has_text="notes #2")
        expect(link).to_have_count(1, timeout=10_000)
        with page.expect_download(timeout=5_000) as download:
            link.click()
        assert Path(download.value.path()).read_text() == "half of the notes\n"
        assert download.value.suggested_filename == "notes #2 (draft).txt"
        page.close()


def test_the_runs_page_says_when_the_server_is_down(browser: object) -> None:
    # the list's poll of a stopped server put the browser's bare "Failed to fetch" under the forms
    page = browser.new_page()  # type: ignore[attr-defined]
    with serve_app(create_app()) as url:
        page.goto(f"{url}/runs-page")
        page.wait_for_selector("#run-kind option[value='smoke']", state="attached")
    expect(page.locator("#notice")).to_contain_text("could not reach the server", timeout=10_000)
    page.close()


def sse_blocks(text: str) -> list[dict[str, str]]:
    """The events of a server-sent event stream's text, each as its fields (`id`, `event`, `data`)."""
    blocks = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if fields:
            blocks.append(fields)
    return blocks


def test_an_event_stream_cut_on_the_way_is_resumed_from_its_last_event(browser: object) -> None:
    # a stream cut before the run ended (a proxy's idle timeout, the server restarting) stopped the panel's
    # events and chart where it was cut, for good; the page now opens it again with Last-Event-ID, as
    # EventSource does, and the server sends only what came after
    with start_run("smoke", {}) as run:
        for step in (1, 2, 3):
            run.log("checkpoint written", step=step)
    with serve_app(create_app()) as url:
        whole = sse_blocks(httpx.get(f"{url}/runs/{run.id}/events", timeout=30).text)
        shown = [b for b in whole if b["event"] != "progress"]
        assert len(shown) >= 4 and shown[-1]["event"] == "completed", whole
        first = whole[0]
        cut = f"id: {first['id']}\nevent: {first['event']}\ndata: {first['data']}\n\n"
        asked: list[str | None] = []

        def cut_after_the_first_event(route: Any) -> None:
            asked.append(route.request.headers.get("last-event-id"))
            if len(asked) == 1:
                route.fulfill(status=200, headers={"content-type": "text/event-stream"}, body=cut)
            else:
                route.continue_()

        page = browser.new_page()  # type: ignore[attr-defined]
        try:
            page.route("**/events", cut_after_the_first_event)
            page.goto(f"{url}/runs-page")
            page.click(f"#runs tbody tr[data-run-id='{run.id}']")
            expect(page.locator("#events li")).to_have_count(len(shown), timeout=15_000)
            assert page.locator("#events li").all_inner_texts()[-1].startswith("completed")
            assert asked[:2] == [None, first["id"]], asked
        finally:
            page.close()


def test_an_event_stream_that_could_not_connect_is_tried_again(browser: object) -> None:
    # a server restarting as a run is selected: the stream's connection is refused once, the notice says so
    # and that the page reconnects, and the events come when the server answers again
    with start_run("smoke", {}) as run:
        run.log("checkpoint written", step=1)
    with serve_app(create_app()) as url:
        attempts: list[int] = []

        def refuse_the_first(route: Any) -> None:
            attempts.append(1)
            if len(attempts) == 1:
                route.abort("connectionrefused")
            else:
                route.continue_()

        page = browser.new_page()  # type: ignore[attr-defined]
        try:
            page.route("**/events", refuse_the_first)
            page.goto(f"{url}/runs-page")
            page.click(f"#runs tbody tr[data-run-id='{run.id}']")
            expect(page.locator("#notice")).to_contain_text("reconnecting", timeout=10_000)
            expect(page.locator("#events li").last).to_contain_text("completed", timeout=15_000)
            expect(page.locator("#notice")).to_have_text("")
        finally:
            page.close()


def test_the_selected_run_is_kept_in_the_address_and_a_link_opens_it(browser: object) -> None:
    # the page kept nothing in its address: a reload closed the run's panel and a run could not be linked to
    with start_run("smoke", {}) as first:
        first.log("checkpoint written", step=1)
    with start_run("smoke", {}) as second:
        pass
    with serve_app(create_app()) as url:
        page = browser.new_page()  # type: ignore[attr-defined]
        try:
            page.goto(f"{url}/runs-page#run={first.id}")
            expect(page.locator("#detail-id")).to_have_text(first.id, timeout=10_000)
            expect(page.locator("#events li").first).to_have_text("checkpoint: checkpoint written")
            page.click(f"#runs tbody tr[data-run-id='{second.id}']")
            expect(page.locator("#detail-id")).to_have_text(second.id)
            assert page.evaluate("location.hash") == f"#run={second.id}"
            page.reload()
            expect(page.locator("#detail-id")).to_have_text(second.id, timeout=10_000)
            page.evaluate(f"location.hash = '#run={first.id}'")  # a link pasted into the open page's address
            expect(page.locator("#detail-id")).to_have_text(first.id, timeout=10_000)
        finally:
            page.close()
