"""The Tour's words: one short explanation per cell, restating docs/method.md for teaching."""

from app.figures import RANDOM  # the words that mark a random model's charts, said the same here

INTRO = """
SLMRec (ICLR 2025) asks a practical question about LLM-based recommenders: **how many of the LLM's
layers does sequential recommendation actually need?** This tour walks through the method in five
cells. Each cell explains one idea, shows the settings it uses, and has a **Run** button that queues
the experiment behind it on the background worker; its output below fills in live. Runs are shared
with the rest of the app: anything a cell launches also shows on Runs, Layers and Results, and a
cell whose run already exists reuses it. The method in full, with every place where this project
differs from the paper and why, is in **docs/method.md** (open it below).
"""

QUESTION = """
Sequential recommendation: given a user's items in time order, rank every item by how likely it is
to come next. E4SRec-style models feed the history into a large LLM and read a user vector from its
last layer. But on Amazon Clothing the paper found that keeping only the first L layers of
LLaMA-2-7B barely matters: HR@10 is about .207, .208, .209, .213, .211, .211, .219 for L = 1, 2, 4,
8, 16, 24, 32 (SASRec: .203).

Before training anything, the pretrained LLM itself hints at this redundancy. The **angular
distance** between the stream at layer l and layer l + n is small when the n layers in between
change little, and the **block influence** of a layer (1 − cosine between its input and output)
says how much it changes the stream. This cell measures both on the pretrained model alone.
"""

MODEL = """
The E4SRec-style recommender (docs/method.md, section 2):

1. Train **SASRec** on the data and keep its item-ID embedding table (frozen from then on).
2. Build the LLM input as `[instruction tokens][item vectors][response tokens]`; each item vector
   is the frozen embedding passed through a trainable linear map into the LLM's hidden size.
3. Run only the **first L decoder layers** of the LLM.
4. Map the last position's hidden state back to the item-embedding size (the user vector) and score
   every item by dot product; train with softmax cross-entropy over all items.
5. Train LoRA on the MLP projections plus the two maps; the LLM's own weights stay frozen.

This cell trains the SASRec table and one such model (the *teacher*) at the depth below.
"""

SWEEP = """
Repeat the teacher at several depths and plot its test quality against depth. If the curve is flat
after a few layers, most of the depth is redundant for this task: the paper's motivating
observation. The dashed line is SASRec, the non-LLM baseline.
"""

LOSS = """
**SLMRec** distils a deep teacher (M layers, trained, then frozen) into a student made of the first
N layers of the same pretrained LLM. Both are cut into B blocks (m = M/B, n = N/B; B must divide
both depths), and block k pairs the teacher's state after layer k·m with the student's after k·n:
"""

LOSS_FORMULA = r"""
\mathcal{L} = \mathrm{CE}_{\text{student}}
 + \lambda_1\Big(1 - \tfrac{1}{B}\sum_k \cos(h_t^{(km)}, h_s^{(kn)})\Big)
 + \lambda_2\,\tfrac{1}{B}\sum_k \tfrac{1}{H}\lVert h_t^{(km)} - h_s^{(kn)} \rVert^2
 + \lambda_3\,\tfrac{1}{B-1}\sum_{k<B} \mathrm{CE}\big(\mathrm{adapter}_k(h_s^{(kn)})\big)
"""

LOSS_AFTER = """
The cosine term aligns feature directions, the norm term their magnitudes (the squared distance is
divided by the hidden size H, so lambda 2 means the same at every model width), and the
multiple-supervision term trains a small adapter at every block boundary to rank items on its own.
This cell queues the whole pipeline (reusing the SASRec and teacher runs from cell 2), then an
analysis of teacher against student: the CKA map below marks the aligned pairs.
"""

RESULTS = """
The paper's headline: SLMRec 4←8 (a 4-layer student from an 8-layer teacher) matches or beats the
32-layer E4SRec on sampled HR@1 and MRR, with 6.6× faster training and 8× faster inference. The
fair comparison for the student is the same 4 layers trained *without* distillation (every λ = 0),
which this cell adds. Metrics are reported under both protocols: full ranking over every item
(primary) and the paper's sampled 1 + 999, with 95% bootstrap intervals over test users.
"""

TINY_NOTE = ("**Size tiny: a random 8-layer model.** It runs in seconds and shows how each step works; its numbers "
             "say nothing about the method (" + RANDOM + "). Pick cpu-quick for SmolLM2-135M.")
SPECS_NOTE = ("`distill.teacher_states: cached`: the frozen teacher's aligned states are computed once per run and "
              "reused every step (`live` recomputes them; the same loss to bf16 rounding). `backbone.base`: the "
              "pretrained LLM whose first layers are kept.")

KNOWN_ANSWER_OFFER = """
**A known answer.** On real data the effect of depth is small and its noise large. The synthetic
dataset **synth-markov5** plants a rule that needs depth (the groups of the last five items pick the
next item) and its best possible score is known exactly: the generator's oracle. The button makes it
here in about a second and switches the Tour to it; what depth and distillation did on it is in
docs/results/depth-and-distillation.md.
"""

KNOWN_ANSWER_ON = """
**Known answer.** The best possible score on this dataset is test NDCG@10 **{ndcg:.1f}%** (HR@10
{hr:.1f}%): the generator's exact oracle. At the cpu-quick budget, one layer of SmolLM2 reached about
22% and two layers about 40% (3 seeds each); SLMRec distillation of a 4-layer teacher into one layer
was inside the noise of the same layer trained alone. docs/results/depth-and-distillation.md has the
runs, the intervals and the budget.
"""
