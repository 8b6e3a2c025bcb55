"""Tour: the method as a notebook: five numbered cells, each with its settings, a Run button and live output."""

import streamlit as st

from app import context, datasets, launch, tour, tour_text, widgets

st.title("Tour: how deep must the LLM be?")
st.markdown(tour_text.INTRO)
with st.expander("The method in full (docs/method.md)", icon=":material/menu_book:"):
    st.markdown(tour.METHOD.read_text())
paths = context.paths()
names = datasets.list_datasets(paths)
if not names:
    widgets.empty("No dataset yet: run `slmrec fetch` (MovieLens-100K and SmolLM2-135M), or add one on **Data**.")
    st.stop()
bases = launch.base_choices(paths)
c1, c2 = st.columns(2)
size = c1.segmented_control("Size", tour.SIZES, default=tour.SIZES[1] if "smollm2" in bases else tour.SIZES[0],
                            required=True, key="tour_size",
                            help="tiny: a random 8-layer model, seconds (shows the mechanics, not the findings). "
                                 "cpu-quick: SmolLM2-135M, minutes on a CPU. paper: the paper's settings.")
preferred = st.session_state.get("shared_dataset")
dataset = c2.selectbox("Dataset", names, key="tour_dataset",
                       index=names.index(preferred) if preferred in names else
                       names.index("ml-100k") if "ml-100k" in names else 0)
settings = launch.defaults(size, dataset)
if settings.base not in bases:
    st.warning("SmolLM2-135M is not on this machine (`slmrec fetch`); the cells use the tiny random model.")
    settings = launch.defaults(tour.SIZES[0], dataset)
if settings.base == "tiny":
    st.info(tour_text.TINY_NOTE, icon=":material/science:")
config = launch.model_config(paths, settings.base)
t = tour.Tour(paths, settings, config["num_hidden_layers"])

tour.render_cell(t, 1, "The question: how deep must the LLM be?", tour_text.QUESTION)
tour.render_cell(t, 2, "The model: E4SRec over the first L layers", tour_text.MODEL)
tour.render_cell(t, 3, "Layer redundancy: a depth sweep", tour_text.SWEEP)
tour.render_cell(t, 4, "The loss: block-wise distillation", tour_text.LOSS, formula=tour_text.LOSS_FORMULA,
                 after=tour_text.LOSS_AFTER)
tour.render_cell(t, 5, "Key results: does the small model keep up?", tour_text.RESULTS)
