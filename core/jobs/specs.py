"""The one builder of a pipeline's specs: teacher, student and analysis from shared settings.

The CLI's `submit pipeline`, the app's Launch form and `slmrec reproduce` all build their chains
here. Each link gets the shared settings plus its own, never another link's: the teacher keeps no
distillation or analysis settings (so changing only the student reuses the teacher), the student
no analysis settings, the analysis no depth and one process. The run ids that link them (the
student's teacher, the analysis's subjects) are filled in by `PipelineSpecs.linked` once known.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from core.config import ConfigError, RunSpec, apply_preset, check_blocks


@dataclass(frozen=True)
class PipelineSpecs:
    """The three specs of a pipeline; the links between them are filled by `linked`."""

    teacher: RunSpec
    student: RunSpec
    analysis: RunSpec

    def linked(self, sasrec_id: str, teacher_id: str, student_id: str) -> PipelineSpecs:
        """The specs once their parents' run ids are known ('' for one not planned yet)."""
        student = replace(self.student, sasrec_run=sasrec_id,
                          distill=replace(self.student.distill, teacher_run=teacher_id))
        analysis = replace(self.analysis, analysis=replace(self.analysis.analysis, run=student_id,
                                                           against=teacher_id))
        return PipelineSpecs(self.teacher, student, analysis)


def pipeline_specs(preset: str, shared: dict[str, Any], teacher_depth: int | None, student_depth: int,
                   teacher: dict | None = None, student: dict | None = None,
                   analysis: dict | None = None) -> PipelineSpecs:
    """The specs of a teacher of `teacher_depth` layers (None: the preset's), a student of
    `student_depth` distilled from it, and their analysis; ConfigError for any invalid value.

    `shared` holds the settings sections every link gets; `teacher`, `student` and `analysis` the
    sections of one link only (the student's distill section, the analysis's users).
    """
    own = {"teacher": teacher or {}, "student": student or {}, "analysis": analysis or {}}
    for role, sections in own.items():
        wrong = sorted(set(sections) & {"distill", "analysis"} - {_OWN_SECTION.get(role)})
        if wrong:
            raise ConfigError(f"{role}: the {wrong[0]} settings belong to the "
                              f"{'student' if wrong[0] == 'distill' else 'analysis'}")
    depth = {} if teacher_depth is None else {"backbone": {"depth": teacher_depth}}
    teacher_spec = apply_preset(preset, _merged(shared, own["teacher"], depth), "teacher")
    student_spec = apply_preset(preset, _merged(shared, own["student"], {"backbone": {"depth": student_depth}}),
                                "student")
    one_process = {"train": {"nproc_per_node": 1}}
    analysis_spec = apply_preset(preset, _merged(shared, own["analysis"], one_process), "analysis")
    check_blocks(teacher_spec.backbone.depth, student_spec.backbone.depth, student_spec.distill.blocks)
    return PipelineSpecs(teacher_spec, student_spec, analysis_spec)


_OWN_SECTION = {"student": "distill", "analysis": "analysis"}


def _merged(*layers: dict[str, Any]) -> dict[str, Any]:
    """Section dicts merged left to right, one level deep (a later section's fields win)."""
    out: dict[str, Any] = {}
    for layer in layers:
        for section, values in layer.items():
            if isinstance(values, dict):
                out[section] = {**out.get(section, {}), **values}
            else:
                out[section] = values
    return out

