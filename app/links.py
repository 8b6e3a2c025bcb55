"""Shareable links and hand-offs between pages: the selection in the URL, and "clone into Launch".

URL parameters (the pages' url paths are runs, layers, results):
    ?run=<run_id>        Runs, Layers and Results open on that run (Layers on its analysis run)
    ?runs=<id>,<id>,...  Results opens on these runs
A page calls `select(key, options)` before its run picker (keyed `key`), which sets the picker
from the URL the first time that URL value is seen, and `remember(key)` after it, which writes the
picked run(s) back, so a reload or a copied address shows the same runs.

Session-state keys shared between pages:
    CLONE ("launch_clone"): {"settings": {LaunchSettings field: value}, "run_id": str,
        "notes": [str]}, set by the Runs page's "Clone into Launch" and taken (once) by the Launch
        page with `apply_clone(keys, allowed)`, which fills the form's widget keys (launch_<field>).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from urllib.parse import quote

import pandas as pd
import streamlit as st

RUN, RUNS = "run", "runs"
CLONE = "launch_clone"


def page_url(page: str, run_id: str) -> str:
    """A relative address of a page on one run, e.g. 'layers?run=teacher-...' (for table link columns)."""
    return f"{page}?{RUN}={quote(run_id, safe='')}"


def _from_url(many: bool) -> list[str]:
    ids = [r for r in st.query_params.get(RUNS, "").split(",") if r] if many else []
    one = st.query_params.get(RUN)
    return list(dict.fromkeys(ids + [one])) if one else ids


def select(key: str, options: Iterable[str], many: bool = False,
           resolve: Callable[[str], str | None] | None = None) -> list[str]:
    """Before the picker `key`: pick the URL's run(s) among `options` (once per URL value).

    `resolve` maps a linked run to the one this page shows (Layers: a student to its analysis).
    Returns the linked run ids that are not among the options, for the page to say so.
    """
    wanted = _from_url(many)
    if not wanted or ",".join(wanted) == st.session_state.get(f"{key}_url"):
        return []  # nothing linked, or the user has picked since this URL was applied
    options = set(options)
    found = [resolve(r) if resolve else r for r in wanted]
    chosen = list(dict.fromkeys(r for r in found if r in options))
    if chosen:
        st.session_state[key] = chosen if many else chosen[0]
    st.session_state[f"{key}_url"] = ",".join(wanted)
    return [w for w, r in zip(wanted, found) if r not in options]


def remember(key: str, many: bool = False) -> None:
    """After the picker `key`: put its value in the URL (?run=, or ?runs= when `many`)."""
    value = st.session_state.get(key)
    ids = [v for v in (value or []) if v] if many else ([value] if value else [])
    if many:
        st.query_params.pop(RUN, None)
        if st.query_params.get(RUNS, "") != ",".join(ids):
            st.query_params[RUNS] = ",".join(ids)
    elif ids and st.query_params.get(RUN) != ids[0]:
        st.query_params[RUN] = ids[0]
    st.session_state[f"{key}_url"] = ",".join(_from_url(many))


def request_clone(run_id: str, settings: dict, notes: list[str]) -> None:
    """Hand a run's Launch settings to the Launch page and open it."""
    st.session_state[CLONE] = {"settings": settings, "run_id": run_id, "notes": notes}
    st.switch_page("app/pages/launch.py")


def apply_clone(keys: dict[str, str], allowed: dict[str, list] | None = None) -> str | None:
    """On Launch, before its widgets: fill the form's keys ({field: widget key}) from a pending clone.

    `allowed` lists the choices of select widgets (dataset, base): a cloned value outside them is
    left as it was and named. Returns what to tell the user (where the values came from, what the
    form cannot match), or None when no clone is pending. A clone is applied once.
    """
    clone = st.session_state.pop(CLONE, None)
    if not clone:
        return None
    notes = list(clone["notes"])
    for field, value in clone["settings"].items():
        if field not in keys:
            continue
        if allowed and field in allowed and value not in allowed[field]:
            notes.append(f"{field} {value!r} is not available here; kept {st.session_state.get(keys[field])!r}")
            continue
        st.session_state[keys[field]] = value
    text = f"The form holds the settings of run {clone['run_id']}. Check them, then press Launch."
    if notes:
        text += " Not matched by the form: " + "; ".join(notes) + "."
    return text


def analysis_of(runs: pd.DataFrame, run_id: str) -> str:
    """What Layers shows for a linked run: the run itself if it is an analysis, else its newest analysis
    (one whose analysis.run or analysis.against is the run), else the run id unchanged."""
    rows = runs[runs["run_id"] == run_id]
    if not rows.empty and rows["kind"].iloc[0] == "analysis":
        return run_id
    mine = runs[(runs["kind"] == "analysis") & ((runs["analysis_run"] == run_id) | (runs["analysis_against"] == run_id))]
    return mine.sort_values("created_at")["run_id"].iloc[-1] if not mine.empty else run_id
