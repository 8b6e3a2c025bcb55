"""Launch: a preset, the model depths, size/cost/reuse, then the training form that queues the pipeline."""

from dataclasses import asdict, fields

import streamlit as st

from app import context, datasets, labels, launch, links, queries, widgets
from core.config import ConfigError, apply_preset, block_pairs, depth_warning, valid_blocks
from core.data.errors import DataError

st.title("Launch a pipeline")
st.caption("One launch queues sasrec → teacher → student → analysis for the background worker. Runs whose "
           "settings match a finished, queued or running run are reused, so changing only the student does not "
           "retrain the teacher.")
paths = context.paths()
names = datasets.list_datasets(paths) + st.session_state.get("shared_extra_datasets", [])
if not names:
    widgets.empty("No dataset yet. Run `slmrec fetch` for MovieLens-100K, or add one on the **Data** page.")
    st.stop()
bases = launch.base_choices(paths)
KEYS = {f.name: f"launch_{f.name}" for f in fields(launch.LaunchSettings)}
KEEP = {"persist_state": "session"}  # the form keeps its values while the user visits other pages


def load_preset() -> None:
    preferred = st.session_state.get("shared_dataset")
    dataset = st.session_state.get(KEYS["dataset"]) or (preferred if preferred in names else
                                                        "ml-100k" if "ml-100k" in names else names[0])
    values = asdict(launch.defaults(st.session_state.get(KEYS["preset"], "cpu-quick"), dataset))
    values["base"] = values["base"] if values["base"] in bases else bases[0]
    st.session_state.update({KEYS[k]: v for k, v in values.items()})


if any(key not in st.session_state for key in KEYS.values()):
    load_preset()
cloned = links.apply_clone(KEYS, {"dataset": names, "base": bases})  # "Clone into Launch" on Runs
if cloned:
    st.info(cloned, icon=":material/content_copy:")
st.segmented_control("Preset", list(launch.CHOICES), key=KEYS["preset"], required=True, on_change=load_preset, **KEEP)
if "smollm2" not in bases:
    st.warning("SmolLM2-135M is not on this machine: run `slmrec fetch` (the tiny random model still works).")

st.subheader("Model")
left, right = st.columns(2)
left.selectbox("Dataset", names, key=KEYS["dataset"], **KEEP,
               on_change=lambda: st.session_state.update(shared_dataset=st.session_state[KEYS["dataset"]]))
right.selectbox("Base LLM", bases, key=KEYS["base"], format_func=launch.base_name, **KEEP,
                help="The pretrained LLM (backbone.base) whose first layers teacher and student keep; the tiny "
                     "model is random: its results show the mechanics only.")
config = launch.model_config(paths, st.session_state[KEYS["base"]])
layers = config["num_hidden_layers"] if config else 64
for key in ("teacher_depth", "student_depth"):
    st.session_state[KEYS[key]] = min(max(1, st.session_state[KEYS[key]]), layers)
left.slider("Teacher depth (layers kept)", 1, layers, key=KEYS["teacher_depth"], **KEEP,
            help=f"The base model has {layers} decoder layers." if config else None)
right.slider("Student layers", 1, layers, key=KEYS["student_depth"], **KEEP)
teacher, student = st.session_state[KEYS["teacher_depth"]], st.session_state[KEYS["student_depth"]]
warning = depth_warning(teacher, student)
if warning:  # the same words as the command line, before anything is launched
    st.warning(warning.removeprefix("warning: ").capitalize(), icon=":material/warning:")
options = valid_blocks(teacher, student)
old_blocks = st.session_state.get(KEYS["blocks"])
if old_blocks not in options:
    st.session_state[KEYS["blocks"]] = max(b for b in options if b <= 4)
    st.session_state["launch_blocks_note"] = (teacher, student, launch.blocks_note(
        old_blocks, st.session_state[KEYS["blocks"]], teacher, student))
left.selectbox("Blocks B", options, key=KEYS["blocks"], **KEEP,
               on_change=lambda: st.session_state.pop("launch_blocks_note", None),
               help="B must divide both depths: block k pairs teacher layer k·(teacher/B) with student layer "
                    "k·(student/B).")
note = st.session_state.get("launch_blocks_note")
if note and note[:2] == (teacher, student):  # said where the user looks, until B or a depth changes
    left.warning(note[2], icon=":material/info:")
left.caption(f"Valid B for teacher {teacher} and student {student} (divisors of both): "
             + ", ".join(map(str, options)))
right.radio("Student layers taken", ["first", "even"], key=KEYS["layer_selection"], horizontal=True, **KEEP,
            help="first: layers 1..N of the LLM (the paper); even: N evenly spaced layers.")
blocks = st.session_state[KEYS["blocks"]]
st.caption("Aligned pairs (teacher layer, student layer): "
           + ", ".join(f"({t}, {s})" for t, s in block_pairs(teacher, student, blocks)))
preview = st.container()

