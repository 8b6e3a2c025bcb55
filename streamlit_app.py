"""SLMRec Lab in the browser: page config and navigation only; each page is a script in app/pages/."""

import streamlit as st
from PIL import Image

# A plain-colour favicon made here: a Material icon as favicon would be fetched from the internet.
ICON = Image.new("RGB", (32, 32), (76, 110, 245))
st.set_page_config(page_title="SLMRec Lab", page_icon=ICON, layout="wide")
pages = [
    st.Page("app/pages/tour.py", title="Tour", icon=":material/school:", default=True),
    st.Page("app/pages/data.py", title="Data", icon=":material/dataset:"),
    st.Page("app/pages/launch.py", title="Launch", icon=":material/rocket_launch:"),
    st.Page("app/pages/runs.py", title="Runs", icon=":material/monitoring:"),
    st.Page("app/pages/layers.py", title="Layers", icon=":material/stacks:"),
    st.Page("app/pages/results.py", title="Results", icon=":material/leaderboard:"),
]
st.navigation(pages).run()
