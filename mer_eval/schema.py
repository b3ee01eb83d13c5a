"""The data contract of mer-eval.

Every file mer-eval writes carries ``schema_version``. Readers accept every
version listed in :data:`SUPPORTED_SCHEMA_VERSIONS` and upgrade old payloads in
``_upgrade_*`` functions, so result files written by older releases keep loading
(``tests/data/schema/`` holds real files of each version).
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SCHEMA_VERSION = "1.1"
# 1.1: Status.abstained, MetricResult.evidence (typed provenance), Sample.provenance, ScoreSection
#      fingerprints / left_out. 1.0 files load unchanged; 1.1 files written while the lenient composite existed
#      (it left abstentions out, retired) load with it.
SUPPORTED_SCHEMA_VERSIONS = ("1.0", "1.1")


class SampleType(str, Enum):
    """MER-Factory's processing types."""

    mer = "mer"
    au = "au"
    audio = "audio"
    video = "video"
    image = "image"


class Status(str, Enum):
    ok = "ok"
    unavailable = "unavailable"  # the model / weights / backend needed is not here
    not_applicable = "not_applicable"  # the sample lacks an input the metric needs
    error = "error"  # the metric ran and failed
    # the annotation did not answer what this metric checks (an empty annotation, a summary that concludes
    # no emotion, a transcript the sample type promises but lacks): a defect of the annotation, not a gap.
    # The composite, gates and run means count it as the metric's worst value.
    abstained = "abstained"


NOT_OK = (Status.unavailable, Status.not_applicable, Status.error, Status.abstained)


class Relation(str, Enum):
    """What a metric's comparison is evidence of (see :mod:`mer_eval.evidence`)."""

    independent = "independent"  # against a measurement the text's producer did not use (label, detector, ASR)
    faithfulness = "faithfulness"  # a model-written text against the evidence it was given (hallucination)
    intrinsic = "intrinsic"  # a property of the text alone (repetition, diversity, abstention)
    self_check = "self_check"  # a text against the very numbers a rule or template made it from: proves nothing


class InputRef(BaseModel):
    """One input a metric compared, and who produced it."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    name: str  # annotation field (final_summary, visual_expression, ...) or media (audio, openface_csv, label)
    producer: Optional[str] = None  # llm | rule | template | detector | asr | human | media | unknown
    stage: Optional[str] = None  # the pipeline stage that wrote it, when known
    provider: Optional[str] = None
    model: Optional[str] = None


class Evidence(BaseModel):
    """Typed provenance of one result: what was compared, who produced each side, and whether it counts.

    ``independent`` is False only for self-checks; consumers never read it directly but ask
    :func:`mer_eval.evidence.counts` (the one rule, which also reads result files older than this field).
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    relation: Relation
    independent: bool
    reason: str
    compared: list[InputRef] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> "Evidence":
        if self.independent != (self.relation != Relation.self_check):
            raise ValueError("Evidence.independent must be False exactly for self_check")
        return self


class TextOrigin(BaseModel):
    """Who wrote one annotation field, and from what (MER-Factory's known layout, or mer_eval_meta.json)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    producer: str  # llm | rule | template | detector | asr | human | unknown
    made_from: list[str] = Field(default_factory=list)  # the inputs it was written from
    stage: Optional[str] = None
    provider: Optional[str] = None
    model: Optional[str] = None


class AUSourceRecord(BaseModel):
    """What mer-eval's generator recorded about where the annotation's AUs came from (``mer_eval_meta.json``'s
    ``au_source`` / ``au_backend`` / ``au_csv``, the stage files ``<id>_au.json`` / ``<id>_peaks.json``; read
    by :func:`mer_eval.domain.records.read_au_source`)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    backend: Optional[str] = None  # openface | mediapipe | pyfeat | ... (lower case), the first one recorded
    csv: list[Path] = Field(default_factory=list)  # AU CSVs named as the source (relative: in the sample folder)
    recorded_in: Optional[str] = None  # the first file that named a backend or a CSV
    files: list[Path] = Field(default_factory=list)  # the record files there are (what the record depends on)
    error: Optional[str] = None  # a record file that could not be read (then nothing else is known)