with st.form("launch_form"):
    st.subheader("Distillation and training")
    a, b, c = st.columns(3)
    a.number_input("λ1 feature direction (cos)", min_value=0.0, step=0.1, key=KEYS["lambda_cos"], **KEEP)
    a.number_input("λ2 feature norm", min_value=0.0, step=0.01, key=KEYS["lambda_norm"], **KEEP)
    a.number_input("λ3 multiple supervision", min_value=0.0, step=0.1, key=KEYS["lambda_sup"], **KEEP)
    a.radio("LLM training", ["lora", "full", "frozen"], key=KEYS["training"], horizontal=True, **KEEP)
    b.number_input("Teacher epochs", min_value=1, step=1, key=KEYS["teacher_epochs"], **KEEP)
    b.number_input("Student epochs", min_value=1, step=1, key=KEYS["student_epochs"], **KEEP)
    b.number_input("Learning rate", min_value=0.0, step=1e-4, format="%.5f", key=KEYS["lr"], **KEEP)
    b.number_input("Batch size", min_value=1, step=8, key=KEYS["batch_size"], **KEEP)
    c.number_input("Max length (items of history)", min_value=1, step=1, key=KEYS["max_len"], **KEEP)
    c.radio("Training examples", list(launch.TARGETS.values()), key=KEYS["train_targets"], **KEEP,
            format_func={v: k for k, v in launch.TARGETS.items()}.get)
    c.number_input("Sampled negatives per user", min_value=1, step=100, key=KEYS["n_negatives"], **KEEP,
                   help="data.n_negatives: the sampled protocol ranks each test target among this many fixed "
                        "negatives (the paper: 999). On a dataset with few items, lower it (e.g. 99) so no "
                        "user's candidates repeat items.")
    c.checkbox("Mask the user's history in full ranking", key=KEYS["mask_history"], **KEEP,
               help="rec.mask_history: full ranking leaves out the items the user already had (standard for "
                    "next-new-item recommendation). Turn it off where the next item is often a repeat, e.g. a "
                    "synthetic induction rule, whose targets are items of the history.")
    c.selectbox("Device", launch.DEVICES, key=KEYS["device"], **KEEP)
    c.number_input("Seed", min_value=0, step=1, key=KEYS["seed"], **KEEP)
    st.text_input("Name (optional)", key=KEYS["name"], **KEEP)
    submitted = st.form_submit_button("Launch pipeline", type="primary", icon=":material/rocket_launch:")

settings = launch.LaunchSettings(**{k: st.session_state[v] for k, v in KEYS.items()})
try:
    plan, error = launch.build_plan(settings, layers if config else None), None
except ConfigError as exc:
    plan, error = None, str(exc)
if submitted and error:
    st.error(f"Not launched: {error}", icon=":material/error:")
elif submitted:
    before = launch.existing_runs(paths)
    ids = launch.submit_pipeline(paths, plan)
    st.session_state["launch_submitted"] = {"ids": ids, "before": before, "settings": settings}
    context.store().refresh(force=True)
runs = queries.runs(context.store())
last = st.session_state.get("launch_submitted")
if isinstance(last, dict) and last["settings"] == settings:
    names = labels.label_map(runs[runs["run_id"].isin(last["ids"])])
    st.success(launch.submission_text(last["ids"], last["before"], names), icon=":material/check_circle:")
    st.page_link("app/pages/runs.py", label="Watch them on Runs", icon=":material/monitoring:")
elif isinstance(last, dict):
    st.info("The settings changed since your last launch, so its runs are not these settings' runs: press "
            "**Launch pipeline** to queue them (the table above shows what would be reused).",
            icon=":material/edit:")

with preview:
    st.subheader("Size, cost and reuse")
    if error and not submitted:
        st.warning(error, icon=":material/warning:")
    if config:
        item_dim = apply_preset(launch.CHOICES[settings.preset][0], {}, "teacher").sasrec.hidden
        try:
            versions = datasets.prepared_versions(paths, datasets.locate(paths, settings.dataset))
        except DataError as exc:
            versions = []
            st.warning(str(exc))
        n_items = versions[0]["stats"].get("items") if versions else None
        st.dataframe(launch.estimate(config, settings, item_dim, n_items), hide_index=True, key="launch_estimate")
        st.caption("Estimated from the base model's config.json" + ("" if n_items else " (item table not counted: "
                   "the dataset is not prepared yet)") + ". Cost per training step grows with the layers run: the "
                   f"student's step costs about {settings.student_depth / settings.teacher_depth:.2f}× the teacher's: "
                   f"{launch.speed(settings.teacher_depth, settings.student_depth)}.")
    if plan:
        reuse = launch.reuse_preview(runs, plan)
        names = labels.label_map(runs[runs["run_id"].isin([row["reuses"] for row in reuse])])
        st.dataframe([{**row, "reuses": names.get(row["reuses"], row["reuses"])} for row in reuse],
                     hide_index=True, key="launch_reuse")
        st.caption("Reuse is checked for the settings as last submitted; every stage marked 'new run' will be queued.")
