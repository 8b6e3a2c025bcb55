"""Data: pick or add a dataset; its statistics, sequence lengths and sample sequences, via DuckDB."""

import streamlit as st

from app import context, datasets, figures, widgets
from core.data.errors import DataError

st.title("Data")
paths = context.paths()


@st.cache_data(ttl=60, show_spinner="Reading the dataset with DuckDB…")
def describe(root: str, source: str, mtime: float, prepared_key: str | None) -> dict:
    """Stats of a dataset version; cached per project, file and modification time."""
    source_path = datasets.locate(paths, source)
    versions = {v["key"]: v for v in datasets.prepared_versions(paths, source_path)}
    return datasets.describe(paths, source_path, versions.get(prepared_key))


with st.expander("Add a dataset"):
    with st.form("data_upload", clear_on_submit=True):
        st.markdown(f"Upload one interaction file (at most **{datasets.MAX_UPLOAD_MB} MB**; copy larger files into "
                    "`data/raw/<name>/`). Formats: CSV/TSV/Parquet with `user,item,timestamp` columns, RecBole "
                    "`.inter`, MovieLens `u.data` / `ratings.dat`, Amazon review JSON lines.")
        name = st.text_input("Dataset name (folder under data/raw/)", key="data_upload_name")
        upload = st.file_uploader("Interaction file", key="data_upload_file", max_upload_size=datasets.MAX_UPLOAD_MB)
        added = st.form_submit_button("Add", icon=":material/upload:")
        if added and upload is None:
            st.warning("No file chosen: pick an interaction file above (Browse files), then press Add.",
                       icon=":material/upload_file:")
        elif added:
            try:
                saved = datasets.save_upload(paths, name.strip(), upload.name, upload.getvalue())
                st.session_state["shared_dataset"] = name.strip()
                st.success(f"Saved as {saved.relative_to(paths.root)}")
            except DataError as exc:
                st.error(str(exc))
    with st.form("data_path"):
        path = st.text_input("…or a file path inside data/ (e.g. raw/mine/ratings.csv)", key="data_path_text")
        use = st.form_submit_button("Use this file", icon=":material/folder_open:")
        if use and not path.strip():
            st.warning("No path given: type a file path inside data/, then press Use this file.")
        elif use:
            try:
                datasets.locate_named(paths, path.strip())
                extra = st.session_state.setdefault("shared_extra_datasets", [])
                if path.strip() not in extra:
                    extra.append(path.strip())
                st.session_state["shared_dataset"] = path.strip()
            except DataError as exc:
                st.error(str(exc))

names = datasets.list_datasets(paths) + st.session_state.get("shared_extra_datasets", [])
if not names:
    widgets.empty("No dataset yet. Run `slmrec fetch` for MovieLens-100K, or add a file above.")
    st.stop()
preferred = st.session_state.get("shared_dataset")
dataset = st.selectbox("Dataset", names, key="data_dataset",
                       index=names.index(preferred) if preferred in names else 0,
                       on_change=lambda: st.session_state.update(shared_dataset=st.session_state["data_dataset"]))
try:
    source = datasets.locate(paths, dataset)
except DataError as exc:
    st.error(str(exc))
    st.stop()
versions = datasets.prepared_versions(paths, source)
choices = {None: "the raw file (before filtering)"}
choices.update({v["key"]: f"prepared {v['key']} (k-core {v['settings'].get('kcore')}, min rating "
                          f"{v['settings'].get('min_rating')}, max users {v['settings'].get('max_users') or 'all'})"
                for v in versions})
if not versions:
    st.caption("Not prepared yet: these are the raw file's numbers. A run prepares it (filters, remaps, fixes the "
               "evaluation negatives), after which the prepared version and its item titles show here.")
key = st.selectbox("Version", list(choices), format_func=choices.get, key="data_version",
                   index=1 if versions else 0, help=datasets.VERSION_HELP)
st.caption(f"File: `{source.relative_to(paths.data_root.resolve()) if source.is_absolute() else source}`")
try:
    info = describe(str(paths.root), dataset, source.stat().st_mtime, key)
except DataError as exc:
    st.error(str(exc))
    st.stop()

s = info["stats"]
cols = st.columns(5)
cols[0].metric("Users", f"{s['users']:,}")
cols[1].metric("Items", f"{s['items']:,}")
cols[2].metric("Interactions", f"{s['interactions']:,}")
cols[3].metric("Density", f"{100 * s['density']:.2f}%")
cols[4].metric("Sequence length", f"{s['seq_len_median']:.0f}", help=f"median; mean {s['seq_len_mean']:.1f}, "
               f"min {s['seq_len_min']}, max {s['seq_len_max']}")
note = next((datasets.short_lists_note(v["stats"]) for v in versions if v["key"] == key), None)
if note:  # some users of this version have fewer unseen items than sampled negatives
    st.info(note, icon=":material/info:")
hist = info["histogram"]
widgets.chart(figures.histogram(hist, "length", "Interactions per user", "sequence length (bin start)"), hist,
              "data_seq_len_histogram")
st.subheader("Sample sequences (last 10 items, oldest first)")
widgets.table(info["samples"], "data_samples")
