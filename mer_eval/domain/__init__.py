"""The domain layer: what mer-eval knows about faces, emotions and the tools whose files it reads.

FACS tables and the one implementation of the AU-combination emotion rules (:mod:`.facs`), the emotion and
cue lexicons and the one conclusion parser (:mod:`.emotion_text`), AU claims in text (:mod:`.au_claims`),
OpenFace CSVs (:mod:`.openface`), MER-Factory's result files (:mod:`.merfactory`), mer-eval's own generator
records and their file names (:mod:`.records`), face landmarks and AUs (:mod:`.face`), media decoding
(:mod:`.media`) and text helpers (:mod:`.text`). Generators and metrics both stand on it, so each rule, table
and parser exists once and both sides read a sample the same way. It may use the contract (schema, store,
models, :class:`mer_eval.metric.ModelUnavailable`) and imports nothing of ``mer_eval.generators``,
``mer_eval.metrics`` or ``mer_eval.reports`` (``tests/test_layers.py`` checks it).
"""