class ASRRecord(BaseModel):
    """The audio stage's record of the transcript it wrote (``<id>_audio_features.json``)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    file: Path
    transcript: Optional[str] = None  # the text the ASR model wrote
    model_id: Optional[str] = None  # the ASR model, as the model registry resolved it
    model_sha256: Optional[str] = None


class SampleProvenance(BaseModel):
    """What the annotation records about how it was made (filled by discovery)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    origins: dict[str, TextOrigin] = Field(default_factory=dict)  # field -> who wrote it; absent: the layout default
    conclusion_from: Optional[list[str]] = None  # signals a deterministic rule voted the conclusion from
    flags: dict[str, str] = Field(default_factory=dict)  # truncated_llm_output / partial_audio / ... -> why
    recorded_in: Optional[str] = None  # the file that said so
    # the generator's records in the sample folder (mer_eval.domain.records); records_read: discovery read
    # them (False: not looked at, e.g. a Sample built by hand; readers then read the folder themselves)
    records_read: bool = False
    au_source: AUSourceRecord = Field(default_factory=AUSourceRecord)
    asr: Optional[ASRRecord] = None


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=False, protected_namespaces=())


class Annotation(_Base):
    """Annotation texts of one sample, normalised over MER-Factory's schemas.

    ``None`` means the field is absent; MER-Factory's ``""`` and ``"N/A"`` are
    read as absent too (see :func:`clean_text`).
    """

    transcript: Optional[str] = None
    audio_description: Optional[str] = None  # tone / audio analysis text (without the transcript)
    audio_analysis_raw: Optional[str] = None  # MER-Factory's audio_analysis as written
    visual_expression: Optional[str] = None  # AU text, e.g. "Cheek raiser (intensity: 1.45), ..."
    visual_objective: Optional[str] = None  # description of the peak frame
    video_content: Optional[str] = None  # description of the whole clip
    image_description: Optional[str] = None  # image_visual_description (image type)
    au_text_description: Optional[str] = None
    llm_au_description: Optional[str] = None
    final_summary: Optional[str] = None
    chronological_emotion_peaks: list[str] = Field(default_factory=list)
    peak_frame: Optional[int] = None  # OpenFace frame number (1-based) of the overall peak
    peak_timestamp: Optional[float] = None
    top_aus_intensities: dict[str, float] = Field(default_factory=dict)
    detected_emotions: list[str] = Field(default_factory=list)
    fer_probabilities: dict[str, float] = Field(default_factory=dict)
    provider: Optional[str] = None  # who wrote the texts, when known
    model: Optional[str] = None
    label_aware: Optional[bool] = None  # the summary was written from a prompt that contained the label

    def visual_text(self) -> Optional[str]:
        """The description of what is seen: peak-frame objective, else image description, else video."""
        for t in (self.visual_objective, self.image_description, self.video_content):
            if t:
                return t
        return None

    def is_empty(self) -> bool:
        return not any(
            (
                self.transcript,
                self.audio_description,
                self.visual_expression,
                self.visual_objective,
                self.video_content,
                self.image_description,
                self.final_summary,
                self.au_text_description,
                self.llm_au_description,
            )
        )


