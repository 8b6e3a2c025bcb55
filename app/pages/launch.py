"""Launch: a preset, the model depths, the training form; estimates, reuse and validation first."""

from dataclasses import asdict, fields

import streamlit as st

from app import context, datasets, launch, queries, widgets
from core.config import ConfigError, apply_preset, valid_blocks
from core.data.errors import DataError

st.title("Launch a pipeline")
st.caption("One launch queues sasrec → teacher → student → analysis. Runs whose settings match a finished, "
           "queued or running run are reused, so changing only the student does not retrain the teacher.")
paths = context.paths()
names = datasets.list_datasets(paths) + st.session_state.get("shared_extra_datasets", [])
if not names:
    widgets.empty("No dataset yet. Run `slmrec fetch` for MovieLens-100K, or add one on the **Data** page.")
    st.stop()
bases = launch.base_choices(paths)
KEYS = {f.name: f"launch_{f.name}" for f in fields(launch.LaunchSettings)}


def load_preset() -> None:
    preferred = st.session_state.get("shared_dataset")
    dataset = st.session_state.get(KEYS["dataset"]) or (preferred if preferred in names else
                                                        "ml-100k" if "ml-100k" in names else names[0])
    values = asdict(launch.defaults(st.session_state.get(KEYS["preset"], "cpu-quick"), dataset))
    if values["base"] not in bases:
        values["base"] = bases[0]
    st.session_state.update({KEYS[k]: v for k, v in values.items()})


if KEYS["teacher_depth"] not in st.session_state:
    load_preset()
st.segmented_control("Preset", list(launch.CHOICES), key=KEYS["preset"], persist_state="session", required=True,
                     on_change=load_preset)
if "smollm2" not in bases:
    st.warning("SmolLM2-135M is not on this machine: run `slmrec fetch` (the tiny random model still works).")

st.subheader("Model")
left, right = st.columns(2)
left.selectbox("Dataset", names, key=KEYS["dataset"], persist_state="session",
               on_change=lambda: st.session_state.update(shared_dataset=st.session_state[KEYS["dataset"]]))
left.selectbox("Base LLM", bases, key=KEYS["base"], persist_state="session", format_func=launch.base_name)
config = launch.model_config(paths, st.session_state[KEYS["base"]])
layers = config["num_hidden_layers"] if config else 64
for key in ("teacher_depth", "student_depth"):
    st.session_state[KEYS[key]] = min(max(1, st.session_state[KEYS[key]]), layers)
left.slider("Teacher depth (layers kept)", 1, layers, key=KEYS["teacher_depth"], persist_state="session",
            help=f"The base model has {layers} decoder layers." if config else None)
left.slider("Student layers", 1, layers, key=KEYS["student_depth"], persist_state="session")
teacher, student = st.session_state[KEYS["teacher_depth"]], st.session_state[KEYS["student_depth"]]
options = valid_blocks(teacher, student)
if st.session_state.get(KEYS["blocks"]) not in options:
    st.session_state[KEYS["blocks"]] = max(b for b in options if b <= max(4, min(options)))
right.selectbox("Blocks B", options, key=KEYS["blocks"], persist_state="session",
                help=f"B must divide both depths: valid B for {teacher} and {student} are {options}.")
right.radio("Student layers taken", ["first", "even"], key=KEYS["layer_selection"], persist_state="session", horizontal=True,
            help="first: layers 1..N of the LLM (the paper); even: N evenly spaced layers.")
m, n = teacher // st.session_state[KEYS["blocks"]], student // st.session_state[KEYS["blocks"]]
right.caption(f"Aligned pairs (teacher layer, student layer): "
              + ", ".join(f"({k * m}, {k * n})" for k in range(1, st.session_state[KEYS["blocks"]] + 1)))

with st.form("launch_form"):
    st.subheader("Distillation and training")
    a, b, c = st.columns(3)
    a.number_input("λ1 feature direction (cos)", min_value=0.0, step=0.1, key=KEYS["lambda_cos"], persist_state="session")
    a.number_input("λ2 feature norm", min_value=0.0, step=0.01, key=KEYS["lambda_norm"], persist_state="session")
    a.number_input("λ3 multiple supervision", min_value=0.0, step=0.1, key=KEYS["lambda_sup"], persist_state="session")
    b.radio("LLM training", ["lora", "full", "frozen"], key=KEYS["training"], persist_state="session", horizontal=True)
    b.number_input("Teacher epochs", min_value=1, step=1, key=KEYS["teacher_epochs"], persist_state="session")
    b.number_input("Student epochs", min_value=1, step=1, key=KEYS["student_epochs"], persist_state="session")
    b.number_input("Learning rate", min_value=0.0, step=1e-4, format="%.5f", key=KEYS["lr"], persist_state="session")
    c.number_input("Batch size", min_value=1, step=8, key=KEYS["batch_size"], persist_state="session")
    c.number_input("Max length (items of history)", min_value=1, step=1, key=KEYS["max_len"], persist_state="session")
    c.radio("Training examples", list(launch.TARGETS.values()), key=KEYS["train_targets"], persist_state="session",
            format_func={v: k for k, v in launch.TARGETS.items()}.get)
    c.selectbox("Device", launch.DEVICES, key=KEYS["device"], persist_state="session")
    c.number_input("Seed", min_value=0, step=1, key=KEYS["seed"], persist_state="session")
    st.text_input("Name (optional)", key=KEYS["name"], persist_state="session")
    submitted = st.form_submit_button("Launch pipeline", type="primary", icon=":material/rocket_launch:")

settings = launch.LaunchSettings(**{k: st.session_state[v] for k, v in KEYS.items()})
try:
    plan = launch.build_plan(settings, layers if config else None)
    error = None
except ConfigError as exc:
    plan, error = None, str(exc)

if submitted:
    if error:
        st.error(f"Not launched: {error}", icon=":material/error:")
    else:
        ids = launch.submit_pipeline(paths, plan)
        context.store().refresh(force=True)
        st.session_state["launch_submitted"] = ids
if st.session_state.get("launch_submitted") and not (submitted and error):
    st.success(f"Queued (or reused) {len(st.session_state['launch_submitted'])} runs: "
               + ", ".join(st.session_state["launch_submitted"]), icon=":material/check_circle:")
    st.page_link("app/pages/runs.py", label="Watch them on Runs", icon=":material/monitoring:")

st.subheader("Before you launch")
if error and not submitted:
    st.warning(error, icon=":material/warning:")
if config:
    spec = apply_preset(launch.CHOICES[settings.preset][0], {}, "teacher")
    versions = []
    try:
        versions = datasets.prepared_versions(paths, datasets.locate(paths, settings.dataset))
    except DataError as exc:
        st.warning(str(exc))
    n_items = versions[0]["stats"].get("items") if versions else None
    rows = launch.estimate(config, settings, spec.sasrec.hidden, n_items)
    st.dataframe(rows, hide_index=True, key="launch_estimate")
    st.caption("Estimated from the base model's config.json" + ("" if n_items else
               " (item table not counted: the dataset is not prepared yet)") + ". Training cost per step grows "
               "with the layers run, so the student's step costs about "
               f"{settings.student_depth / settings.teacher_depth:.2f}× the teacher's.")
if plan:
    st.dataframe(launch.reuse_preview(queries.runs(context.store()), plan), hide_index=True, key="launch_reuse")
