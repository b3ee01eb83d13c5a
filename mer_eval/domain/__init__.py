"""The domain layer: what mer-eval knows about faces, emotions and the tools whose files it reads.

FACS tables and the AU-combination emotion rules (:mod:`.facs`), OpenFace CSVs (:mod:`.openface`),
MER-Factory's result files (:mod:`.merfactory`), face landmarks and AUs (:mod:`.face`), media decoding
(:mod:`.media`) and text helpers (:mod:`.text`). Generators and metrics both stand on it, so each rule, table
and parser exists once and both sides read a sample the same way. It may use the contract (schema, store,
models, :class:`mer_eval.metric.ModelUnavailable`) and imports nothing of ``mer_eval.generators``,
``mer_eval.metrics`` or ``mer_eval.reports`` (``tests/test_layers.py`` checks it).
"""