class Sample(_Base):
    """One sample: its media, independent evidence, ground truth and annotation."""

    schema_version: str = SCHEMA_VERSION
    id: str
    type: SampleType = SampleType.mer
    source: str = "media"  # media | mer-factory | mer-factory-legacy | manifest | mer-eval
    video: Optional[Path] = None
    audio: Optional[Path] = None
    image: Optional[Path] = None
    peak_frame_image: Optional[Path] = None
    openface_csv: Optional[Path] = None
    label: Optional[str] = None
    reference_transcript: Optional[str] = None
    annotation: Annotation = Field(default_factory=Annotation)
    annotation_files: dict[str, Path] = Field(default_factory=dict)  # kind -> file it was read from
    folder: Optional[Path] = None  # the sample's folder in a run / MER-Factory output, if any
    notes: list[str] = Field(default_factory=list)  # what discovery noticed (dropped rows, ...)
    provenance: SampleProvenance = Field(default_factory=SampleProvenance)
    # generate failed on this sample and wrote no annotation (its error log: stage and reason); every metric
    # scores it abstained (mer_eval.discovery.failed_generations)
    generation_error: Optional[str] = None

    @field_validator("id")
    @classmethod
    def _check_id(cls, v: str) -> str:
        from mer_eval.paths import check_sample_id

        return check_sample_id(v)

    def media(self) -> dict[str, Path]:
        out = {}
        for k in ("video", "audio", "image", "peak_frame_image", "openface_csv"):
            v = getattr(self, k)
            if v is not None:
                out[k] = v
        return out

    def frame_image(self) -> Optional[Path]:
        """The still image a visual description is about: the peak frame, else the image itself."""
        return self.peak_frame_image or self.image


class ModelRef(_Base):
    id: str
    revision: Optional[str] = None
    sha256: Optional[str] = None
    path: Optional[str] = None
    source: Optional[str] = None  # config | env | hf-cache | wheel | download | builtin


def _finite(v: Optional[float]) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


class MetricResult(_Base):
    """One measured value (or the honest reason there is none)."""

    schema_version: str = SCHEMA_VERSION
    sample_id: str
    metric: str
    value: Optional[float] = None
    status: Status
    reason: Optional[str] = None
    model: Optional[ModelRef] = None
    params: dict[str, Any] = Field(default_factory=dict)
    metric_version: str
    details: dict[str, Any] = Field(default_factory=dict)
    evidence: Optional[Evidence] = None  # typed provenance; None in files older than schema 1.1
    cached: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> "MetricResult":
        if self.status == Status.ok:
            if not _finite(self.value):
                raise ValueError(f"{self.metric}: status ok needs a finite value, got {self.value!r}")
        else:
            if self.value is not None:
                raise ValueError(f"{self.metric}: status {self.status.value} must not carry a value")
            if not self.reason:
                raise ValueError(f"{self.metric}: status {self.status.value} needs a reason")
        return self

    @classmethod
    def ok(cls, sample_id: str, metric: str, value: float, version: str, **kw: Any) -> "MetricResult":
        return cls(sample_id=sample_id, metric=metric, value=float(value), status=Status.ok,
                   metric_version=version, **kw)

    @classmethod
    def missing(cls, sample_id: str, metric: str, status: Status, reason: str, version: str,
                **kw: Any) -> "MetricResult":
        return cls(sample_id=sample_id, metric=metric, value=None, status=status, reason=reason,
                   metric_version=version, **kw)


class CompositeResult(_Base):
    schema_version: str = SCHEMA_VERSION
    sample_id: str
    composite_version: str
    value: Optional[float] = None
    coverage: float  # share of the configured weight that could be used
    counted: dict[str, float] = Field(default_factory=dict)  # metric -> normalised 0..1 score used
    weights: dict[str, float] = Field(default_factory=dict)  # metric -> renormalised weight
    missing: dict[str, str] = Field(default_factory=dict)  # metric -> why it did not count
    flag: Optional[str] = None  # "below_min_coverage", "no_metric_counted", "component_error" (a component failed)
    mode: str = "strict"  # abstentions count as worst; "lenient" only in files of the retired lenient composite
    abstained: list[str] = Field(default_factory=list)  # metrics the annotation abstained on


class SampleEvaluation(_Base):
    """``RUN/<id>/mer_eval_scores.json`` (``evaluation.json`` in older runs)."""

    schema_version: str = SCHEMA_VERSION
    sample_id: str
    results: list[MetricResult]
    composite: Optional[CompositeResult] = None
    composite_lenient: Optional[CompositeResult] = None  # retired (left abstentions out): read in older files only
    created: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))


