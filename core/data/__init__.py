"""The data layer: sources -> interactions -> prepared sequences -> model-ready arrays.

    core.data.sources.resolve_source(dataset, data_root) -> Path
    core.data.sources.read_interactions(path, cfg) -> Interactions      (readers: read_*.py)
    core.data.prepare.prepare(cfg, data_root) -> PreparedData          (filters, candidates, cache)
    core.data.examples: left_pad, training_examples, sasrec_examples, eval_examples, history
    core.data.stats.stats(prepared) -> dict
    core.data.sequences.Ragged: per-user sequences as one flat array plus offsets
    core.data.synthetic.generate(cfg, folder, name): a dataset with a planted rule (oracle.py scores it)
Every bad input raises core.data.errors.DataError naming the file, the field and what was expected.
Nothing is re-exported here: `prepare` and `stats` are both module and function names.
"""