class Fingerprint(_Base):
    """What makes two values of one metric comparable: same version, parameters, model and code."""

    metric_version: str
    params_hash: Optional[str] = None
    model_id: Optional[str] = None
    model_sha256: Optional[str] = None
    model_revision: Optional[str] = None
    code_hash: Optional[str] = None

    def differences(self, other: "Fingerprint") -> list[str]:
        out = []
        for k in ("metric_version", "params_hash", "model_id", "model_sha256", "model_revision", "code_hash"):
            a, b = getattr(self, k), getattr(other, k)
            if a != b:
                out.append(f"{k} {a!r} != {b!r}")
        return out


class ScoreSection(_Base):
    metrics: list[str] = Field(default_factory=list)
    config_hash: Optional[str] = None  # of the config `score` ran with (run.json's own config is generate's)
    metric_versions: dict[str, str] = Field(default_factory=dict)
    composite_version: Optional[str] = None
    models: dict[str, ModelRef] = Field(default_factory=dict)
    counts_by_status: dict[str, dict[str, int]] = Field(default_factory=dict)
    # over the values that count as evidence, each abstention counted at the output's worst value (None where the
    # output has none and some sample abstained): not answering never raises a mean. Files written before
    # abstained_in_means existed left abstentions out.
    means: dict[str, Optional[float]] = Field(default_factory=dict)
    abstained_in_means: dict[str, dict[str, Any]] = Field(default_factory=dict)  # metric -> {n, counted_as}
    left_out: dict[str, dict[str, Any]] = Field(default_factory=dict)  # metric -> {n, reasons} not in means
    fingerprints: dict[str, "Fingerprint"] = Field(default_factory=dict)  # output metric -> comparability
    started: Optional[datetime] = None
    finished: Optional[datetime] = None
    seconds: Optional[float] = None
    model_seconds: Optional[float] = None
    cache_hits: int = 0
    # family -> samples per batch it ran with (score.batch_size auto: the size that fit, the smallest any worker
    # kept), and with auto why that size; empty in files written before they were recorded
    batch_sizes: dict[str, int] = Field(default_factory=dict)
    batch_size_notes: dict[str, str] = Field(default_factory=dict)


class RunManifest(_Base):
    """``run.json`` in every run folder."""

    schema_version: str = SCHEMA_VERSION
    tool_version: str
    git_sha: Optional[str] = None
    command: Optional[str] = None
    input: Optional[str] = None
    config: dict[str, Any] = Field(default_factory=dict)
    config_hash: Optional[str] = None
    provider: Optional[str] = None
    models: dict[str, str] = Field(default_factory=dict)  # role -> model id
    prompt_hashes: dict[str, str] = Field(default_factory=dict)
    package_versions: dict[str, str] = Field(default_factory=dict)
    seed: Optional[int] = None
    started: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    finished: Optional[datetime] = None
    counts_by_status: dict[str, int] = Field(default_factory=dict)
    score: Optional[ScoreSection] = None
    extra: dict[str, Any] = Field(default_factory=dict)


def _check_version(data: Any, what: str) -> Any:
    if isinstance(data, dict):
        v = data.get("schema_version", SCHEMA_VERSION)
        if v not in SUPPORTED_SCHEMA_VERSIONS:
            raise ValueError(
                f"{what}: schema_version {v!r} is not one this mer-eval reads "
                f"({', '.join(SUPPORTED_SCHEMA_VERSIONS)}); upgrade mer-eval"
            )
    return data


def load_evaluation(path: Path) -> SampleEvaluation:
    import json

    data = _check_version(json.loads(Path(path).read_text(encoding="utf-8")), str(path))
    return SampleEvaluation.model_validate(data)


def load_manifest(path: Path) -> RunManifest:
    import json

    data = _check_version(json.loads(Path(path).read_text(encoding="utf-8")), str(path))
    return RunManifest.model_validate(data)


NA_STRINGS = {"", "n/a", "na", "none", "null"}


def clean_text(v: Any) -> Optional[str]:
    """MER-Factory writes missing modalities as ``""`` or ``"N/A"``: read them as absent."""
    if v is None:
        return None
    if not isinstance(v, str):
        return None
    s = v.strip()
    if s.lower() in NA_STRINGS:
        return None
    return s
